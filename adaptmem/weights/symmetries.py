"""Weight-space transformations that leave a recurrent network's function unchanged.

Three families (checked numerically in ``tests/weights/test_symmetries.py``):

* **Hidden-unit permutations.** Reordering the units of layer k permutes, jointly, the rows of
  every gate block of ``weight_ih_lk``, ``weight_hh_lk``, ``bias_*_lk``, the columns of
  ``weight_hh_lk`` and the input columns of the next layer (or of the output Linear).
* **Sign flips.** ``tanh`` is odd: negating a unit's candidate rows (LSTM ``g``, GRU ``n``,
  tanh-RNN: the whole row) with their biases, together with the unit's outgoing columns
  (``weight_hh`` column and the next layer's input column) negates the unit's state and
  nothing else. ReLU RNNs have no such symmetry.
* **Bias mass.** Only ``b_ih + b_hh`` matters (for a GRU: except in the ``n`` gate, whose
  ``b_hn`` sits inside ``r * (...)``).

:func:`canonicalize` picks one representative per orbit: merged biases, a sign that makes
each unit's candidate bias non-negative, and units sorted by the norm of their rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adaptmem.utils.checks import check_floating, check_tensor, fmt_shape
from adaptmem.weights.spec import WeightSpec, check_spec

Perms = torch.Tensor | Sequence[torch.Tensor | None]


def _check_vectors(fn: str, vectors: torch.Tensor, spec: WeightSpec) -> None:
    check_spec(fn, spec)
    check_floating(fn, "vectors", vectors)
    if vectors.dim() not in (1, 2) or vectors.shape[-1] != spec.num_params:
        raise ValueError(
            f"{fn}: vectors must be [P] or [N, P] with P={spec.num_params}, got shape {fmt_shape(vectors)}"
        )


def _per_layer(fn: str, name: str, value: Perms, spec: WeightSpec, layer: int | None) -> list[torch.Tensor | None]:
    """Normalise a tensor-for-one-layer or a per-layer sequence into a per-layer list."""
    if isinstance(value, torch.Tensor):
        if layer is None:
            if spec.num_layers != 1:
                raise ValueError(
                    f"{fn}: pass layer= with a single {name} tensor for a {spec.num_layers}-layer "
                    f"network, or a sequence with one entry per layer"
                )
            layer = 0
        if not 0 <= layer < spec.num_layers:
            raise ValueError(f"{fn}: layer must be in [0, {spec.num_layers}), got {layer}")
        out: list[torch.Tensor | None] = [None] * spec.num_layers
        out[layer] = value
        return out
    if layer is not None:
        raise ValueError(f"{fn}: layer= applies to a single {name} tensor, got a sequence with layer={layer}")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{fn}: {name} must be a tensor or a sequence of tensors, got {type(value).__name__}")
    value = list(value)
    if len(value) != spec.num_layers:
        raise ValueError(f"{fn}: {name} must hold one entry per layer ({spec.num_layers}), got {len(value)}")
    return value


def _lead(vectors: torch.Tensor) -> tuple[int, ...]:
    return tuple(vectors.shape[:-1])


def permutation_index(
    spec: WeightSpec, perms: Sequence[torch.Tensor | None], lead: tuple[int, ...] = ()
) -> torch.Tensor:
    """Gather index ``idx [*lead, P]`` with ``permuted = vectors.gather(-1, idx)``.

    ``perms[k]`` is ``[H]`` or ``[*lead, H]``; new unit ``i`` of layer k is old unit ``perms[k][i]``.
    """
    H, G = spec.hidden_size, spec.gates
    device = next((p.device for p in perms if p is not None), torch.device("cpu"))
    ident = torch.arange(H, device=device)
    full = [ident.expand(*lead, H) if p is None else p.expand(*lead, H) for p in perms]
    gate_off = (torch.arange(G, device=device) * H).repeat_interleave(H)  # [G*H]
    parts = []
    for e in spec.entries:
        k = e.layer
        if e.kind.startswith("linear"):
            rows = torch.arange(e.shape[0], device=device).expand(*lead, e.shape[0])
            if e.kind == "linear_bias":
                parts.append(e.offset + rows)
                continue
            cols = full[spec.num_layers - 1]
        else:
            rows = gate_off + full[k].repeat(*([1] * len(lead)), G)  # [*lead, G*H]
            if e.kind.startswith("bias"):
                parts.append(e.offset + rows)
                continue
            if e.kind == "weight_hh":
                cols = full[k]
            elif k > 0:
                cols = full[k - 1]
            else:
                cols = torch.arange(e.shape[1], device=device).expand(*lead, e.shape[1])
        idx = e.offset + rows.unsqueeze(-1) * e.shape[1] + cols.unsqueeze(-2)
        parts.append(idx.reshape(*lead, -1))
    return torch.cat(parts, dim=-1)


def permute_hidden(vectors: torch.Tensor, spec: WeightSpec, perm: Perms, layer: int | None = None) -> torch.Tensor:
    """Reorder hidden units without changing the function.

    Args:
        vectors: ``[P]`` or ``[N, P]``.
        spec: the layout.
        perm: a permutation ``[H]`` (or ``[N, H]``, one per network) of the units of ``layer``,
            or a sequence with one permutation (or ``None``) per layer. New unit ``i`` is old
            unit ``perm[i]``.
        layer: which layer a single ``perm`` tensor applies to (optional for 1-layer nets).
    """
    _check_vectors("permute_hidden", vectors, spec)
    perms = _per_layer("permute_hidden", "perm", perm, spec, layer)
    for k, p in enumerate(perms):
        if p is None:
            continue
        check_tensor("permute_hidden", f"perm[{k}]", p)
        ok = p.shape[-1] == spec.hidden_size and p.dim() <= vectors.dim() and not p.is_floating_point()
        if ok and p.dim() == 2:
            ok = p.shape[0] == vectors.shape[0]
        if not ok:
            raise ValueError(
                f"permute_hidden: perm[{k}] must be an integer [H] or [N, H] tensor with "
                f"H={spec.hidden_size} matching vectors {fmt_shape(vectors)}, got {fmt_shape(p)} {p.dtype}"
            )
        if not torch.equal(p.sort(dim=-1).values, torch.arange(spec.hidden_size, device=p.device).expand_as(p)):
            raise ValueError(f"permute_hidden: perm[{k}] is not a permutation of 0..{spec.hidden_size - 1}")
    idx = permutation_index(spec, [None if p is None else p.to(vectors.device) for p in perms], _lead(vectors))
    return vectors.gather(-1, idx)


def random_permutations(
    spec: WeightSpec, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """One independent random permutation ``[n, H]`` per layer (a fresh one per network)."""
    check_spec("random_permutations", spec)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"random_permutations: n must be an int >= 0, got {n!r}")
    return [
        torch.rand(n, spec.hidden_size, generator=generator).argsort(dim=-1).to(device) for _ in range(spec.num_layers)
    ]


def sign_multiplier(
    spec: WeightSpec,
    signs: Sequence[torch.Tensor | None],
    lead: tuple[int, ...] = (),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``[*lead, P]`` of +-1 that applies per-unit sign flips ``signs[k] [*lead, H]`` (+-1)."""
    if spec.cell == "rnn_relu":
        raise ValueError("flip_sign: ReLU RNNs have no sign-flip symmetry (relu is not odd)")
    H, G = spec.hidden_size, spec.gates
    device = next((s.device for s in signs if s is not None), torch.device("cpu"))
    one = torch.ones(*lead, H, device=device, dtype=dtype)
    s = [one if t is None else t.to(dtype).expand(*lead, H) for t in signs]
    cand = spec.gate_order.index({"lstm": "g", "gru": "n"}.get(spec.cell, "h"))
    parts = []
    for e in spec.entries:
        k = e.layer
        if e.kind == "linear_bias":
            parts.append(torch.ones(*lead, e.numel, device=device, dtype=dtype))
            continue
        if e.kind == "linear_weight":
            rows = torch.ones(*lead, e.shape[0], device=device, dtype=dtype)
            cols = s[spec.num_layers - 1]
        else:
            rows = torch.ones(*lead, G, H, device=device, dtype=dtype)
            rows[..., cand, :] = s[k]
            rows = rows.reshape(*lead, G * H)
            if e.kind.startswith("bias"):
                parts.append(rows)
                continue
            if e.kind == "weight_hh":
                cols = s[k]
            elif k > 0:
                cols = s[k - 1]
            else:
                cols = torch.ones(*lead, e.shape[1], device=device, dtype=dtype)
        parts.append((rows.unsqueeze(-1) * cols.unsqueeze(-2)).reshape(*lead, -1))
    return torch.cat(parts, dim=-1)


def flip_sign(vectors: torch.Tensor, spec: WeightSpec, units: Perms, layer: int | None = None) -> torch.Tensor:
    """Negate the state of the selected units (LSTM ``g``/GRU ``n`` rows plus outgoing columns).

    Args:
        vectors: ``[P]`` or ``[N, P]``.
        units: a boolean mask ``[H]`` (or ``[N, H]``) of units to flip in ``layer``, or a
            sequence with one mask (or ``None``) per layer.
    """
    _check_vectors("flip_sign", vectors, spec)
    masks = _per_layer("flip_sign", "units", units, spec, layer)
    signs = []
    for k, m in enumerate(masks):
        if m is None:
            signs.append(None)
            continue
        check_tensor("flip_sign", f"units[{k}]", m)
        if m.dtype != torch.bool or m.shape[-1] != spec.hidden_size or m.dim() > vectors.dim():
            raise ValueError(
                f"flip_sign: units[{k}] must be a bool mask [H] or [N, H] with H={spec.hidden_size}, "
                f"got {fmt_shape(m)} {m.dtype}"
            )
        signs.append(1.0 - 2.0 * m.to(vectors.dtype))
    return vectors * sign_multiplier(spec, signs, _lead(vectors), vectors.dtype).to(vectors.device)


def _mergeable_rows(spec: WeightSpec) -> slice:
    """Rows of ``b_hh`` that can move into ``b_ih`` (all but a GRU's ``n`` gate)."""
    return slice(0, 2 * spec.hidden_size) if spec.cell == "gru" else slice(0, spec.gates * spec.hidden_size)


def shift_biases(vectors: torch.Tensor, spec: WeightSpec, delta: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``b_ih += delta``, ``b_hh -= delta`` per layer; ``delta [..., G*H]`` (a GRU's n-part is ignored)."""
    _check_vectors("shift_biases", vectors, spec)
    if not spec.bias:
        raise ValueError("shift_biases: the spec has no biases (bias=False)")
    deltas = [delta] * spec.num_layers if isinstance(delta, torch.Tensor) else list(delta)
    gh = spec.gates * spec.hidden_size
    if len(deltas) != spec.num_layers:
        raise ValueError(
            f"shift_biases: delta must be one tensor or one per layer ({spec.num_layers}), got {len(deltas)}"
        )
    for k, d in enumerate(deltas):
        check_floating("shift_biases", f"delta[{k}]", d)
        if d.dim() == 0 or d.shape[-1] != gh:
            raise ValueError(f"shift_biases: delta[{k}] must be [..., G*H] = [..., {gh}], got shape {fmt_shape(d)}")
    out = vectors.clone()
    rows = _mergeable_rows(spec)
    for k, d in enumerate(deltas):
        bi, bh = spec.entry(f"bias_ih_l{k}").slice, spec.entry(f"bias_hh_l{k}").slice
        out[..., bi][..., rows] += d[..., rows]  # views into ``out``
        out[..., bh][..., rows] -= d[..., rows]
    return out


def merge_biases(vectors: torch.Tensor, spec: WeightSpec) -> torch.Tensor:
    """Move all mergeable bias mass into ``b_ih`` (``b_hh`` becomes 0 there); same function."""
    _check_vectors("merge_biases", vectors, spec)
    if not spec.bias:
        return vectors.clone()
    rows = _mergeable_rows(spec)
    parts = []
    for e in spec.entries:
        t = vectors[..., e.slice]
        if e.kind in ("bias_ih", "bias_hh"):
            other = vectors[
                ...,
                spec.entry(
                    e.name.replace("_ih_", "_hh_") if e.kind == "bias_ih" else e.name.replace("_hh_", "_ih_")
                ).slice,
            ]
            t = t.clone()
            if e.kind == "bias_ih":
                t[..., rows] = t[..., rows] + other[..., rows]
            else:
                t[..., rows] = 0
        parts.append(t)
    return torch.cat(parts, dim=-1)


def canonicalize(vectors: torch.Tensor, spec: WeightSpec) -> torch.Tensor:
    """One representative of the symmetry orbit of each network (same function).

    Steps, layer by layer from the input: merge biases; flip units whose candidate-gate bias
    (without biases: whose candidate ``weight_ih`` row sum) is negative; sort units by the
    norm of all their rows (``weight_ih``, ``weight_hh``, biases), which neither a sign flip
    nor a permutation of the layer changes. Two networks related by any composition of the
    three symmetries map to the same vector (up to float rounding, barring exact ties).
    """
    _check_vectors("canonicalize", vectors, spec)
    squeeze = vectors.dim() == 1
    v = merge_biases(vectors.unsqueeze(0) if squeeze else vectors, spec)
    H, G = spec.hidden_size, spec.gates
    for k in range(spec.num_layers):
        rows = [
            v[..., spec.entry(f"weight_ih_l{k}").slice].unflatten(-1, (G, H, -1)),
            v[..., spec.entry(f"weight_hh_l{k}").slice].unflatten(-1, (G, H, H)),
        ]
        if spec.bias:
            rows += [
                v[..., spec.entry(f"bias_ih_l{k}").slice].unflatten(-1, (G, H, 1)),
                v[..., spec.entry(f"bias_hh_l{k}").slice].unflatten(-1, (G, H, 1)),
            ]
        if spec.cell != "rnn_relu":
            cand = spec.gate_order.index({"lstm": "g", "gru": "n"}.get(spec.cell, "h"))
            key = rows[2][..., cand, :, 0] if spec.bias else rows[0][..., cand, :, :].sum(-1)
            v = flip_sign(v, spec, key < 0, layer=k)
        norms = sum(r.pow(2).sum(dim=(-3, -1)) for r in rows)  # [N, H]; unchanged by the flip
        v = permute_hidden(v, spec, norms.argsort(dim=-1), layer=k)
    return v.squeeze(0) if squeeze else v
