"""Downloading files atomically, with a clear message when the network is closed."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path


class DownloadError(RuntimeError):
    """Every mirror failed; the message says where to put the file by hand."""


def download(urls: Sequence[str], dest: str | os.PathLike, *, md5: str | None = None,
             timeout: float = 30.0) -> Path:
    """Fetch the first mirror that works into ``dest`` (write to ``dest.part``, then rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        part = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
            if md5 is not None and file_md5(part) != md5:
                raise OSError(f"md5 mismatch for {url}")
            os.replace(part, dest)
            return dest
        except OSError as e:  # URLError and socket errors are OSErrors
            errors.append(f"{url}: {e}")
            part.unlink(missing_ok=True)
    raise DownloadError(
        f"could not download {dest.name} ({'; '.join(errors)}). "
        f"Without network access, place the file at {dest} by hand."
    )


def file_md5(path: str | os.PathLike) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
