"""MbPA's local adaptation in closed form for a head that is one linear layer and a softmax.

For ``logits = W x + b`` (``W [V, D]``, ``b [V]``) the ``T`` proximal SGD steps of
:class:`adaptmem.memory.MbPA` never need a copy of the head. Write ``x̃ = [x, 1]`` (``[x]``
without a bias), ``Θ = [W, b]`` and ``s = 1 + 2·lr·l2``. One step is

    Θ_{t+1} = (Θ_t - lr ∇_t + 2·lr·l2·Θ) / s,    ∇_t = Σ_i r_i^t x̃_i^T,    r_i^t = w_i (p_i^t - e_{y_i}),

with ``p_i^t = softmax(Θ_t x̃_i)`` on the neighbour keys ``x̃_i``. So ``Δ_t = Θ_t - Θ`` obeys
``Δ_{t+1} = (Δ_t - lr ∇_t) / s`` with ``Δ_0 = 0``: every ``Δ_t`` is ``G_t^T H̃`` with ``H̃ [K, D+1]``
the neighbour keys and a coefficient matrix ``G_t [K, V]``:

    G_0 = 0,    G_{t+1} = (G_t - lr R_t) / s,    R_t = [r_i^t]_i,
    logits of the neighbours  Z_t = Z_0 + A G_t,      A = H̃ H̃^T  [K, K],
    adapted logits of q       z_T = W q + b + G_T^T a,  a = H̃ q̃  [K].

``Z_0`` (hence ``p_i^0``) depends on the neighbour's key and the *unadapted* head only; one step
then costs ``O(K^2 V)`` per query (the product ``A G_t``) and no parameter copy. For ``T = 1``
the whole adaptation is a weighted sum of ``K`` probability rows:

    z_1 = W q + b - (lr / s) Σ_i w_i a_i (p_i^0 - e_{y_i}),

computed for a batch as one sparse ``[B, U] x [U, V]`` product over the ``U`` rows of ``p^0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# [queries, K, V] elements allowed per sub-chunk when steps > 1 (about 64 MB in float32 for each
# of the few such temporaries); bounds memory without changing results.
_MULTI_STEP_ELEMENTS = 1 << 24
_ROW_BLOCK = 64  # rows per GEMM of the neighbour table (see neighbour_table)


def adapt_linear_softmax(
    q: torch.Tensor,
    logits_q: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    table: torch.Tensor,
    index: torch.Tensor,
    *,
    table_kind: str,
    steps: int,
    lr: float,
    l2: float,
    bias: bool,
) -> torch.Tensor:
    """Log-probabilities ``[B, V]`` of a linear-softmax head after MbPA's ``steps`` local steps.

    Args:
        q: queries ``[B, D]``.
        logits_q: the unadapted head's logits of the queries ``[B, V]``.
        keys: the neighbours' keys ``[B, K, D]``.
        labels: their labels ``[B, K]`` (int64).
        weights: their kernel weights ``[B, K]`` (rows sum to 1).
        table: the unadapted head's probabilities (``table_kind="probs"``) or log-probabilities
            (``"log_probs"``) of the neighbours, ``[U, V]``; neighbour ``i`` of query ``b`` is row
            ``index[b, i]``. Rows that no neighbour names are never read.
        index: ``[B, K]`` int64 rows of ``table``.
        steps: ``T >= 1``.
        lr, l2: the local learning rate and the prior weight.
        bias: whether the head has a bias (the keys then carry an implicit trailing 1).

    The derivation is in the module docstring; the result equals the generic ``torch.func``
    adaptation of ``nn.Linear`` to rounding.
    """
    one = 1.0 if bias else 0.0
    shrink = 1.0 + 2.0 * lr * l2
    a = torch.einsum("bkd,bd->bk", keys, q) + one  # a_i = x̃_i · q̃
    if steps == 1:
        return F.log_softmax(
            logits_q + (lr / shrink) * one_step_direction(a, labels, weights, table, index, table_kind=table_kind),
            dim=-1,
        )
    out = []
    per = max(1, _MULTI_STEP_ELEMENTS // (keys.shape[1] * table.shape[1]))
    for sl in (slice(i, i + per) for i in range(0, q.shape[0], per)):
        z0 = table[index[sl]]  # [b, K, V]
        z0 = z0 if table_kind == "log_probs" else z0.log()
        k_, w_, y_ = keys[sl], weights[sl, :, None], labels[sl, :, None]
        gram = k_ @ k_.transpose(1, 2) + one  # A = H̃ H̃^T
        g = None  # G_0 = 0; in-place updates below keep the passes over [b, K, V] few
        for _ in range(steps):
            r = torch.softmax(z0 if g is None else torch.baddbmm(z0, gram, g), -1)
            r.mul_(w_).scatter_add_(-1, y_, -w_)  # R_t = w (p - e_y)
            g = r.mul_(-lr / shrink) if g is None else g.div_(shrink).add_(r, alpha=-lr / shrink)
        out.append(logits_q[sl] + torch.einsum("bk,bkv->bv", a[sl], g))
    return F.log_softmax(torch.cat(out), dim=-1)


def one_step_direction(
    a: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    table: torch.Tensor,
    index: torch.Tensor,
    *,
    table_kind: str,
) -> torch.Tensor:
    """``d = Σ_i w_i a_i (e_{y_i} - p_i^0)`` ``[B, V]``: one step moves the logits by ``lr / (1 + 2 lr l2) · d``.

    Independent of ``lr`` and ``l2``, so a sweep over them costs one ``log_softmax`` each.
    """
    coef = weights * a  # c_i = w_i a_i
    probs = table
    if table_kind != "probs":  # softmax of only the rows in use
        rows, index = torch.unique(index, return_inverse=True)
        probs = table[rows].exp()
    return (-_rows_times(coef, index, probs)).scatter_add_(-1, labels, coef)


def _rows_times(coef: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``out[b] = Σ_i coef[b, i] · rows[index[b, i]]`` without gathering ``[B, K, V]``."""
    b, k = index.shape
    if rows.dtype not in (torch.float32, torch.float64):  # sparse mm has no reduced-precision kernels
        return torch.bmm(coef[:, None, :], rows[index])[:, 0]
    r = torch.arange(b, device=index.device).repeat_interleave(k)
    mat = torch.sparse_coo_tensor(
        torch.stack([r, index.reshape(-1)]), coef.reshape(-1), (b, rows.shape[0]), check_invariants=False
    )
    return torch.sparse.mm(mat, rows)


def neighbour_table(keys: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kind: str) -> torch.Tensor:
    """``softmax`` (``kind="probs"``) or ``log_softmax`` of ``keys [U, D] @ W^T + b``, ``[U, V]``.

    The GEMM runs on blocks of exactly ``_ROW_BLOCK`` rows (the last one zero-padded): BLAS picks
    other kernels for a few rows, so this makes each row's bits independent of how many rows are
    computed together, and a resumed evaluation reproduce an uninterrupted one exactly.
    """
    n = keys.shape[0]
    padded = keys.new_zeros(-(-n // _ROW_BLOCK) * _ROW_BLOCK, keys.shape[1])
    padded[:n] = keys
    z = torch.cat([F.linear(blk, weight, bias) for blk in padded.split(_ROW_BLOCK)])[:n]
    return torch.softmax(z, -1) if kind == "probs" else torch.log_softmax(z, -1)


class NeighbourTable:
    """The unadapted head's softmax (or log-softmax) on every memory slot, kept exact.

    Row ``s`` holds ``softmax(W h_s + b)`` for the key ``h_s`` stored at slot ``s`` when the row was
    computed. A row is recomputed when the key at its slot differs from the one it was computed
    for (the memory overwrote the slot), and every row is dropped when ``W``, ``b``, the kind, the
    dtype or the device changes, so a lookup always equals a fresh computation. For an LM whose
    memory takes one segment per call, each call computes only the new entries: the ``K x D x V``
    neighbour GEMM per query becomes about ``D x V`` per written entry.

    Memory: ``capacity x V`` values plus ``capacity x D`` keys and one copy of ``W`` and ``b``.
    """

    def __init__(self) -> None:
        self._values: torch.Tensor | None = None
        self._keys: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None
        self._params: tuple | None = None
        self._kind = ""

    def lookup(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        slots: torch.Tensor,
        keys: torch.Tensor,
        *,
        capacity: int,
        kind: str,
    ) -> torch.Tensor:
        """The table ``[capacity, V]``, with the rows of ``slots [U]`` (distinct, keys ``[U, D]``) exact."""
        if not self._matches(weight, bias, capacity, kind):
            v = weight.shape[0]
            self._values = weight.new_zeros(capacity, v)
            self._keys = weight.new_zeros(capacity, weight.shape[1])
            self._valid = torch.zeros(capacity, dtype=torch.bool, device=weight.device)
            self._params = (weight.clone(), None if bias is None else bias.clone())
            self._kind = kind
        stale = ~self._valid[slots] | (self._keys[slots] != keys).any(-1)
        if bool(stale.any()):
            s, k = slots[stale], keys[stale]
            self._values[s] = neighbour_table(k, weight, bias, kind)
            self._keys[s] = k
            self._valid[s] = True
        return self._values

    def _matches(self, weight: torch.Tensor, bias: torch.Tensor | None, capacity: int, kind: str) -> bool:
        if self._values is None or self._params is None or kind != self._kind:
            return False
        w0, b0 = self._params
        if self._values.shape != (capacity, weight.shape[0]) or w0.dtype != weight.dtype or w0.device != weight.device:
            return False
        if (b0 is None) != (bias is None):
            return False
        return torch.equal(w0, weight) and (bias is None or torch.equal(b0, bias))
