"""CI check: the wheel built from this checkout installs into an empty venv and works from
outside the repository.

1. ``pip wheel --no-deps`` (with build isolation, as a user's build would run) of a copy of the
   checkout's files that git tracks or would track, so that no stale ``build/`` folder leaks in;
2. a new venv without system site-packages; the wheel installed with ``--no-deps --no-index``;
3. from a temporary folder (so the checkout is not on ``sys.path``), ``import adaptmem`` must
   come from that venv, with ``py.typed``, every module of the source tree and the version of
   ``pyproject.toml``; then a small SRWM forward runs.

Step 3 needs torch and numpy, which the wheel does not bring with ``--no-deps``: the new venv
sees the packages of the Python running this script (normally ``.venv``) through a ``.pth``
line added *after* its own site-packages, so adaptmem resolves to the wheel's copy (the check
asserts it) and no multi-GB download is needed.

    .venv/bin/python scripts/check_wheel.py        # about 20-40 s
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib.metadata, json, pathlib, sys
import adaptmem
pkg = pathlib.Path(adaptmem.__file__).parent
files = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.suffix in (".py", ".typed"))
import torch
from adaptmem.layers import SRWM
y, _ = SRWM(16, num_heads=2)(torch.randn(2, 5, 16))
print(json.dumps({"file": adaptmem.__file__, "version": adaptmem.__version__, "files": files,
                  "dist": importlib.metadata.version(sys.argv[1]), "shape": list(y.shape)}))
"""


def run(cmd: list[str], label: str | None = None, **kw) -> subprocess.CompletedProcess:
    print("check_wheel: $ " + (label or " ".join(map(str, cmd))), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def main() -> int:
    import json

    t0 = time.monotonic()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    with tempfile.TemporaryDirectory(prefix="adaptmem-wheel-") as tmp:
        tmp = Path(tmp)
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\0")
        for name in filter(None, files):
            if (ROOT / name).is_file():  # (a deleted file git still tracks is skipped)
                (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, tmp / "src" / name)
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp / "dist"), str(tmp / "src")])
        wheels = list((tmp / "dist").glob("*.whl"))
        assert len(wheels) == 1, wheels
        run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")])
        py = tmp / "venv" / "bin" / "python"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(py),
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                str(wheels[0]),
            ]
        )
        site = Path(
            subprocess.run(
                [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        (site / "zz_runtime_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        out = run(
            [str(py), "-c", PROBE, project["name"]],
            f"cd {tmp} && {py} -c 'import adaptmem; ...'",
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        got = json.loads(out.stdout.strip().splitlines()[-1])
    source = sorted(
        str(p.relative_to(ROOT / "adaptmem"))
        for p in (ROOT / "adaptmem").rglob("*")
        if p.suffix in (".py", ".typed") and "__pycache__" not in p.parts
    )
    problems = []
    if not got["file"].startswith(str(site)):
        problems.append(f"adaptmem was imported from {got['file']}, not from the wheel's venv")
    if got["version"] != project["version"] or got["dist"] != project["version"]:
        problems.append(f"version {got['version']} / metadata {got['dist']} != pyproject {project['version']}")
    if "py.typed" not in got["files"]:
        problems.append("py.typed is not in the installed package")
    missing = sorted(set(source) - set(got["files"]))
    if missing:
        problems.append(f"modules missing from the wheel: {missing}")
    if got["shape"] != [2, 5, 16]:
        problems.append(f"SRWM forward gave shape {got['shape']}")
    for p in problems:
        print(f"check_wheel: FAIL: {p}", file=sys.stderr)
    if not problems:
        print(
            f"check_wheel: ok in {time.monotonic() - t0:.0f} s: {wheels[0].name} installs into an empty venv; "
            f"import adaptmem {got['version']} from outside the checkout, {len(got['files'])} files with py.typed"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
