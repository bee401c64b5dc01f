"""Files that say what they are and prove they are whole: a header with a format name, a
version and the SHA-256 of the payload, checked before anything is unpickled.

Every file the library saves (checkpoints, episodic memories, zoo work files, corpus caches)
is written by :func:`save_verified` and read by :func:`load_verified`::

    magic (11 bytes)  header length (4 bytes, little-endian)  header (canonical JSON)  payload

The header is ``{"format": ..., "version": ..., "payload_bytes": ..., "sha256": ...}`` and the
payload is ``torch.save`` of the object, loaded with ``weights_only=True`` (no code runs from a
file): NumPy arrays and adaptmem's ``NamedTuple`` states are stored as tagged plain values
(:func:`to_plain`) and rebuilt on load (:func:`from_plain`). Any single changed bit is caught:
in the payload by the hash, in the header because it must parse to the same canonical JSON.
Truncated, empty, foreign or mismatched files raise :class:`CorruptFileError` naming the path
and what failed; a missing file raises ``FileNotFoundError`` with the path. Zoo arrays are too
large to hold in memory: their hashes go into ``meta.json`` (:func:`file_sha256`,
:func:`seal_json` and :func:`check_sealed_json`). Third-party data-set pickles are read by
:func:`load_data_pickle`, which rebuilds NumPy arrays and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptmem.utils.atomic import atomic_write

MAGIC = b"\x89adaptmem\r\n"  # \x89: not text; \r\n: caught if a text-mode copy mangled line ends
_LEN_BYTES = 4
_MAX_HEADER = 1 << 16
_ZIP = b"PK\x03\x04"  # what a plain torch.save file starts with


class CorruptFileError(ValueError):
    """A file the library wrote (or was asked to read) is not what it should be.

    ``path`` is the file, ``reason`` what failed (truncated, checksum mismatch, wrong format,
    ...). A subclass of ``ValueError``, so ``except ValueError`` still catches it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


_LEAVES = (torch.Tensor, int, float, complex, str, bytes, bool, type(None), torch.Size, torch.dtype, torch.device)
_TAG = "__adaptmem__"


def to_plain(obj: Any, where: str = "obj") -> Any:
    """``obj`` with NumPy arrays and scalars and adaptmem ``NamedTuple`` s turned into tagged
    dicts that ``torch.load(weights_only=True)`` reads; raises ``TypeError`` naming the entry
    (``where``) for any other object it could not read back."""
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        cls = type(obj)
        if not cls.__module__.startswith("adaptmem."):
            raise TypeError(
                f"{where}: a {cls.__qualname__} (NamedTuple from {cls.__module__}) cannot be stored; "
                "store a tuple or a dict"
            )
        return {
            _TAG: "namedtuple",
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "values": [to_plain(v, f"{where}.{f}") for f, v in zip(obj._fields, obj)],
        }
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.asarray(obj)
        if a.dtype.hasobject:
            raise TypeError(f"{where}: a NumPy array of Python objects cannot be stored")
        return {
            _TAG: "ndarray",
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "scalar": isinstance(obj, np.generic),
            "bytes": torch.frombuffer(bytearray(np.ascontiguousarray(a).tobytes()), dtype=torch.uint8)
            if a.nbytes
            else torch.zeros(0, dtype=torch.uint8),
        }
    if isinstance(obj, dict):
        return _same_dict(obj, {k: to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()})
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, _LEAVES):
        return obj
    raise TypeError(
        f"{where}: a {type(obj).__qualname__} cannot be stored (weights_only loading reads tensors, "
        "numbers, strings, None and lists, tuples and dicts of those)"
    )


def _state_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith("adaptmem."):
        raise ValueError(f"class {name} is not adaptmem's")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")):
        raise ValueError(f"{name} is not a NamedTuple")
    return obj


def from_plain(obj: Any) -> Any:
    """Undo :func:`to_plain`."""
    if isinstance(obj, dict):
        tag = obj.get(_TAG)
        if tag == "namedtuple":
            return _state_class(obj["class"])(*(from_plain(v) for v in obj["values"]))
        if tag == "ndarray":
            a = np.frombuffer(obj["bytes"].numpy().tobytes(), dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
            return a[()] if obj["scalar"] else a
        return _same_dict(obj, {k: from_plain(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(from_plain(v) for v in obj)
    return obj


def _same_dict(like: dict, items: dict) -> dict:
    """``items`` as an ``OrderedDict`` (with a state dict's ``_metadata``) when ``like`` is one."""
    if not isinstance(like, OrderedDict):
        return items
    out = OrderedDict(items)
    if hasattr(like, "_metadata"):
        out._metadata = like._metadata  # module versions, read by nn.Module.load_state_dict
    return out


def save_verified(obj: Any, path: str | os.PathLike, *, format: str, version: int = 1) -> Path:
    """Write ``obj`` (tensors and plain Python values) to ``path`` atomically, with the header.

    Args:
        obj: what ``torch.load(weights_only=True)`` can read back: tensors, numbers, strings,
            ``None`` and lists, tuples and dicts of those.
        path: the target (see :func:`adaptmem.utils.atomic.atomic_write`).
        format: the kind of file, e.g. ``"adaptmem.checkpoint"``; checked on load.
        version: the layout version of ``obj``; checked on load.
    """
    if not isinstance(format, str) or not format:
        raise TypeError(f"save_verified: format must be a non-empty str, got {format!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise TypeError(f"save_verified: version must be an int >= 0, got {version!r}")
    buf = io.BytesIO()
    torch.save(to_plain(obj), buf)
    payload = buf.getvalue()
    header = _canonical(
        {
            "format": format,
            "version": version,
            "payload_bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
    )

    def write(f) -> None:
        f.write(MAGIC + len(header).to_bytes(_LEN_BYTES, "little") + header)
        f.write(payload)

    return atomic_write(path, write)


def _read_file(path: Path) -> bytes:
    """A file's bytes; ``FileNotFoundError`` or :class:`CorruptFileError` (a directory, unreadable) naming it."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    if path.is_dir():
        raise CorruptFileError(path, "is a directory, not a file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({e.strerror or e})") from e


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    """The verified header and payload bytes of a :func:`save_verified` file.

    Raises ``FileNotFoundError`` for a missing path and :class:`CorruptFileError` for anything
    that is not a whole file of this layout (directories included).
    """
    path = Path(path)
    data = _read_file(path)
    if not data:
        raise CorruptFileError(path, "is empty")
    if not data.startswith(MAGIC):
        if data.startswith(_ZIP):
            raise CorruptFileError(
                path,
                "is a plain torch.save file without the adaptmem header (written by an "
                "older adaptmem, or not by adaptmem); pass allow_legacy=True to load it "
                "unverified if you trust it, then save it again",
            )
        if MAGIC.startswith(data):
            raise CorruptFileError(path, f"is truncated ({len(data)} bytes, inside the header)")
        raise CorruptFileError(path, f"is not an adaptmem file (starts with {data[:8]!r})")
    start = len(MAGIC) + _LEN_BYTES
    if len(data) < start:
        raise CorruptFileError(path, f"is truncated ({len(data)} bytes, inside the header)")
    n = int.from_bytes(data[len(MAGIC) : start], "little")
    if n > _MAX_HEADER or start + n > len(data):
        what = "truncated" if n <= _MAX_HEADER else "corrupt"
        raise CorruptFileError(path, f"is {what}: its header claims {n} bytes, {len(data) - start} follow")
    raw = data[start : start + n]
    try:
        header = json.loads(raw)
        ok = isinstance(header, dict) and _canonical(header) == raw
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok or set(header) != {"format", "version", "payload_bytes", "sha256"}:
        raise CorruptFileError(path, "has a corrupt header")
    payload = data[start + n :]
    if len(payload) != header["payload_bytes"]:
        what = "truncated" if len(payload) < header["payload_bytes"] else "longer than written"
        raise CorruptFileError(
            path, f"is {what}: payload of {len(payload)} bytes, the header says {header['payload_bytes']}"
        )
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CorruptFileError(path, "fails its SHA-256 checksum: the contents changed after writing")
    return header, payload


def load_verified(
    path: str | os.PathLike,
    *,
    format: str,
    versions: Collection[int] = (1,),
    map_location: str | torch.device = "cpu",
    allow_legacy: bool = False,
) -> Any:
    """Read back what :func:`save_verified` wrote, after checking the header and checksum.

    Args:
        path: the file.
        format: the format name it must carry.
        versions: the layout versions the caller can read.
        map_location: as for :func:`torch.load`.
        allow_legacy: also accept a plain ``torch.save`` file (no header, so no checksum; it
            is loaded with ``weights_only=True`` after a warning). The compatibility path for
            files written before the header existed.

    Returns the object. Raises ``FileNotFoundError`` or :class:`CorruptFileError`.
    """
    path = Path(path)
    try:
        header, payload = read_header(path)
    except CorruptFileError as e:
        if not (allow_legacy and e.reason.startswith("is a plain torch.save file")):
            raise
        warnings.warn(
            f"{path}: loading a file without checksum (allow_legacy=True); save it again to add one",
            UserWarning,
            stacklevel=2,
        )
        return _load_legacy(path, map_location)
    if header["format"] != format:
        raise CorruptFileError(path, f"is a {header['format']!r} file, expected {format!r}")
    if header["version"] not in versions:
        raise CorruptFileError(
            path, f"has {format} version {header['version']!r}; this adaptmem reads versions {sorted(versions)}"
        )
    try:
        return from_plain(torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True))
    except Exception as e:  # the bytes are what was written, so this is a foreign or future payload
        raise CorruptFileError(path, f"payload cannot be loaded with weights_only=True ({_first_line(e)})") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return type(e).__name__ + (": " + text.splitlines()[0] if text else "")


# What old plain torch.save files may hold besides tensors: NumPy arrays (RNG states) and
# adaptmem's NamedTuple states. Nothing else is unpickled, even with allow_legacy=True.
_LEGACY_NUMPY = {
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
}


def _load_legacy(path: Path, map_location) -> Any:
    data = io.BytesIO(path.read_bytes())
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(data)
    except Exception as e:
        raise CorruptFileError(path, f"is not a readable torch.save file ({_first_line(e)})") from e
    # A dtype instance is rebuilt through its class (numpy.dtypes.UInt32DType, ...), which the
    # pickle names only indirectly: allow them all, they hold no code.
    allowed: list[Any] = [c for c in vars(np.dtypes).values() if isinstance(c, type) and issubclass(c, np.dtype)]
    for name in names:
        if name in _LEGACY_NUMPY or name.startswith("numpy.dtypes."):
            module, _, attr = name.rpartition(".")
            allowed.append(getattr(importlib.import_module(module), attr))
            continue
        module, _, attr = name.rpartition(".")
        try:
            allowed.append(_state_class(f"{module}:{attr}"))
        except (ValueError, ImportError, AttributeError) as e:
            raise CorruptFileError(path, f"holds a {name}, which is not loaded even with allow_legacy=True") from e
    data.seek(0)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(data, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CorruptFileError(path, f"is not a readable torch.save file ({_first_line(e)})") from e


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """The SHA-256 of a file's bytes, read in chunks (for memory-mapped arrays)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def seal_json(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` plus ``"sha256"``: the hash of its canonical JSON (checked by :func:`check_sealed_json`)."""
    body = {k: v for k, v in obj.items() if k != "sha256"}
    return {**body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()}


def check_sealed_json(path: str | os.PathLike, obj: Any) -> dict[str, Any]:
    """Verify the ``"sha256"`` that :func:`seal_json` added to the JSON object read from ``path``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("sha256"), str):
        raise CorruptFileError(path, 'has no checksum ("sha256") in its JSON object')
    body = {k: v for k, v in obj.items() if k != "sha256"}
    try:
        digest = hashlib.sha256(_canonical(body)).hexdigest()
    except ValueError as e:
        raise CorruptFileError(path, f"holds values JSON does not allow ({e})") from e
    if digest != obj["sha256"]:
        raise CorruptFileError(path, "fails its SHA-256 checksum: the contents changed after writing")
    return obj


def read_json(path: str | os.PathLike) -> Any:
    """``json.loads`` of a file, with :class:`CorruptFileError` naming the path for bad JSON."""
    path = Path(path)
    data = _read_file(path)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(path, f"is not valid JSON ({e})") from e


# Third-party data sets ship as pickles (CIFAR-100, mini-ImageNet). They are read with an
# unpickler that builds only containers, strings, numbers and NumPy arrays: a tampered file
# cannot run code, and a damaged one gives a CorruptFileError naming it.
_DATA_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
    ("_codecs", "encode"),
}  # protocol-2 pickles rebuild bytes with it


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DATA_PICKLE_GLOBALS or module in ("numpy.dtypes", "numpy._core.dtypes"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a data type (only NumPy arrays are rebuilt)")


def load_data_pickle(path: str | os.PathLike, data: bytes | None = None, *, encoding: str = "latin1") -> Any:
    """Unpickle a data-set file (``data``: its bytes, when read from an archive) without running code."""
    path = Path(path)
    if data is None and path.is_dir():
        raise CorruptFileError(path, "is a directory, not a pickle")
    try:
        if data is not None:
            return _DataUnpickler(io.BytesIO(data), encoding=encoding).load()
        with open(path, "rb") as f:  # streamed: data-set pickles can be gigabytes
            return _DataUnpickler(f, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise CorruptFileError(path, f"is not a readable data pickle ({_first_line(e)})") from e
