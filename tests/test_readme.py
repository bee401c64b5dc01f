"""The README's Python snippets run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs_and_prints_what_its_comments_say(code, capsys):
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    expected = [m.group(1) for m in re.finditer(r"^# ((?:logits|stack output) .*)$", code, flags=re.M)]
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected):
        if got.startswith("logits"):  # the shape exactly; the loss to within 0.3 of the comment's
            shape, loss = re.fullmatch(r"(logits \(.*\)) loss ([\d.]+)", got).groups()
            want_shape, want_loss = re.match(r"(logits \(.*\)) loss ([\d.]+)", want).groups()
            assert shape == want_shape and abs(float(loss) - float(want_loss)) < 0.3, (got, want)
        else:
            assert got == want


def test_readme_opens_with_setup_main_job_and_test_commands():
    head = README.read_text().splitlines()[:25]
    assert any("examples/" in line and "scripts/setup.sh" in line for line in head)
    assert any("pytest" in line and "scripts/setup.sh" in line for line in head)
