"""Smoke tests of the example scripts, and the loader every test of a script uses."""

import importlib.util
import sys
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
