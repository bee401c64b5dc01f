"""Helpers of the chunkwise-parallel forms: padding to whole chunks, reset masks, and the scan
over chunks that keeps a non-finite value where the step loop keeps it.

Why the scan needs care: the chunk forms apply resets and causality as 0/1 factors and
matmuls (``Tril(Q K^T) @ U``, ``S * carry``), and ``0 * NaN = NaN``. A NaN, an infinity or an
overflow (a huge but finite key) in one step would reach earlier steps of its chunk and steps
after a reset, which the step loop never lets happen. :func:`scan_chunks` runs the fast form,
and only when something non-finite shows up reruns the affected (row, head, chunk) triples
through the step loop, so the result is finite exactly where the step loop's is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F


def chunk(t: torch.Tensor, C: int) -> torch.Tensor:
    """``[B, H, T, ...]`` -> ``[B, H, n, C, ...]``, zero-padding the last chunk."""
    T = t.shape[2]
    n = math.ceil(T / C)
    pad = n * C - T
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 3) + (0, pad))
    return t.reshape(*t.shape[:2], n, C, *t.shape[3:])


class ResetMasks(NamedTuple):
    """Within-chunk masks for state resets (``reset[b, t]``: state zeroed before step t).

    ``carry[i]``: no reset at or before i in the chunk, so step i still sees the incoming state.
    ``same[i, j]``: no reset in (j, i], so step j's write is visible at step i.
    ``tail[j]``: no reset after j, so step j's write survives to the chunk's end.
    ``carry_end``: the incoming state survives the whole chunk.
    ``any``: ``[B, n]`` bool, a reset somewhere in the chunk.
    """

    carry: torch.Tensor  # [B, 1, n, C, 1]
    same: torch.Tensor  # [B, 1, n, C, C]
    tail: torch.Tensor  # [B, 1, n, C, 1]
    carry_end: torch.Tensor  # [B, 1, n, 1, 1]
    any: torch.Tensor  # [B, n] bool


def reset_masks(reset: torch.Tensor, C: int, dtype: torch.dtype) -> ResetMasks:
    """Build :class:`ResetMasks` from a ``[B, T]`` bool mask (padded steps never reset)."""
    seg = chunk(reset[:, None, :, None].to(torch.int32), C)[:, :, :, :, 0].cumsum(-1)  # [B, 1, n, C]
    carry = (seg == 0).to(dtype)[..., None]
    same = (seg[..., :, None] == seg[..., None, :]).to(dtype)
    tail = (seg == seg[..., -1:]).to(dtype)[..., None]
    return ResetMasks(carry, same, tail, carry[..., -1:, :], seg[:, 0, :, -1] > 0)


def _finite_rows(t: torch.Tensor) -> torch.Tensor:
    """``[B, H, ...]`` -> ``[B, H]``: every entry of that (row, head) is finite."""
    return torch.isfinite(t).flatten(2).all(-1)


Step = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Build = Callable[..., tuple[Step, Sequence[torch.Tensor]]]
Loop = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def scan_chunks(
    S: torch.Tensor, inputs: Sequence[torch.Tensor], build: Build, loop: Loop, reset_any: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the chunk recurrence ``O_c, S = step(c, S)``; returns ``(O [B, H, n, C, Dv], S_n)``.

    Args:
        S: the incoming state ``[B, H, Dk, Dv]``.
        inputs: the chunked per-step inputs, ``[B, H, n, C, *]`` each (e.g. ``Q, K, V, beta``).
        build: ``build(*inputs) -> (step, parts)``: the fast form's batched work and its scan
            step; ``parts`` are the state-free tensors ``step`` reads, ``[B, H, n, ...]`` each
            (e.g. the masked ``Q``, ``Tril(QK^T)``, ``A^-1 [beta K, beta V]``).
        loop: ``loop(c, b, h, S[b, h]) -> (O [N, C, Dv], S [N, Dk, Dv])``: the step loop over
            chunk ``c`` of the (row, head) pairs ``(b, h)``, on the original inputs (padded
            output rows zero).
        reset_any: ``[B, n]`` bool, a reset inside the chunk (``None``: no resets).

    When every output and the final state are finite, every 0/1 factor met only finite
    values, so the fast result is exact: the common case, checked once. Otherwise the chunks
    of a (row, head) are rerun through ``loop`` unless the fast form puts its non-finite
    values where the loop does (:func:`_chunks_to_rerun`), and their inputs are zeroed in the
    fast form, so that its backward does not meet them either (``0 * NaN`` in a gradient
    that should be 0).
    """
    step, parts = build(*inputs)
    n = inputs[0].shape[2]
    O, S_n = _scan(S, n, step)
    if bool(torch.isfinite(S_n).all()) and bool(torch.isfinite(O).all()):
        return O, S_n
    with torch.no_grad():
        rerun = _chunks_to_rerun(S, n, step, loop, parts, reset_any)
    step, _ = build(*(torch.where(rerun[..., None, None], 0.0, t) for t in inputs))
    return _scan(S, n, step, loop, rerun)


def _scan(
    S: torch.Tensor, n: int, step: Step, loop: Loop | None = None, rerun: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    outs = []
    chunks = set(rerun.any(1).any(0).nonzero().flatten().tolist()) if rerun is not None else set()
    for c in range(n):
        if c in chunks:
            r = rerun[:, :, c]
            b, h = r.nonzero(as_tuple=True)
            O_c, S_next = step(c, torch.where(r[..., None, None], 0.0, S))
            O_r, S_r = loop(c, b, h, S[b, h])
            O_c, S_next = O_c.index_put((b, h), O_r), S_next.index_put((b, h), S_r)
        else:
            O_c, S_next = step(c, S)
        outs.append(O_c)
        S = S_next
    return torch.stack(outs, dim=2), S


def _chunks_to_rerun(
    S: torch.Tensor, n: int, step: Step, loop: Loop, parts: Sequence[torch.Tensor], reset_any: torch.Tensor | None
) -> torch.Tensor:
    """``[B, H, n]`` bool: the chunks of each (row, head) the fast form may get wrong.

    The fast form is trusted for a chunk when its ``parts`` are finite and either the incoming
    state and the results are finite (then every 0/1 factor met finite values), or the
    incoming state is not finite and no reset inside the chunk could drop it: non-finite
    state entries then spread along the same value columns in both forms, through ``q S``
    and ``k S`` alike. Chunks are decided in order, each from the state the loop would give.
    """
    clean = torch.stack([torch.isfinite(p).flatten(3).all(-1) for p in parts]).all(0)  # [B, H, n]
    rerun = torch.zeros_like(clean)
    for c in range(n):
        O_c, S_next = step(c, S)
        S_ok = _finite_rows(S)
        r = ~clean[:, :, c] | (S_ok & ~(_finite_rows(O_c) & _finite_rows(S_next)))
        if reset_any is not None:
            r |= ~S_ok & reset_any[:, c, None]
        if bool(r.any()):
            b, h = r.nonzero(as_tuple=True)
            S_next = S_next.index_put((b, h), loop(c, b, h, S[b, h])[1])
        rerun[:, :, c] = r
        S = S_next
    return rerun
