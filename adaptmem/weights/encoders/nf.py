"""A permutation-equivariant neural-functional (NF) encoder for recurrent weights."""

from __future__ import annotations

import torch
from torch import nn

from adaptmem.weights.encoders.base import WeightEncoder, mlp, weight_tensors
from adaptmem.weights.spec import WeightSpec


def _mix(x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    """Apply ``lin`` to the channel dim (dim 1) of ``x [N, C, ...]``."""
    return lin(x.movedim(1, -1)).movedim(-1, 1)


class _NFLayer(nn.Module):
    """One equivariant linear map between weight-space feature maps.

    Hidden units of layer k are permuted by ``pi_k``. The feature maps, with ``C`` channels:
    ``U_k [N, C, H, D_k]`` (from ``weight_ih``; ``D_0`` = inputs, fixed; ``D_k = H`` for k>0,
    permuted by ``pi_{k-1}``), ``V_k [N, C, H, H]`` (``weight_hh``, both axes by ``pi_k``),
    ``b_k [N, C, H]``, ``O [N, C, out, H]`` and ``c [N, C, out]`` (the Linear). The gate
    blocks of a unit are its input channels. A unit's summary ``n_k[i]`` concatenates the
    row means of ``U_k`` and ``V_k``, the column mean and diagonal of ``V_k``, ``b_k[i]`` and
    the column mean of the next layer (``U_{k+1}`` or ``O``) at ``i``; ``g`` pools all
    summaries. Every output entry is a channel map of the entry itself (and of ``V^T`` for
    ``V``), plus maps of the summaries of the units that index it, of ``g``, and learned
    embeddings of the fixed (input / output) indices. Each term commutes with every ``pi_k``,
    hence so does the layer.
    """

    def __init__(self, spec: WeightSpec, c_in: dict[str, int], c_out: int) -> None:
        super().__init__()
        self.spec = spec
        L, cu, cv, cb = spec.num_layers, c_in["U"], c_in["V"], c_in.get("b", 0)
        co, cc = c_in.get("O", 0), c_in.get("c", 0)
        self.n_dims = [cu + 3 * cv + cb + (cu if k < L - 1 else co) for k in range(L)]
        g_dim = sum(self.n_dims) + cc
        lin = lambda a, bias=True: nn.Linear(a, c_out, bias=bias)  # noqa: E731
        self.U = nn.ModuleList(lin(cu) for _ in range(L))
        self.U_row = nn.ModuleList(lin(self.n_dims[k], False) for k in range(L))
        self.U_col = nn.ModuleList(lin(self.n_dims[k - 1], False) for k in range(1, L))
        self.U_in = nn.Parameter(torch.zeros(c_out, spec.input_size, 1).squeeze(-1))  # fixed input index
        self.U_g = nn.ModuleList(lin(g_dim, False) for _ in range(L))
        self.V = nn.ModuleList(lin(cv) for _ in range(L))
        self.V_t = nn.ModuleList(lin(cv, False) for _ in range(L))
        self.V_row = nn.ModuleList(lin(self.n_dims[k], False) for k in range(L))
        self.V_col = nn.ModuleList(lin(self.n_dims[k], False) for k in range(L))
        self.V_g = nn.ModuleList(lin(g_dim, False) for _ in range(L))
        if cb:
            self.b = nn.ModuleList(lin(cb) for _ in range(L))
            self.b_n = nn.ModuleList(lin(self.n_dims[k], False) for k in range(L))
            self.b_g = nn.ModuleList(lin(g_dim, False) for _ in range(L))
        if co:
            out = spec.output_size
            self.O, self.O_n, self.O_g = lin(co), lin(self.n_dims[-1], False), lin(g_dim, False)
            self.O_out = nn.Parameter(torch.zeros(c_out, out))
            self.c, self.c_g = lin(cc), lin(g_dim, False)
            self.c_out = nn.Parameter(torch.zeros(c_out, out))

    def forward(self, f: dict[str, list[torch.Tensor] | torch.Tensor]) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        L = self.spec.num_layers
        U, V, b = f["U"], f["V"], f.get("b")
        n = []
        for k in range(L):
            parts = [U[k].mean(-1), V[k].mean(-1), V[k].mean(-2), V[k].diagonal(dim1=-2, dim2=-1)]
            if b is not None:
                parts.append(b[k])
            if k < L - 1:
                parts.append(U[k + 1].mean(-2))
            elif "O" in f:
                parts.append(f["O"].mean(-2))
            n.append(torch.cat(parts, dim=1))  # [N, n_dim, H]
        g = torch.cat([x.mean(-1) for x in n] + ([f["c"].mean(-1)] if "c" in f else []), dim=1)  # [N, g_dim]
        out: dict[str, list[torch.Tensor] | torch.Tensor] = {"U": [], "V": []}
        if b is not None:
            out["b"] = []
        for k in range(L):
            col = _mix(n[k - 1], self.U_col[k - 1]).unsqueeze(-2) if k > 0 else self.U_in[None, :, None, :]
            out["U"].append(
                _mix(U[k], self.U[k]) + _mix(n[k], self.U_row[k]).unsqueeze(-1) + col + self.U_g[k](g)[..., None, None]
            )
            out["V"].append(
                _mix(V[k], self.V[k])
                + _mix(V[k].transpose(-1, -2), self.V_t[k])
                + _mix(n[k], self.V_row[k]).unsqueeze(-1)
                + _mix(n[k], self.V_col[k]).unsqueeze(-2)
                + self.V_g[k](g)[..., None, None]
            )
            if b is not None:
                out["b"].append(_mix(b[k], self.b[k]) + _mix(n[k], self.b_n[k]) + self.b_g[k](g)[..., None])
        if "O" in f:
            out["O"] = (
                _mix(f["O"], self.O)
                + _mix(n[-1], self.O_n).unsqueeze(-2)
                + self.O_out[None, :, :, None]
                + self.O_g(g)[..., None, None]
            )
            out["c"] = _mix(f["c"], self.c) + self.c_out[None] + self.c_g(g)[..., None]
        return out


def _apply(f: dict, fn) -> dict:
    return {k: [fn(t) for t in v] if isinstance(v, list) else fn(v) for k, v in f.items()}


class NFEncoder(WeightEncoder):
    """Permutation-equivariant neural-functional encoder (DWSNet/NFN-style) for RNN weights.

    The weights become feature maps indexed by hidden units (gate blocks and, for unmerged
    biases, ``b_ih``/``b_hh`` as channels; see :class:`_NFLayer`), pass ``num_layers``
    equivariant layers of ``channels`` channels with ReLU, are mean-pooled over all unit
    indices per tensor (invariant) and read by an MLP: ``z = normalise(MLP(pool(NF(w))))``.
    Invariant to hidden-unit permutations by construction (not to sign flips).

    Args:
        spec: the encoded networks' layout.
        z_dim: size of z.
        channels, num_layers: the equivariant stack (paper: 48 x 4).
        hidden: width of the MLP after pooling.
        merge_biases: one merged bias channel set instead of ``b_ih`` and ``b_hh``.

    Inputs: ``vectors [N, P]``. Outputs: ``z [N, z_dim]`` with unit norm.

    Example::

        >>> enc = NFEncoder(WeightSpec("lstm", 6, 32, 2, 6), channels=16, num_layers=2)
        >>> z = enc(torch.randn(4, 13766))   # [4, 16]
    """

    permutation_invariant = True

    def __init__(
        self,
        spec: WeightSpec,
        z_dim: int = 16,
        *,
        channels: int = 48,
        num_layers: int = 4,
        hidden: int = 128,
        merge_biases: bool = True,
    ) -> None:
        super().__init__(spec, z_dim)
        self.merge_biases = merge_biases
        G = spec.gates
        c_in = {"U": G, "V": G}
        if spec.bias:
            c_in["b"] = G if (merge_biases and spec.cell != "gru") else 2 * G
        if spec.output_size:
            c_in.update(O=1, c=1)
        layers = []
        for _ in range(num_layers):
            layers.append(_NFLayer(spec, c_in, channels))
            c_in = {k: channels for k in c_in}
        self.layers = nn.ModuleList(layers)
        n_tensors = 2 * spec.num_layers + (spec.num_layers if spec.bias else 0) + (2 if spec.output_size else 0)
        self.head = mlp(n_tensors * channels, hidden, z_dim, 1)

    def feature_maps(self, vectors: torch.Tensor) -> dict:
        s, N, G, H = self.spec, len(vectors), self.spec.gates, self.spec.hidden_size
        t = weight_tensors(vectors, s, self.merge_biases)
        f: dict = {
            "U": [t[f"weight_ih_l{k}"].view(N, G, H, -1) for k in range(s.num_layers)],
            "V": [t[f"weight_hh_l{k}"].view(N, G, H, H) for k in range(s.num_layers)],
        }
        if s.bias:
            f["b"] = [
                torch.cat([t[n].view(N, G, H) for n in (f"bias_ih_l{k}", f"bias_hh_l{k}") if n in t], dim=1)
                for k in range(s.num_layers)
            ]
        if s.output_size:
            f["O"] = t["linear.weight"].unsqueeze(1)
            f["c"] = t["linear.bias"].unsqueeze(1)
        return f

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        f = self.feature_maps(vectors)
        for layer in self.layers:
            f = _apply(layer(f), torch.relu)
        pooled = []
        for key in ("U", "V", "b", "O", "c"):
            for t in f[key] if isinstance(f.get(key), list) else [f[key]] if key in f else []:
                pooled.append(t.flatten(2).mean(-1))
        return self.head(torch.cat(pooled, dim=1))
