"""Downloading files atomically, with progress, checked against a known hash; and the one
message every reader gives when its data set is missing."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.progress import progress


class DownloadError(RuntimeError):
    """Every mirror failed; the message says where to put the file by hand."""


class DataNotFoundError(FileNotFoundError):
    """A data set is not where a reader looked; the message says how to fetch it or where to
    point the reader (see :func:`missing_data_message`)."""


def missing_data_message(fn: str, what: str, where: str | os.PathLike, *, downloadable: bool = True) -> str:
    """``<fn>: <what> not found in <where>``, then what to do, in the examples' flags first (a
    user meets this on the command line) and the Python keyword second."""
    msg = f"{fn}: {what} not found in {where}. "
    if downloadable:
        msg += "Fetch it with --download (download_if_missing=True in Python), or "
    else:
        msg += "It has no public download: put the files there by hand, or "
    return msg + (
        "point --data (or $ADAPTMEM_DATA) at the folder that holds it; "
        'the README\'s section "Data" lists what each example reads.'
    )


def download(
    urls: Sequence[str],
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch the first mirror that works into ``dest``, atomically (see
    :func:`adaptmem.utils.atomic.atomic_write`): a failed or corrupt download leaves no file.

    ``md5`` / ``sha256``: the expected hex digest; checked before the file replaces ``dest``.
    Progress goes to stderr (a bar on a terminal).
    """
    if isinstance(urls, (str, bytes)) or not isinstance(urls, Sequence) or not urls:
        raise ValueError(f"download: urls must be a non-empty list of mirror URLs, got {urls!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"download: timeout must be a positive number of seconds, got {timeout!r}")
    dest = Path(dest)
    errors = []
    for url in urls:

        def fetch(f: BinaryIO, url: str = url) -> None:
            hashes = {name: hashlib.new(name) for name, want in (("md5", md5), ("sha256", sha256)) if want}
            with urllib.request.urlopen(url, timeout=timeout) as r:
                size = r.headers.get("Content-Length")
                print(
                    f"download: {url} -> {dest}" + (f" ({int(size) / 2**20:.1f} MiB)" if size else ""), file=sys.stderr
                )
                bar = progress(total=int(size) if size else None, desc=dest.name, unit="B", unit_scale=True)
                try:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        for h in hashes.values():
                            h.update(chunk)
                        bar.update(len(chunk))
                finally:
                    bar.close()
            for name, want in (("md5", md5), ("sha256", sha256)):
                if want and hashes[name].hexdigest() != want.lower():
                    raise OSError(f"{name} mismatch for {url}: got {hashes[name].hexdigest()}, expected {want}")

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
