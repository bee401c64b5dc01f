"""Input validation that produces the library's user-facing errors.

Every message names the function, the argument, what was expected and what arrived, e.g.
``srwm: x must be [B, T, H, D] floating point, got shape (4, 7) dtype torch.int64``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def fmt_shape(t: torch.Tensor | Sequence[int]) -> str:
    shape = tuple(t.shape) if isinstance(t, torch.Tensor) else tuple(t)
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _describe(t: torch.Tensor) -> str:
    return f"shape {fmt_shape(t)} dtype {t.dtype} device {t.device}"


def check_tensor(fn: str, name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_floating(fn: str, name: str, t: object) -> torch.Tensor:
    """``t`` must be a floating-point tensor."""
    t = check_tensor(fn, name, t)
    if not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got {_describe(t)}")
    return t


def check_shape(
    fn: str,
    name: str,
    t: object,
    expected: Sequence[int | None],
    layout: str,
    *,
    floating: bool = True,
) -> torch.Tensor:
    """``t`` must have ``len(expected)`` dims; entries that are not ``None`` must match.

    ``layout`` names the dims for the message, e.g. ``"[B, T, H, D]"``.
    """
    t = check_tensor(fn, name, t)
    ok = t.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, t.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{fn}: {name} must be {layout} = {want}, got {_describe(t)}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must be {layout} floating point, got {_describe(t)}")
    return t


def check_same_device(fn: str, **tensors: torch.Tensor | None) -> torch.device:
    """All given tensors (``None`` ignored) must live on one device; returns it."""
    named = [(n, t) for n, t in tensors.items() if t is not None]
    device = named[0][1].device
    for n, t in named[1:]:
        if t.device != device:
            raise ValueError(
                f"{fn}: all inputs must be on one device, but {named[0][0]} is on {device} and {n} is on {t.device}"
            )
    return device


def check_positive_int(fn: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{fn}: {name} must be a positive int, got {value}")
    return value


def check_choice(fn: str, name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{fn}: {name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_float(
    fn: str,
    name: str,
    value: object,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """A finite real number (``int`` or ``float``, not ``bool``) in ``[lo, hi]`` (open ends with
    ``lo_open``/``hi_open``); returns it as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if value != value or value in (float("inf"), float("-inf")) or low_bad or high_bad:
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        rng = f"{'(' if lo_open or lo is None else '['}{lo_s}, {hi_s}{')' if hi_open or hi is None else ']'}"
        raise ValueError(f"{fn}: {name} must be a finite number in {rng}, got {value!r}")
    return value


def check_bool(fn: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return value
