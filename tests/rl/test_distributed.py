"""Data-parallel IMPALA with 2 gloo processes (tests/rl/ddp_worker.py under torchrun): the
learner's update, counters and checkpoints, and examples/srwm_procgen.py under torchrun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adaptmem.utils.checkpoint import read_checkpoint
from tests.examples import load_example, run_torchrun
from tests.rl.ddp_worker import ROWS, UNROLL, flat_params, learner

WORKER = Path(__file__).with_name("ddp_worker.py")
TINY = [
    "--env",
    "recall",
    "--envs-per-game",
    "4",
    "--batch-size",
    "4",
    "--unroll-length",
    "5",
    "--log-every",
    "20",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--head-dim",
    "8",
    "--d-ff",
    "16",
    "--threads",
    "1",
    "--eval-envs-per-game",
    "2",
    "--eval-episodes",
    "2",
]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    one = learner(ROWS, seed=0)
    for _ in range(2):
        one.train_step()
    one.save(out / "one.pt")
    proc = run_torchrun(
        WORKER, str(out), str(out / "one.pt"), *TINY, "--out", str(out / "example"), "--total-frames", "80"
    )
    return out, json.loads((out / "result.json").read_text()), proc.stdout


def test_two_processes_take_the_update_of_one_process_on_both_batches(ddp):
    _, r, _ = ddp
    assert r["world_size"] == 2
    assert r["initial_max_diff"] == 0.0  # rank 0's initial weights reached rank 1
    assert r["update_max_rel_diff"] < 1e-5  # 3 Adam steps on the summed gradients
    assert r["lr"][0] == pytest.approx(r["lr"][1]) and r["lr"][0] < 1e-2  # one schedule, over global frames
    assert r["ranks_identical"]


def test_two_process_training_counts_global_frames_and_resumes_exactly(ddp):
    _, r, _ = ddp
    assert r["frames"] == [4 * UNROLL * ROWS] * 2
    assert set(r["episode_rows"]) <= set(range(ROWS)) and max(r["episode_rows"]) >= ROWS // 2  # both ranks'
    assert r["resume_exact"]


def test_checkpoints_move_between_one_and_two_processes(ddp):
    out, r, _ = ddp
    (frames, updates), after = r["from_one_process"]
    assert (frames, updates) == (2 * UNROLL * ROWS, 2) and after == [3 * UNROLL * ROWS, 3]
    single = learner(ROWS, seed=7)
    single.load(out / "two_after.pt")
    assert single.frames == 4 * UNROLL * ROWS and single.updates == 4
    assert float(flat_params(single).double().sum()) == pytest.approx(r["two_process_params_sum"], rel=1e-12)
    single.train_step()  # the actors restarted; training continues
    assert single.frames == 5 * UNROLL * ROWS and torch.isfinite(flat_params(single)).all()


def test_the_example_under_torchrun_then_resumed_in_one_process(ddp):
    out, _, stdout = ddp
    run = [*TINY, "--out", str(out / "example")]
    assert "4 envs per game in 2 process(es)" in stdout and "| recall" in stdout
    ckpt = read_checkpoint(out / "example" / "last.pt")
    assert ckpt["extra"]["frames"] == 80 and ckpt["extra"]["learner"]["world_size"] == 2
    assert ckpt["step"] == 4  # 4 updates of 2 processes x 2 rows x 5 steps
    load_example("srwm_procgen").main(run + ["--total-frames", "120", "--resume"])  # 1 process takes all 4 rows
    ckpt = read_checkpoint(out / "example" / "last.pt")
    assert ckpt["extra"]["frames"] == 120 and ckpt["step"] == 6
