"""Where data sets live by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """The folder examples read data sets from unless told otherwise (``--data``).

    ``$ADAPTMEM_DATA`` when set, else ``~/.cache/adaptmem/data``. Each data set lives in a
    sub-folder named after it (``mnist/``, ``omniglot/``, ``tinyshakespeare/``, ...), which an
    example's ``--download`` fills. One rule on every machine: the location of the source
    checkout plays no part (a wheel install has none).
    """
    env = os.environ.get("ADAPTMEM_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "adaptmem" / "data"
