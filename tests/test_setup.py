"""scripts/setup.sh picks the PyTorch build and extras that fit the machine (scripts/_setup_plan.py),
tested without a network: the plan on given facts, nvidia-smi stubbed on PATH, the script's dry run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("_setup_plan", ROOT / "scripts" / "_setup_plan.py")
setup_plan = sys.modules["_setup_plan"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(setup_plan)
Facts, plan = setup_plan.Facts, setup_plan.plan
V = setup_plan.TORCH_VERSION
LOCAL = f"file:///opt/wheels/torch-{V}%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"
bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def no_probe():
    pytest.fail("the CPU index must not be probed here")


def test_cpu_machine_with_a_local_cpu_wheel_installs_it_without_asking_an_index():
    p = plan(Facts("linux", None, None, LOCAL), probe=no_probe)
    assert (p.device, p.extras) == ("cpu", "all,dev")
    assert p.torch_args == [f"torch=={V}+cpu"] and p.fallback_args == []
    assert any(LOCAL in n for n in p.notes)


def test_cpu_machine_without_one_uses_pytorchs_cpu_index_and_falls_back_to_the_default_index():
    probes = []
    p = plan(Facts("linux", None, None, None), probe=lambda: probes.append(1) or True)
    assert probes == [1] and p.extras == "all,dev"
    assert p.torch_args == [
        f"torch=={V}+cpu",
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
        "--extra-index-url",
        "https://pypi.org/simple",
    ]
    assert p.fallback_args == [f"torch=={V}"] and any("CUDA build" in n for n in p.notes)


def test_an_unreachable_cpu_index_falls_back_at_once_with_a_warning():
    p = plan(Facts("linux", None, None, None), probe=lambda: False)
    assert p.torch_args == [f"torch=={V}"] and p.fallback_args == []
    assert any("unreachable" in n and "CUDA build of PyTorch (several GB" in n for n in p.notes)


def test_gpu_machine_gets_the_cuda_build_and_the_cuda_extras():
    p = plan(Facts("linux", "GPU 0: NVIDIA H200 (UUID: GPU-1)", None, None), probe=no_probe)
    assert (p.device, p.extras, p.torch_args) == ("cuda", "cuda,dev", [f"torch=={V}"])
    assert "triton" not in setup_plan.CPU_EXTRAS and "cuda" in p.extras


def test_installed_torch_is_kept_and_a_cuda_build_on_a_cpu_machine_is_pointed_out():
    p = plan(Facts("linux", None, f"{V}+cpu", None), probe=no_probe)
    assert p.torch_args == [] and any("already installed" in n for n in p.notes)
    p = plan(Facts("linux", None, V, None), probe=no_probe)
    assert p.torch_args == [] and any("pip uninstall -y torch" in n for n in p.notes)


def test_macos_takes_the_default_index_whose_wheel_is_the_cpu_build():
    p = plan(Facts("darwin", None, None, None), probe=no_probe)
    assert p.torch_args == [f"torch=={V}"] and p.extras == "all,dev"


@bash
def test_the_plan_evaluates_to_bash_arrays():
    p = plan(Facts("linux", None, None, None), probe=lambda: True)
    script = (
        setup_plan.shell(p) + '\nprintf "%s|" "$DEVICE" "$EXTRAS" "${TORCH_ARGS[@]}"; echo "${#TORCH_FALLBACK_ARGS[@]}"'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == ("cpu|all,dev|" + "|".join(p.torch_args) + "|1\n")


def _stub_nvidia_smi(folder: Path, body: str) -> dict:
    folder.mkdir(exist_ok=True)
    stub = folder / "nvidia-smi"
    stub.write_text("#!/bin/sh\n" + body + "\n")
    stub.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@bash
@pytest.mark.parametrize(
    "body, gpu",
    [
        ('echo "GPU 0: NVIDIA H200 (UUID: GPU-1)"', "GPU 0: NVIDIA H200 (UUID: GPU-1)"),
        ('echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver"; exit 9', None),
        ("exit 0", None),  # runs, lists nothing
    ],
)
def test_detect_gpu_reads_nvidia_smi(tmp_path, monkeypatch, body, gpu):
    env = _stub_nvidia_smi(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", env["PATH"])
    assert setup_plan.detect_gpu() == gpu


def test_detect_gpu_without_nvidia_smi_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert setup_plan.detect_gpu() is None


@bash
@pytest.mark.parametrize("gpu, device, extras", [(True, "cuda", "cuda,dev"), (False, "cpu", "all,dev")])
def test_setup_sh_dry_run_follows_nvidia_smi(tmp_path, gpu, device, extras):
    env = _stub_nvidia_smi(tmp_path / "bin", 'echo "GPU 0: NVIDIA Fake (UUID: GPU-1)"' if gpu else "exit 9")
    env["PYTHON"] = sys.executable
    had_venv = (ROOT / ".venv").exists()
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh"), "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"setup: plan: device={device}" in out.stdout and f"pip install -e .[{extras}]" in out.stdout
    assert "setup [2/6]" in out.stdout  # numbered steps
    assert (ROOT / ".venv").exists() == had_venv  # a dry run creates nothing


def test_ci_runs_setup_from_scratch_then_the_wheel_check_and_the_tests():
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    order = [
        next(i for i, ln in enumerate(lines) if key in ln)
        for key in ("rm -rf .venv", "scripts/setup.sh", "scripts/check_wheel.py", "pytest")
    ]
    assert order == sorted(order) and "triton" in lines[order[1]]
