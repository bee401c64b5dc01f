"""Release files agree with each other: one version everywhere, a changelog entry for it, a
well-formed CITATION.cff, a tag on HEAD (if any) named after the version, and the extras."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import adaptmem

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# CFF 1.2.0 reference types this file uses, and the keys every person entry may have.
CFF_TYPES = {"software", "article", "conference-paper", "book", "report", "thesis", "generic"}
PERSON_KEYS = {"family-names", "given-names", "name-particle", "name-suffix", "affiliation", "orcid", "email"}


def test_one_version_in_pyproject_package_and_citation():
    yaml = pytest.importorskip("yaml")
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    assert adaptmem.__version__ == VERSION
    assert str(yaml.safe_load((ROOT / "CITATION.cff").read_text())["version"]) == VERSION


def test_changelog_has_an_entry_for_the_version_and_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased" and VERSION in headings
    assert "vX.Y.Z" in text and (ROOT / "docs" / "releasing.md").exists()


def test_citation_cff_is_well_formed():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    for key in ("message", "title", "authors", "license"):
        assert cff[key], key
    assert cff["license"] == PYPROJECT["project"]["license"]
    assert len(cff["references"]) >= 3  # SRWM, MbPA and the RNN weight encoders paper (and DeltaNet)
    for entry in [cff, *cff["references"]]:
        assert entry["type"] in CFF_TYPES and entry["title"]
        for person in entry["authors"]:
            assert set(person) <= PERSON_KEYS | {"name"}, person
            assert "name" in person or {"family-names", "given-names"} <= set(person), person
    for ref in cff["references"]:
        assert isinstance(ref["year"], int) and re.fullmatch(r"arXiv:\d{4}\.\d{5}", ref["identifiers"][0]["value"])


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_release_tag_on_head_names_the_package_version():
    out = subprocess.run(["git", "tag", "--points-at", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    for tag in out.stdout.split():
        if re.fullmatch(r"v\d+\.\d+\.\d+", tag):
            assert tag == f"v{VERSION}", f"tag {tag} on HEAD but the package version is {VERSION}"


def _nested(requirement: str) -> list[str] | None:
    """The extras of a requirement on this project itself (``adaptmem-torch[a,b]``), else None."""
    m = re.fullmatch(rf"{re.escape(PYPROJECT['project']['name'])}\[(.*)\]", requirement)
    return m.group(1).split(",") if m else None


def test_extras_fla_is_fla_core_all_holds_every_cpu_extra_and_cuda_the_gpu_ones():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras["fla"] == ["fla-core[cuda]>=0.6.0"]
    assert not any("transformers" in r or "flash-linear-attention" in r for r in extras["fla"])
    assert {"transformers", "safetensors"} <= {re.split(r"[<>=\[]", r)[0] for r in extras["hf"]}
    cpu = _nested(extras["all"][0])
    assert {"hf", "wandb", "lm", "fewshot", "rl", "faiss"} <= set(cpu) and not {"fla", "gpu", "triton"} & set(cpu)
    cuda = _nested(extras["cuda"][0])
    assert {"gpu", "fla", "triton"} <= set(cuda) and set(cuda) == set(cpu) - {"faiss"} | {"gpu", "fla", "triton"}


def test_extras_refer_to_this_project_by_its_distribution_name():
    # "adaptmem[plot]" inside an extra would make pip fetch the unrelated PyPI project `adaptmem`.
    for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items():
        for r in reqs:
            name = re.split(r"[<>=!~\[; @]", r)[0]
            assert name != "adaptmem", f"extra {extra!r}: {r!r} names the PyPI project `adaptmem`, not this one"


def test_install_hints_list_what_pyproject_extras_install():
    from adaptmem.utils.extras import DISTRIBUTION, EXTRAS, install_hint

    extras = PYPROJECT["project"]["optional-dependencies"]

    def flat(extra: str) -> set[str]:
        out = set()
        for r in extras[extra]:
            nested = _nested(r)
            out |= set().union(*(flat(e) for e in nested)) if nested else {r}
        return out

    assert DISTRIBUTION == PYPROJECT["project"]["name"]
    assert set(EXTRAS) == set(extras) - {"all", "cuda"}
    for extra, reqs in EXTRAS.items():
        assert set(reqs) == flat(extra), extra
    assert install_hint("wandb") == "pip install 'wandb>=0.17' (the 'wandb' extra of adaptmem-torch)"
    assert install_hint("fewshot", "pillow").startswith("pip install 'pillow>=9.0' (")
    with pytest.raises(ValueError, match="extra must be one of"):
        install_hint("everything")


def test_py_typed_ships_in_the_package():
    assert (ROOT / "adaptmem" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["adaptmem"]
