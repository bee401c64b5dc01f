"""Every ``pip install`` line in the docs and in the code installs this project or its own
dependencies, never a package of the same name from the index (a static check, no network).

``adaptmem`` on PyPI is an unrelated project; ``adaptmem-torch`` (this one) is not published
yet, so it may only be installed from a path, a wheel file or a git URL. Any other name must be
one of the requirements in ``pyproject.toml`` (or a packaging tool).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PUBLISHED = False  # set True once `adaptmem-torch` is on PyPI: then `pip install adaptmem-torch` is right
FOREIGN = {"adaptmem"}  # names on the index that belong to other projects
TOOLS = {"pip", "setuptools", "wheel", "build", "twine"}
OPTIONS_WITH_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--python",
    "--prefix",
    "--root",
    "-w",
    "--progress-bar",
}
# Where a command ends in markdown or a shell script, and also inside a Python string.
_STOP = re.compile(r"[`\n;|#]|&&| \(|\. |: ")
_STOP_PY = re.compile(r"[`\"\n;|#)]|&&| \(|\. |: ")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[<>=!~\[;@ ]", req, maxsplit=1)[0])


DEPENDENCIES = {_req_name(r) for r in PROJECT["dependencies"]}
for _reqs in PROJECT["optional-dependencies"].values():
    DEPENDENCIES |= {_req_name(r) for r in _reqs}
OURS = _norm(PROJECT["name"])
ALLOWED = (DEPENDENCIES | TOOLS) - {OURS}


def doc_files() -> list[Path]:
    files = [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md"), ROOT / ".ci" / "run"]
    for folder in ("adaptmem", "examples", "benchmarks", "scripts"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ".md")]
    return sorted(p for p in files if p.is_file())


def install_commands(text: str, python: bool = False) -> list[str]:
    """The argument part of each ``pip install ...`` in ``text`` (``python``: a source file, where
    commands sit in strings and calls)."""
    stop = _STOP_PY if python else _STOP
    return [stop.split(m.group(1), maxsplit=1)[0] for m in re.finditer(r"pip install (.*)", text)]


def problems(args: str) -> list[str]:
    """Why the ``pip install`` arguments ``args`` could install someone else's project."""
    try:
        tokens = shlex.split(args)
    except ValueError:  # an unbalanced quote: the command was cut inside a string
        tokens = args.replace("'", " ").replace('"', " ").split()
    out, skip = [], False
    for i, tok in enumerate(tokens):
        if skip:
            skip = False
            continue
        if re.fullmatch(r"\d*[<>].*|\\", tok):  # a redirection or a line continuation
            continue
        if tok.startswith("-"):
            skip = tok in OPTIONS_WITH_VALUE
            continue
        if tok == "@" or (i > 0 and tokens[i - 1] == "@"):
            continue
        direct = " @ " in tok or (i + 1 < len(tokens) and tokens[i + 1] == "@")
        if (
            tok.startswith((".", "/", "~", "$", "<", "{"))
            or tok.endswith((".whl", ".tar.gz", ".zip"))
            or "/" in tok
            and not direct
        ):
            continue  # a path, or a placeholder (<...>, an f-string's {...})
        name = _req_name(tok)
        if not name:
            continue
        if name in FOREIGN:
            out.append(f"{tok!r}: `{name}` on the index is another project")
        elif name == OURS and not (direct or PUBLISHED):
            out.append(f"{tok!r}: {PROJECT['name']} is not on the index yet; install it from a path, wheel or git URL")
        elif name not in ALLOWED and name != OURS:
            out.append(f"{tok!r}: `{name}` is not a dependency of {PROJECT['name']}")
    return out


def test_the_parser_catches_the_wrong_lines_and_lets_the_right_ones_pass():
    assert problems("adaptmem") and problems("-U 'adaptmem[hf]'") and problems("adaptmem-torch")
    assert problems("somebodys-package") and problems("-q adaptmem==0.6.0")
    assert not problems("-e '.[all,dev]'") and not problems("'adaptmem-torch[all] @ file:///tmp/x.whl'")
    assert not problems("adaptmem-torch @ git+https://example.org/adaptmem.git")
    assert not problems("torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu")
    assert not problems("'transformers>=5.0' safetensors") and not problems(
        "dist/adaptmem_torch-0.2.0-py3-none-any.whl"
    )
    assert install_commands("run `pip install adaptmem` now") == ["adaptmem"]
    assert install_commands('msg = "needs FAISS (pip install faiss-cpu); or"', python=True) == ["faiss-cpu"]
    assert install_commands('pip install ".[all]"  # a clone') == ['".[all]"  ']


def test_no_install_line_names_a_package_that_is_not_this_project_or_its_dependency():
    found, bad = 0, []
    for path in doc_files():
        for args in install_commands(path.read_text(encoding="utf-8", errors="replace"), path.suffix == ".py"):
            found += 1
            bad += [f"{path.relative_to(ROOT)}: pip install {args.strip()}: {why}" for why in problems(args)]
    assert found >= 5  # the README's install section alone has several
    assert not bad, "\n".join(bad)


def test_the_readme_installs_from_a_checkout_or_a_wheel_and_explains_the_name():
    readme = (ROOT / "README.md").read_text()
    lines = install_commands(readme)
    assert any(re.search(r"(^|\s)['\"]?\.(\[|['\"\s]|$)", a) for a in lines)  # pip install ".[all]"
    assert any(f"{PROJECT['name']}[all] @ file://" in a for a in lines)
    assert "## Install" in readme and "unrelated project" in readme
