"""The README's Python snippets run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code):
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


def test_readme_opens_with_setup_main_job_and_test_commands():
    head = README.read_text().splitlines()[:25]
    assert any("examples/" in line and "scripts/setup.sh" in line for line in head)
    assert any("pytest" in line and "scripts/setup.sh" in line for line in head)
