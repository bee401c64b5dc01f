"""Where data sets live by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """The folder examples read data sets from unless told otherwise.

    In order: ``$ADAPTMEM_DATA``; a ``shared/data`` folder next to the source checkout (the
    project's development machines keep real data there); ``~/.cache/adaptmem/data``.
    """
    env = os.environ.get("ADAPTMEM_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared" / "data", repo / "shared" / "data"):
        if cand.is_dir():
            return cand
    return Path.home() / ".cache" / "adaptmem" / "data"
