"""A progress bar that degrades to nothing when output is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             disable: bool | None = None, **kwargs: Any):
    """``tqdm`` with the library's defaults (off when stderr is not a TTY unless forced)."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)
