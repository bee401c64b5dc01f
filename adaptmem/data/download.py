"""Downloading files atomically, with a clear message when the network is closed."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from adaptmem.utils.atomic import atomic_write


class DownloadError(RuntimeError):
    """Every mirror failed; the message says where to put the file by hand."""


def download(urls: Sequence[str], dest: str | os.PathLike, *, md5: str | None = None,
             timeout: float = 30.0) -> Path:
    """Fetch the first mirror that works into ``dest``, atomically (see
    :func:`adaptmem.utils.atomic.atomic_write`): a failed or corrupt download leaves no file."""
    if isinstance(urls, (str, bytes)) or not isinstance(urls, Sequence) or not urls:
        raise ValueError(f"download: urls must be a non-empty list of mirror URLs, got {urls!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"download: timeout must be a positive number of seconds, got {timeout!r}")
    dest = Path(dest)
    errors = []
    for url in urls:

        def fetch(f: BinaryIO, url: str = url) -> None:
            h = hashlib.md5()
            with urllib.request.urlopen(url, timeout=timeout) as r:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    h.update(chunk)
            if md5 is not None and h.hexdigest() != md5:  # checked before the file replaces dest
                raise OSError(f"md5 mismatch for {url}")

        try:
            return atomic_write(dest, fetch)
        except OSError as e:  # URLError and socket errors are OSErrors
            errors.append(f"{url}: {e}")
    raise DownloadError(
        f"could not download {dest.name} ({'; '.join(errors)}). "
        f"Without network access, place the file at {dest} by hand."
    )


def file_md5(path: str | os.PathLike) -> str:
    if Path(path).is_dir():
        raise ValueError(f"file_md5: {path} is a directory, not a file")
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
