"""The distribution's name and what its optional extras install, for install hints.

The import name is ``adaptmem``; the distribution is ``adaptmem-torch``, because ``adaptmem`` on
PyPI is an unrelated project. Hints therefore name the third-party packages an extra brings
(``pip install 'wandb>=0.17'``), never ``adaptmem[...]``: that command would install the other
project, and naming the packages works however this library was installed (a checkout, a wheel,
or the index once it is published). ``tests/test_install_docs.py`` keeps :data:`EXTRAS` equal
to ``pyproject.toml``.
"""

from __future__ import annotations

import shlex

DISTRIBUTION = "adaptmem-torch"

# Each extra's third-party requirements, nested extras expanded (``all`` and ``cuda`` are
# collections of these and never named in a hint).
EXTRAS: dict[str, tuple[str, ...]] = {
    "faiss": ("faiss-cpu>=1.8",),
    "gpu": ("faiss-gpu-cu12>=1.8",),
    "fla": ("fla-core[cuda]>=0.6.0",),
    "triton": ("triton>=3.0",),
    "numba": ("numba>=0.60",),
    "plot": ("matplotlib>=3.6", "tensorboard>=2.12"),
    "fewshot": ("pillow>=9.0", "matplotlib>=3.6", "tensorboard>=2.12"),
    "rl": ("envpool>=0.8", "gymnasium>=0.29", "matplotlib>=3.6", "tensorboard>=2.12"),
    "lm": ("datasets>=2.14", "tokenizers>=0.15", "matplotlib>=3.6", "tensorboard>=2.12"),
    "hf": ("transformers>=5.0", "safetensors>=0.4.3", "accelerate>=1.1"),
    "wandb": ("wandb>=0.17",),
    "dev": ("pytest>=7.4", "pytest-xdist>=3.5", "hypothesis>=6.80", "pyyaml>=6.0", "ruff==0.17.6"),
}


def install_hint(extra: str, *packages: str) -> str:
    """``pip install ...`` for the extra ``extra``, or for just ``packages`` of it when given
    (e.g. Pillow alone of ``fewshot``), e.g. ``pip install 'wandb>=0.17' (the 'wandb' extra)``."""
    if extra not in EXTRAS:
        raise ValueError(f"install_hint: extra must be one of {sorted(EXTRAS)}, got {extra!r}")
    reqs = EXTRAS[extra]
    if packages:
        reqs = tuple(r for r in reqs if _name(r) in packages)
        if len(reqs) != len(packages):
            raise ValueError(
                f"install_hint: packages {list(packages)} are not all in extra {extra!r} ({list(EXTRAS[extra])})"
            )
    return f"pip install {' '.join(shlex.quote(r) for r in reqs)} (the {extra!r} extra of {DISTRIBUTION})"


def _name(requirement: str) -> str:
    """The project name of a requirement string (``'fla-core[cuda]>=0.6'`` -> ``'fla-core'``)."""
    for i, ch in enumerate(requirement):
        if ch in "[<>=!~;@ ":
            return requirement[:i]
    return requirement
