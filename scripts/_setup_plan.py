"""Which PyTorch build and which extras ``scripts/setup.sh`` installs on this machine.

Run by ``setup.sh`` with the virtual environment's Python; prints shell assignments that the
script evaluates, and its reasons on stderr. The rules:

- a machine with an NVIDIA GPU (``nvidia-smi -L`` lists one) gets the CUDA build of PyTorch from
  the default index and the extras ``cuda,dev`` (Triton kernels, fla-core, faiss-gpu);
- a machine without one gets the CPU build and the extras ``all,dev`` (no Triton, no fla):
  from pip's configured sources when they already hold a CPU wheel of the pinned version
  (a local wheel, as on the project's CI machines), else from PyTorch's CPU wheel index with
  the default index for the other packages, else (index unreachable) from the default index
  with a warning: on Linux that is the CUDA build, several GB;
- macOS gets the default index's build, which is the CPU build there;
- a torch already in the environment is kept (the script is safe to re-run).

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shlex
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_INDEX = "https://pypi.org/simple"
CPU_EXTRAS = "all,dev"
CUDA_EXTRAS = "cuda,dev"


@dataclass
class Facts:
    """What the plan depends on; :func:`gather` reads them off the machine."""

    platform: str  # sys.platform
    gpu: str | None  # first line of `nvidia-smi -L`, None without an NVIDIA GPU
    torch: str | None  # version of the torch already installed, None if none
    local_cpu_wheel: str | None  # URL of a CPU torch wheel pip's configured sources hold (no index)
    cpu_index_reachable: bool | None = None  # probed only when the plan needs it


@dataclass
class Plan:
    device: str  # "cpu" or "cuda"
    extras: str
    torch_args: list[str] = field(default_factory=list)  # arguments of `pip install`; empty: keep torch
    fallback_args: list[str] = field(default_factory=list)  # if torch_args fail
    notes: list[str] = field(default_factory=list)


def detect_gpu() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return gpus[0].strip() if out.returncode == 0 and gpus else None


def installed_torch() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def local_cpu_wheel(version: str = TORCH_VERSION) -> str | None:
    """The URL of the CPU wheel of torch ``version`` that pip resolves without any index (its
    configured find-links), or None. Asks pip itself (``--dry-run --report``), so pip's own
    configuration files and environment decide, as they will for the install."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--no-deps",
        "--ignore-installed",
        "--no-index",
        "--report",
        "-",
        f"torch=={version}",
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        report = json.loads(out.stdout) if out.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    for item in report.get("install", []):
        if item.get("metadata", {}).get("version", "").endswith("+cpu"):
            return item.get("download_info", {}).get("url")
    return None


def index_reachable(url: str = CPU_INDEX, timeout: float = 10.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/torch/", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def plan(facts: Facts, probe=index_reachable) -> Plan:
    """The install plan for ``facts``; ``probe()`` tells whether PyTorch's CPU index answers
    (called only when the plan depends on it)."""
    device = "cuda" if facts.gpu else "cpu"
    p = Plan(device, CUDA_EXTRAS if device == "cuda" else CPU_EXTRAS)
    p.notes.append(
        f"NVIDIA GPU found ({facts.gpu}): CUDA build of PyTorch, extras {p.extras}"
        if facts.gpu
        else f"no NVIDIA GPU (nvidia-smi lists none): CPU build of PyTorch, extras {p.extras}"
    )
    if facts.torch is not None:
        p.notes.append(f"torch {facts.torch} is already installed: keeping it")
        if device == "cpu" and facts.platform.startswith("linux") and "+cpu" not in facts.torch:
            p.notes.append(
                "it may be a CUDA build (several GB, unused here); to replace it: "
                ".venv/bin/python -m pip uninstall -y torch, then run scripts/setup.sh again"
            )
        return p
    if device == "cuda":
        p.torch_args = [f"torch=={TORCH_VERSION}"]  # the default index's Linux wheel is the CUDA build
        return p
    if not (facts.platform.startswith("linux") or facts.platform.startswith("win")):
        p.torch_args = [f"torch=={TORCH_VERSION}"]  # macOS: the default index's wheel is the CPU build
        p.notes.append("the default index serves the CPU build on this platform")
        return p
    cpu_spec = f"torch=={TORCH_VERSION}+cpu"
    if facts.local_cpu_wheel:
        p.torch_args = [cpu_spec]
        p.notes.append(f"pip's configured sources hold the CPU wheel ({facts.local_cpu_wheel}): using it")
        return p
    fallback = [f"torch=={TORCH_VERSION}"]
    warning = (
        "falling back to the default index: on Linux it serves the CUDA build of PyTorch (several GB "
        "with its NVIDIA libraries), which also runs on the CPU"
    )
    reachable = facts.cpu_index_reachable if facts.cpu_index_reachable is not None else probe()
    if not reachable:
        p.torch_args = fallback
        p.notes.append(f"PyTorch's CPU wheel index {CPU_INDEX} is unreachable; {warning}")
        return p
    p.torch_args = [cpu_spec, "--index-url", CPU_INDEX, "--extra-index-url", DEFAULT_INDEX]
    p.fallback_args = fallback
    p.notes.append(
        f"installing the CPU build from PyTorch's CPU wheel index {CPU_INDEX} (other packages from {DEFAULT_INDEX})"
    )
    p.notes.append(f"if that fails: {warning}")
    return p


def shell(p: Plan) -> str:
    """``p`` as bash assignments (arrays for the pip arguments), safe to ``eval``."""

    def arr(xs: list[str]) -> str:
        return "(" + " ".join(shlex.quote(x) for x in xs) + ")"

    return "\n".join(
        [
            f"DEVICE={shlex.quote(p.device)}",
            f"EXTRAS={shlex.quote(p.extras)}",
            f"TORCH_ARGS={arr(p.torch_args)}",
            f"TORCH_FALLBACK_ARGS={arr(p.fallback_args)}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA when nvidia-smi lists a GPU (default: auto)",
    )
    # Overrides of what is read off the machine, for tests and for forcing a path.
    ap.add_argument("--gpu", help="pretend nvidia-smi listed this GPU ('' for none)")
    ap.add_argument("--torch", help="pretend this torch version is installed ('' for none)")
    ap.add_argument("--local-wheel", help="pretend pip's sources hold this CPU wheel ('' for none)")
    ap.add_argument("--cpu-index", choices=("reachable", "unreachable"), help="skip the probe of the CPU index")
    args = ap.parse_args(argv)
    facts = Facts(
        sys.platform,
        (args.gpu or None)
        if args.gpu is not None
        else (
            detect_gpu() if args.device == "auto" else ("forced by --device cuda" if args.device == "cuda" else None)
        ),
        (args.torch or None) if args.torch is not None else installed_torch(),
        None,
        None if args.cpu_index is None else args.cpu_index == "reachable",
    )
    if args.local_wheel is not None:
        facts.local_cpu_wheel = args.local_wheel or None
    elif facts.torch is None and facts.gpu is None:
        facts.local_cpu_wheel = local_cpu_wheel()
    p = plan(facts)
    for note in p.notes:
        print(f"setup:   {note}", file=sys.stderr)
    print(shell(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
