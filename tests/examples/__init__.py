"""Smoke tests of the example scripts, and the loader every test of a script uses."""

import importlib.util
import os
import socket
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script as module ``name`` (registered in ``sys.modules``, so dataclasses work)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py``."""
    return load_script(EXAMPLES / f"{name}.py", f"example_{name}")


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py``."""
    return load_script(ROOT / "benchmarks" / f"{name}.py", f"benchmark_{name}")


def run_torchrun(script: Path, *args: str, nproc: int = 2, timeout: float = 180) -> "subprocess.CompletedProcess[str]":
    """Run ``script`` under ``torchrun`` with ``nproc`` CPU processes on the loopback interface.

    The rendezvous and gloo are pinned to 127.0.0.1 / ``lo`` so the run never depends on how the
    host name resolves. A launch that fails is tried once more (ports are picked by the OS and a
    shared CI machine can race for them); the first failure's stderr is kept as a warning, and a
    second failure raises with both stderr tails.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if any(name == "lo" for _, name in socket.if_nameindex()):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(nproc),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        "127.0.0.1:0",
        "--rdzv-id",
        uuid.uuid4().hex,
        str(script),
        *args,
    ]
    tails = []
    for _ in range(2):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0:
            if tails:
                warnings.warn(f"torchrun succeeded on the second try; first failure:\n{tails[0]}", stacklevel=2)
            return proc
        tails.append(proc.stderr[-4000:])
    raise AssertionError("torchrun failed twice:\n" + "\n--- second try ---\n".join(tails))
