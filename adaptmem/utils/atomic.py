"""The library's one atomic file writer: a crash leaves the old file or the new one, never a torn one.

:func:`atomic_write` fills a temporary file beside the target, flushes and fsyncs it, renames it
over the target (``os.replace`` is atomic within a file system) and fsyncs the directory so the
rename itself survives a power loss. Checkpoints, vocabularies, zoo metadata, CSV logs and
downloads all go through it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# ".<target name>.<writer pid>-<8 hex digits>.tmp": the pid tells a killed writer's leftover from
# a file another live process is still writing.
_TEMP_PATTERN = r"\.{name}\.(\d+)-[0-9a-f]{{8}}\.tmp"


def atomic_write(
    path: str | os.PathLike,
    write_fn: Callable[[IO[Any]], Any],
    *,
    text: bool = False,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> Path:
    """Write ``path`` all at once: ``write_fn(f)`` fills a temporary file, which then replaces ``path``.

    Args:
        path: the target; its folder is created if missing.
        write_fn: called once with the open temporary file (binary, or text with ``text=True``).
        text, encoding, newline: open the file in text mode with these settings (as :func:`open`).

    Guarantees:
        - the target is either untouched or completely replaced; on any exception in
          ``write_fn`` or the write (``KeyboardInterrupt`` included) the temporary file is removed;
        - temporary files of the same target left by an earlier writer that was killed (its
          process no longer exists on this host) are removed first;
        - the new file gets the permissions :func:`open` would give (``0o666`` less the umask),
          not the ``0o600`` of :func:`tempfile.mkstemp`.

    Returns the target's path.
    """
    path = Path(path)
    if not callable(write_fn):
        raise TypeError(f"atomic_write: write_fn must be callable, got {type(write_fn).__name__}")
    if path.is_dir():
        raise ValueError(f"atomic_write: {path} is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp: Path | None = None
    try:
        fd, tmp = _create_temp(path)
        kwargs = {"encoding": encoding, "newline": newline} if text else {}
        with os.fdopen(fd, "w" if text else "wb", **kwargs) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write` of a string."""
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text: text must be a str, got {type(text).__name__}")
    return atomic_write(path, lambda f: f.write(text), text=True, encoding=encoding)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` whose writer process is gone; returns them."""
    path = Path(path)
    if os.name != "posix" or not path.parent.is_dir():  # the liveness check below needs POSIX
        return []
    pattern = re.compile(_TEMP_PATTERN.format(name=re.escape(path.name)))
    removed = []
    for entry in os.scandir(path.parent):
        m = pattern.fullmatch(entry.name)
        if m and not _process_alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):  # another writer may clean up at the same time
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _create_temp(path: Path) -> tuple[int, Path]:
    # os.open with mode 0o666 lets the kernel apply the umask (and any default ACL) exactly as for
    # a plain open(); reading the umask to chmod afterwards would need a racy os.umask round trip.
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    # Some file systems (e.g. a few network mounts) refuse to fsync a directory; the rename has
    # happened either way, only its durability across a power loss is then up to them.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
