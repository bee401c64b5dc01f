"""The command-line convention of every example and benchmark: --help answers at once, without
importing torch, shows every flag's default, and the older flag spellings still parse."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.examples import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "examples").glob("*.py")) + sorted((ROOT / "benchmarks").glob("bench_*.py"))

# Runs a script's --help with every `import torch` refused: the parser must be built before it.
HELP_WITHOUT_TORCH = """
import importlib.abc, runpy, sys

class RefuseTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch was imported while building the parser")

sys.meta_path.insert(0, RefuseTorch())
sys.argv = [sys.argv[1], "--help"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def option_entries(help_text: str) -> dict[str, str]:
    """``{first line of a flag's entry: the whole entry}`` of argparse's "options:" section."""
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    for line in help_text.split("\noptions:\n", 1)[1].splitlines():
        if re.match(r"  -", line):
            current = entries.setdefault(line.strip(), [])
        current.append(line)
    return {k: " ".join(" ".join(v).split()) for k, v in entries.items()}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_help_answers_within_seconds_without_torch_and_shows_every_default(script):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TORCH, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 5.0, f"--help took {seconds:.1f} s"
    entries = option_entries(proc.stdout)
    assert len(entries) > 2
    for flag, entry in entries.items():
        if not flag.startswith("-h, --help"):
            assert "default" in entry, f"{script.name}: {flag} does not say its default: {entry}"
    assert not re.search(r"--[a-z]+_[a-z_]+", "\n".join(entries)), "flags are kebab-case"


ALIASES = [  # (script, old spelling, today's spelling)
    (
        "examples/srwm_lm.py",
        ["--mode", "compare", "--out_dir", "o", "--num_heads", "4", "--no-match_params"],
        ["--action", "compare", "--out", "o", "--num-heads", "4", "--no-match-params"],
    ),
    (
        "examples/srwm_fewshot.py",
        ["--mode", "evaluate", "--model", "lstm", "--heads", "2", "--layers", "3", "--data-root", "d"],
        ["--action", "evaluate", "--kind", "lstm", "--num-heads", "2", "--num-layers", "3", "--data", "d"],
    ),
    (
        "examples/srwm_procgen.py",
        ["--core", "lstm", "--heads", "2", "--layers", "3"],
        ["--kind", "lstm", "--num-heads", "2", "--num-layers", "3"],
    ),
    ("examples/mbpa_lm.py", ["--ckpt-every", "5"], ["--checkpoint-every", "5"]),
    ("examples/mbpa_permuted_mnist.py", ["--data-dir", "d", "--out-dir", "o"], ["--data", "d", "--out", "o"]),
    ("examples/rnn_weight_encoders.py", ["--data-dir", "d", "--out-dir", "o"], ["--data", "d", "--out", "o"]),
    (
        "benchmarks/bench_fewshot.py",
        ["--models", "srwm", "--heads", "2", "--layers", "1"],
        ["--kinds", "srwm", "--num-heads", "2", "--num-layers", "1"],
    ),
    ("benchmarks/bench_rl.py", ["--cores", "lstm", "ff"], ["--kinds", "lstm", "ff"]),
]


@pytest.mark.parametrize("script,old,new", ALIASES, ids=[a[0].split("/")[1][:-3] for a in ALIASES])
def test_old_flag_spellings_parse_like_the_new_ones_with_a_note(script, old, new, capsys):
    module = load_script(ROOT / script, f"aliases_{Path(script).stem}")
    assert module.parse_args(old) == module.parse_args(new)
    notes = capsys.readouterr().err.splitlines()
    olds = [a for a in old if a.startswith("--")]
    assert len(notes) == len(olds) and all("is deprecated, use --" in n for n in notes)
    assert all(o in n for o, n in zip(olds, notes))


def test_mbpa_lm_old_ckpt_file_flag_still_names_the_checkpoint(capsys):
    module = load_script(ROOT / "examples" / "mbpa_lm.py", "aliases_mbpa_lm_ckpt")
    assert module.parse_args(["--ckpt", "x/my.pt"]).ckpt == Path("x/my.pt")
    assert "--ckpt is deprecated, use --out FOLDER" in capsys.readouterr().err
    assert module.parse_args(["--out", "x"]).ckpt == Path("x") / "ckpt.pt"
