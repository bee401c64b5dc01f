"""End-to-end runs of examples/srwm_procgen.py at tiny sizes: train, resume, evaluate."""

from __future__ import annotations

import csv

import pytest

from adaptmem.rl import PAPER_GAMES, PAPER_MEMORY_GAMES, procgen_unavailable
from adaptmem.utils.checkpoint import read_checkpoint
from adaptmem.utils.integrity import save_verified
from tests.examples import load_example

TINY = (
    "--num-layers 1 --num-heads 2 --head-dim 8 --d-ff 16 --lstm-hidden 8 --threads 1 "
    "--eval-envs-per-game 2 --eval-episodes 2"
).split()


def recall(out, rows, *flags):
    """A tiny run on the recall task: ``rows`` envs, all in every batch, unrolls of 5 steps."""
    common = ["--env", "recall", "--envs-per-game", str(rows), "--batch-size", str(rows), "--unroll-length", "5"]
    return [*common, "--out", str(out), *flags, *TINY]


@pytest.fixture(scope="module")
def example():
    return load_example("srwm_procgen")


def test_paper_config_reproduces_the_papers_sizes(example):
    args = example.parse_args(["--config", "paper"])
    assert example.PAPER_GAMES == PAPER_GAMES and example.PAPER_MEMORY_GAMES == PAPER_MEMORY_GAMES  # copies
    assert args.games == list(PAPER_GAMES) and args.num_levels == 200 and args.distribution_mode == "easy"
    assert (args.unroll_length, args.batch_size, args.optimizer, args.lr) == (50, 32, "rmsprop", 6e-4)
    assert (args.num_layers, args.num_heads, args.head_dim, args.d_ff) == (2, 8, 16, 512)
    assert args.channels == [16, 32, 32] and args.downsample == 1 and args.total_frames == 300_000_000
    assert (len(args.games) * args.envs_per_game) % args.batch_size == 0
    memory = example.parse_args(["--config", "memory", "--lr", "1e-3"])
    assert memory.games == list(PAPER_MEMORY_GAMES) and memory.num_levels == 500 and memory.lr == 1e-3


def test_example_trains_resumes_and_evaluates_on_the_recall_task(example, tmp_path, capsys):
    run = recall(tmp_path, 4, "--log-every", "20")
    table = example.main(run + ["--total-frames", "100"])
    assert "| recall" in table and "train return" in table and "test return" in table
    assert "random policy" in table and " -> " in table  # the learning table
    for name in ("last.pt", "train.csv", "returns.csv", "results.md", "random.json"):
        assert (tmp_path / name).exists(), name
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").exists()

    example.main(run + ["--total-frames", "200", "--resume"])
    ckpt = read_checkpoint(tmp_path / "last.pt")
    assert ckpt["extra"]["frames"] == 200 and ckpt["step"] == 10
    with open(tmp_path / "returns.csv") as f:
        steps = [int(float(r["step"])) for r in csv.DictReader(f)]
    assert steps == list(range(20, 201, 20))  # resumed logs continue, no duplicated rows

    capsys.readouterr()
    example.main(["--eval", str(tmp_path / "last.pt"), *TINY])
    assert "srwm agent, 200 training frames" in capsys.readouterr().out


def test_example_rejects_resuming_with_a_different_model(example, tmp_path):
    run = recall(tmp_path, 2, "--total-frames", "10")
    example.main(run)
    message = r"cannot change when resuming: --kind 'lstm' \(the checkpoint has 'srwm'\)"
    with pytest.raises(ValueError, match=message):
        example.main(run + ["--resume", "--kind", "lstm"])


def test_checkpoints_with_the_older_argument_names_still_evaluate(example, tmp_path, capsys):
    run = recall(tmp_path, 2, "--total-frames", "10", "--kind", "lstm")
    example.main(run)
    ckpt = read_checkpoint(tmp_path / "last.pt")
    renamed = {"kind": "core", "num_layers": "layers", "num_heads": "heads"}
    ckpt["extra"]["args"] = {renamed.get(k, k): v for k, v in ckpt["extra"]["args"].items()}
    save_verified(ckpt, tmp_path / "old.pt", format="adaptmem.checkpoint")
    capsys.readouterr()
    example.main(["--eval", str(tmp_path / "old.pt"), *TINY])
    assert "lstm agent, 10 training frames" in capsys.readouterr().out


def test_example_smoke_run_on_procgen_for_200_steps(example, tmp_path):
    reason = procgen_unavailable()
    if reason:
        pytest.skip(reason)
    table = example.main(
        [
            "--games",
            "bigfish",
            "--envs-per-game",
            "4",
            "--batch-size",
            "4",
            "--unroll-length",
            "10",
            "--total-frames",
            "800",
            "--channels",
            "4",
            "8",
            "8",
            "--out",
            str(tmp_path),
            "--eval-max-steps",
            "200",
            *TINY,
        ]
    )
    assert "| bigfish" in table
    assert (tmp_path / "last.pt").exists() and (tmp_path / "train.csv").exists()


def test_ctrl_c_saves_a_checkpoint_and_the_results_and_resume_completes(example, tmp_path, monkeypatch, capsys):
    import signal

    train_step = example.ImpalaLearner.train_step

    def train_step_then_ctrl_c(self):
        stats = train_step(self)
        signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during this step
        return stats

    run = recall(tmp_path, 4, "--total-frames", "100")
    monkeypatch.setattr(example.ImpalaLearner, "train_step", train_step_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    with pytest.raises(SystemExit) as exit_:
        example.main(run)
    assert exit_.value.code == 130  # the shell's code for a run stopped by SIGINT
    assert read_checkpoint(tmp_path / "last.pt")["extra"]["frames"] == 20
    results = (tmp_path / "results.md").read_text()
    assert "Interrupted" in results and "20 of 100 frames" in results and "| recall" in results
    assert (tmp_path / "curves.png").exists() or pytest.importorskip("matplotlib") is None
    assert signal.getsignal(signal.SIGINT) == before  # the handler is given back

    monkeypatch.setattr(example.ImpalaLearner, "train_step", train_step)
    assert "| recall" in example.main(run + ["--resume"])
    assert read_checkpoint(tmp_path / "last.pt")["extra"]["frames"] == 100


def test_a_crash_leaves_the_curves_and_results_up_to_the_last_logged_update(example, tmp_path, monkeypatch):
    train_step, calls = example.ImpalaLearner.train_step, []

    def fails_third(self):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return train_step(self)

    monkeypatch.setattr(example.ImpalaLearner, "train_step", fails_third)
    run = recall(tmp_path, 4, "--log-every", "20", "--total-frames", "100")
    with pytest.raises(RuntimeError, match="simulated crash"):
        example.main(run)
    results = (tmp_path / "results.md").read_text()
    assert "Crashed (RuntimeError: simulated crash)" in results and "40 of 100 frames" in results
    assert "| recall" in results  # the learning table of the two logged updates


def test_compare_trains_each_kind_on_the_same_frames_and_draws_one_figure(example, tmp_path):
    run = recall(tmp_path, 4, "--total-frames", "60", "--log-every", "20", "--compare", "srwm", "lstm")
    text = example.main(run)
    assert "# srwm vs lstm" in text and "| game   | random policy | srwm" in text and "lstm agent, evaluation" in text
    for kind in ("srwm", "lstm"):
        assert read_checkpoint(tmp_path / kind / "last.pt")["extra"]["frames"] == 60
    assert (tmp_path / "results.md").read_text() == text
    pytest.importorskip("matplotlib")
    assert (tmp_path / "compare.png").exists()


def test_eval_of_several_seeds_aggregates_them(example, tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        example.main(recall(out, 2, "--total-frames", "40", "--log-every", "10", "--seed", str(seed)))
        paths.append(str(out / "last.pt"))
    text = example.main(["--eval", *paths, "--out", str(tmp_path), *TINY])
    assert text.count("training frames") == 2 and "All 2 checkpoints" in text
    assert "srwm seed 0" in text and "srwm seed 1" in text  # the learning table of both runs
    assert (tmp_path / "eval.md").read_text() == text
