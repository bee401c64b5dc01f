"""adaptmem.utils.threads: thread counts from the machine, never oversubscribed, and honoured overrides."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adaptmem.utils import threads as th

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_state(monkeypatch):
    """Each test starts with no thread variables of ours or the user's, and gets torch's count back."""
    before = torch.get_num_threads()
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(th, "_SET_BY_US", {})
    yield
    torch.set_num_threads(before)


def test_default_threads_leave_the_jobs_own_workers_a_cpu_and_never_drop_below_one():
    assert th.default_threads(2) == 2
    assert th.default_threads(8, reserved=2) == 6  # e.g. two envpool pools
    assert th.default_threads(2, reserved=2) == 1 and th.default_threads(1, reserved=3) == 1
    assert th.default_threads(8, processes=4) == 2  # torchrun's processes share the node
    assert th.default_threads(8, reserved=2, processes=4) == 1


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_limit_reads_v2_quota_of_the_process_and_its_parents_and_v1(tmp_path):
    proc = tmp_path / "self_cgroup"
    write(proc, "0::/job/step\n")
    root = tmp_path / "cg"
    write(root / "job" / "step" / "cpu.max", "max 100000\n")
    assert th.cgroup_cpu_limit(root, proc) is None
    write(root / "job" / "cpu.max", "150000 100000\n")  # the parent's quota binds the child
    assert th.cgroup_cpu_limit(root, proc) == pytest.approx(1.5)
    write(root / "cpu" / "cpu.cfs_quota_us", "100000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert th.cgroup_cpu_limit(root, proc) == pytest.approx(1.0)
    assert th.cgroup_cpu_limit(tmp_path / "missing", tmp_path / "missing") is None


def test_usable_cpus_is_the_affinity_mask_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: 2.5)
    assert th.usable_cpus() == 2
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: 0.5)
    assert th.usable_cpus() == 1


def test_configure_threads_sets_torch_and_prints_the_chosen_numbers(monkeypatch):
    monkeypatch.setattr(th, "usable_cpus", lambda: 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    out = io.StringIO()
    cfg = th.configure_threads(reserved=2, file=out)
    assert (cfg.intra_op, cfg.cpus, cfg.reserved, cfg.source) == (2, 4, 2, "machine")
    assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    line = out.getvalue()
    assert line.count("\n") == 1 and line.startswith("threads: 2 intra-op") and "4 usable CPU(s), 2 reserved" in line
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 processes on this node
    assert th.configure_threads(verbose=False).intra_op == 1
    cfg = th.configure_threads(1, verbose=False)
    assert (cfg.intra_op, cfg.source, torch.get_num_threads()) == (1, "--threads", 1)


def test_the_users_omp_num_threads_wins_but_our_own_setting_does_not(monkeypatch):
    monkeypatch.setattr(th, "usable_cpus", lambda: 4)
    th.configure_threads(3, verbose=False)  # sets OMP_NUM_THREADS=3 for later OpenMP libraries
    cfg = th.configure_threads(verbose=False)
    assert (cfg.intra_op, cfg.source) == (4, "machine")  # not the 3 of our own earlier call
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = th.configure_threads(verbose=False)
    assert (cfg.intra_op, cfg.source) == (1, "OMP_NUM_THREADS")


@pytest.mark.parametrize(
    "threads,reserved,env,match",
    [
        (0, 0, None, r"threads \(--threads\) must be a positive integer or None, got 0"),
        (True, 0, None, r"threads \(--threads\) must be a positive integer or None, got True"),
        (None, -1, None, r"reserved must be a non-negative integer, got -1"),
        (None, 0, "many", r"OMP_NUM_THREADS must be a positive integer, got 'many'"),
    ],
)
def test_bad_thread_settings_are_refused_by_name(monkeypatch, threads, reserved, env, match):
    if env is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    with pytest.raises(ValueError, match=match):
        th.configure_threads(threads, reserved=reserved, verbose=False)


def test_passive_waiting_is_set_before_torch_loads_and_a_users_policy_is_kept():
    code = (
        "import os, adaptmem.utils.threads as t; t.prefer_passive_waiting(); import torch; "
        "print(t.configure_threads(1, verbose=False).wait_policy, os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    run = lambda e: subprocess.run(
        [sys.executable, "-c", code],
        env=e,
        capture_output=True,
        text=True,  # noqa: E731
        timeout=120,
        check=True,
    ).stdout.split()
    assert run(env) == ["PASSIVE", "PASSIVE"]
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "ACTIVE"]
    late = code.replace("t.prefer_passive_waiting(); import torch", "import torch")  # torch first: too late
    assert subprocess.run(
        [sys.executable, "-c", late], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout.startswith("default (torch was imported before it was set)")


def test_set_threads_is_a_deprecated_alias_of_configure_threads():
    from adaptmem.utils import set_threads

    with pytest.warns(DeprecationWarning, match="use adaptmem.utils.configure_threads"):
        assert set_threads(1) == 1
    assert torch.get_num_threads() == 1
