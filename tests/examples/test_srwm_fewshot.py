"""End-to-end runs of examples/srwm_fewshot.py at a tiny size on generated Omniglot zips."""

import json
from pathlib import Path

import pytest
import torch

from adaptmem.utils.checkpoint import read_checkpoint
from tests.data.fewshot_fakes import one_thread, write_minimal_omniglot  # noqa: F401
from tests.data.test_fewshot_readers import write_lake_runs
from tests.examples import load_example, run_torchrun

pytest.importorskip("PIL")
pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "srwm_fewshot.py"
TINY = [
    "--batch-size",
    "2",
    "--val-every",
    "2",
    "--val-episodes",
    "4",
    "--test-episodes",
    "4",
    "--conv-channels",
    "4",
    "--d-model",
    "16",
    "--num-heads",
    "2",
    "--num-layers",
    "1",
    "--threads",
    "1",
    "--dropout",
    "0.1",
    "--no-tensorboard",
]


@pytest.fixture(scope="module")
def example():
    return load_example("srwm_fewshot")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_minimal_omniglot(tmp_path_factory.mktemp("omniglot"))


def run(example, data_root, out, *extra):
    return example.main(["--data", str(data_root), "--out", str(out), *TINY, *extra])


@pytest.mark.parametrize("model,protocol", [("srwm", "sync"), ("deltanet", "delayed"), ("lstm", "sync")])
def test_example_trains_tests_and_writes_its_outputs(example, data_root, tmp_path, model, protocol):
    res = run(
        example,
        data_root,
        tmp_path,
        "--kind",
        model,
        "--protocol",
        protocol,
        "--steps",
        "3",
        *(["--shots", "2"] if protocol == "delayed" else []),
    )
    assert res["model"] == model and 0.0 <= res["settings"][0]["acc"] <= 1.0
    assert {"best.pt", "last.pt", "results.json", "logs"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "results.json").read_text())["settings"][0]["episodes"] == 4
    if protocol == "delayed":
        assert len(res["settings"][0]["acc_by_shot"]) == 2  # 1st and 2nd sighting of a class


def test_resume_continues_bit_exactly(example, data_root, tmp_path):
    run(example, data_root, tmp_path / "full", "--steps", "4")
    run(example, data_root, tmp_path / "cut", "--steps", "2")
    run(example, data_root, tmp_path / "cut", "--steps", "4", "--resume")
    full = read_checkpoint(tmp_path / "full" / "last.pt")
    cut = read_checkpoint(tmp_path / "cut" / "last.pt")
    assert full["step"] == cut["step"] == 4
    for k, v in full["model"].items():
        assert torch.equal(v, cut["model"][k]), k
    rows = lambda p: (p / "logs" / "val.csv").read_text().splitlines()  # noqa: E731
    assert rows(tmp_path / "full") == rows(tmp_path / "cut")


def test_resume_takes_a_new_step_count_and_refuses_a_new_architecture(example, data_root, tmp_path, capsys):
    run(example, data_root, tmp_path, "--steps", "2", "--time-budget", "0")
    capsys.readouterr()
    run(example, data_root, tmp_path, "--steps", "4", "--resume")
    assert "--resume takes --steps: 2 -> 4" in capsys.readouterr().out
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 4
    with pytest.raises(ValueError, match=r"cannot change when resuming: --d-model 32 \(the checkpoint has 16\)"):
        run(example, data_root, tmp_path, "--resume", "--d-model", "32")


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_time_budget_stops_training_validates_and_tests(example, data_root, tmp_path, clock):
    res = run(example, data_root, tmp_path, "--steps", "1000", "--time-budget", "1e-9", "--clock", clock)
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["step"] == 1 and last["extra"]["clock_used"] > 0  # spent after the first step
    assert (tmp_path / "logs" / "val.csv").read_text().splitlines()[1].startswith("1,")
    assert res["train_cpu_s"] > 0 and res["settings"][0]["episodes"] == 4


def test_evaluate_action_with_other_ways_shots_and_lake_runs(example, data_root, tmp_path, capsys):
    write_lake_runs(tmp_path / "runs", n_runs=1)
    run(example, data_root, tmp_path, "--steps", "2", "--label-slots", "20")
    res = run(
        example,
        data_root,
        tmp_path,
        "--action",
        "evaluate",
        "--label-slots",
        "20",
        "--eval-ways",
        "3",
        "20",
        "--eval-shots",
        "1",
        "2",
        "--lake-runs",
        str(tmp_path / "runs"),
    )
    assert [(s["ways"], s["shots"]) for s in res["settings"]] == [(3, 1), (3, 2), (20, 1), (20, 2)]
    assert 0.0 <= res["lake_mean_error"] <= 100.0
    assert "| run01 |" in capsys.readouterr().out


def test_torchrun_two_cpu_processes(data_root, tmp_path):
    proc = run_torchrun(SCRIPT, "--data", str(data_root), "--out", str(tmp_path), "--steps", "2", *TINY)
    assert "2 process(es)" in proc.stdout
    assert json.loads((tmp_path / "results.json").read_text())["settings"][0]["episodes"] == 4


def test_srwm_flags_reach_every_srwm_layer_and_are_ignored_by_other_models(example):
    args = example.parse_args(
        ["--srwm-input-softmax", "--no-srwm-norm-skip", "--srwm-pre-norm", "--srwm-beta-init", "-1", *TINY]
    )
    args.label_slots = args.ways
    layers = [b.fast for b in example.make_model(args, (1, 28, 28)).seq.blocks]
    assert layers and all(l.input_softmax and not l.norm_skip and l.pre_norm and l.beta_init == -1.0 for l in layers)
    args.kind = "deltanet"
    assert example.make_model(args, (1, 28, 28)).seq.blocks[0].fast.__class__.__name__ == "DeltaNet"
