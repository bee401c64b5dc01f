"""Walking recurrent states: the one set of helpers for every layer, stack, model and agent.

A state is a tree: a layer's state is a ``NamedTuple`` of tensors, a stack's is a list of those,
an agent's may be an empty tuple. Every tensor is **batch-first** (row ``b`` of the batch is
``t[b]``), so selecting, repeating or zeroing rows is the same operation on every leaf. Leaves
that are not tensors (e.g. ``None``) are passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from adaptmem.utils.checks import fmt_shape


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor of a nested state (tensors, NamedTuples, lists, tuples),
    keeping the structure and its types."""
    if not callable(fn):
        raise TypeError(f"map_state: fn must be callable, got {type(fn).__name__}")
    return _map(fn, state)


def _map(fn: Callable[[torch.Tensor], torch.Tensor], state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple takes fields positionally
        return type(state)(*(_map(fn, s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(_map(fn, s) for s in state)
    return state


def state_tensors(state: Any) -> list[torch.Tensor]:
    """Every tensor of a nested state, depth first."""
    out: list[torch.Tensor] = []

    def collect(t: torch.Tensor) -> torch.Tensor:
        out.append(t)
        return t

    map_state(collect, state)
    return out


def detach_state(state: Any) -> Any:
    """Detach every tensor in a (nested) state: truncated BPTT at a segment boundary."""
    return map_state(torch.Tensor.detach, state)


def mask_state(state: Any, keep: torch.Tensor) -> Any:
    """Zero the rows of a (nested) state where ``keep`` (bool ``[B]``) is False.

    Rows are replaced, not multiplied by 0, so a non-finite value in a dropped row does not
    survive as NaN.
    """
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or keep.dim() != 1:
        got = f"shape {fmt_shape(keep)} dtype {keep.dtype}" if isinstance(keep, torch.Tensor) else repr(keep)
        raise ValueError(f"mask_state: keep must be a bool tensor [B], got {got}")

    def mask(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] != keep.shape[0]:
            raise ValueError(f"mask_state: keep has {keep.shape[0]} rows but a state tensor has shape {fmt_shape(t)}")
        if t.device != keep.device:
            raise ValueError(f"mask_state: keep is on {keep.device} but a state tensor is on {t.device}")
        return t.masked_fill(~keep.view(-1, *([1] * (t.dim() - 1))), 0)

    return map_state(mask, state)


def index_state(state: Any, rows: torch.Tensor | slice | int | list[int]) -> Any:
    """The rows ``rows`` of every tensor of a batch-first state (``t[rows]``)."""
    if isinstance(rows, torch.Tensor) and rows.dtype not in (torch.int64, torch.int32, torch.bool):
        raise TypeError(
            f"index_state: rows must be an int64/int32/bool tensor, an int, a slice or a list, "
            f"got a tensor of dtype {rows.dtype}"
        )

    def take(t: torch.Tensor) -> torch.Tensor:
        try:
            return t[rows]
        except IndexError as e:
            raise ValueError(
                f"index_state: rows {rows!r} do not fit a state tensor of shape {fmt_shape(t)} ({e})"
            ) from e

    return map_state(take, state)


def repeat_rows(state: Any, n: int) -> Any:
    """Repeat every batch row of a (nested) state ``n`` times (row b -> rows b*n .. b*n+n-1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"repeat_rows: n must be a positive int, got {n!r}")
    return map_state(lambda t: t.repeat_interleave(n, dim=0), state)
