"""End-to-end runs of examples/srwm_procgen.py at tiny sizes: train, resume, evaluate."""

from __future__ import annotations

import csv

import pytest
import torch

from adaptmem.rl import PAPER_GAMES, PAPER_MEMORY_GAMES, procgen_unavailable
from adaptmem.utils.checkpoint import read_checkpoint
from adaptmem.utils.integrity import save_verified
from tests.examples import load_example

TINY = ["--num-layers", "1", "--num-heads", "2", "--head-dim", "8", "--d-ff", "16", "--lstm-hidden", "8", "--threads", "1",
        "--eval-envs-per-game", "2", "--eval-episodes", "1"]


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
    run = ["--env", "recall", "--envs-per-game", "4", "--batch-size", "4", "--unroll-length", "5",
           "--out", str(tmp_path), "--log-every", "20", *TINY]
    table = example.main(run + ["--total-frames", "100"])
    assert "| recall" in table and "train return" in table and "test return" in table
    for name in ("last.pt", "train.csv", "returns.csv", "results.md"):
        assert (tmp_path / name).exists(), name
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curve_recall.png").exists()

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
    run = ["--env", "recall", "--envs-per-game", "2", "--batch-size", "2", "--unroll-length", "5",
           "--out", str(tmp_path), "--total-frames", "10", *TINY]
    example.main(run)
    message = r"cannot change when resuming: --kind 'lstm' \(the checkpoint has 'srwm'\)"
    with pytest.raises(ValueError, match=message):
        example.main(run + ["--resume", "--kind", "lstm"])


def test_checkpoints_with_the_older_argument_names_still_evaluate(example, tmp_path, capsys):
    run = ["--env", "recall", "--envs-per-game", "2", "--batch-size", "2", "--unroll-length", "5",
           "--out", str(tmp_path), "--total-frames", "10", "--kind", "lstm", *TINY]
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
    table = example.main(["--games", "bigfish", "--envs-per-game", "4", "--batch-size", "4", "--unroll-length", "10",
                          "--total-frames", "800", "--channels", "4", "8", "8", "--out", str(tmp_path),
                          "--eval-max-steps", "200", *TINY])
    assert "| bigfish" in table
    assert (tmp_path / "last.pt").exists() and (tmp_path / "train.csv").exists()


def test_ctrl_c_saves_a_checkpoint_that_resume_completes(example, tmp_path, monkeypatch, capsys):
    import signal

    train_step = example.ImpalaLearner.train_step

    def train_step_then_ctrl_c(self):
        stats = train_step(self)
        signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during this step
        return stats

    run = ["--env", "recall", "--envs-per-game", "4", "--batch-size", "4", "--unroll-length", "5",
           "--out", str(tmp_path), "--total-frames", "100", *TINY]
    monkeypatch.setattr(example.ImpalaLearner, "train_step", train_step_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    assert example.main(run).startswith("interrupted at 20 frames")
    assert read_checkpoint(tmp_path / "last.pt")["extra"]["frames"] == 20
    assert signal.getsignal(signal.SIGINT) == before  # the handler is given back

    monkeypatch.setattr(example.ImpalaLearner, "train_step", train_step)
    assert "| recall" in example.main(run + ["--resume"])
    assert read_checkpoint(tmp_path / "last.pt")["extra"]["frames"] == 100
