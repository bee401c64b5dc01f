"""The DeltaNet family: LinearAttention, DeltaNet, RecurrentDeltaNet.

All three are pre-LN residual blocks as in the IDSIA code:
``out = x + Dropout(W_o fast_weight_op(LayerNorm(x) W_in))``, with one bias-free input
projection producing the per-head q, k, v (and beta) at once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from adaptmem.layers.base import FastWeightLayer, resolve_heads
from adaptmem.ops.delta_rule import delta_rule
from adaptmem.ops.linear_attention import linear_attention
from adaptmem.ops.recurrent_delta_rule import RecurrentDeltaState, recurrent_delta_rule
from adaptmem.utils.checks import check_choice, check_float, check_floating, check_positive_int


def elu_sum_norm(x: torch.Tensor) -> torch.Tensor:
    """ELU+1, divided by its sum over the feature dim (the IDSIA code calls this crucial)."""
    check_floating("elu_sum_norm", "x", x)
    x = F.elu(x) + 1.0
    return x / x.sum(-1, keepdim=True)


class LinearAttentionState(NamedTuple):
    S: torch.Tensor  # [B, H, D, D]


class DeltaNetState(NamedTuple):
    S: torch.Tensor  # [B, H, D, D]


class _PreLNFastWeight(FastWeightLayer):
    """Shared wiring: LayerNorm -> one projection to H * (n_vec * D + n_scalar) -> op -> W_o."""

    n_vec: int = 3
    n_scalar: int = 0

    def __init__(self, d_model: int, num_heads: int, head_dim: int | None, dropout: float) -> None:
        super().__init__()
        D = resolve_heads(type(self).__name__, d_model, num_heads, head_dim)
        check_float(type(self).__name__, "dropout", dropout, lo=0.0, hi=1.0)
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, D
        H = num_heads
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, H * (self.n_vec * D + self.n_scalar), bias=False)
        self.out_proj = nn.Linear(H * D, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def state_shapes(self, batch_size: int):
        return ((batch_size, self.num_heads, self.head_dim, self.head_dim),)

    def _project(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[q, k, v(, beta)]`` with vectors ``[B, T, H, D]`` and scalars ``[B, T, H]``."""
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        parts = self.in_proj(self.norm(x)).split([H * D] * self.n_vec + [H] * self.n_scalar, dim=-1)
        return [p.view(B, T, H, D) for p in parts[: self.n_vec]] + list(parts[self.n_vec :])

    def _output(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.out_proj(o.reshape(*x.shape[:2], self.num_heads * self.head_dim).to(x.dtype)))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, head_dim={self.head_dim}"


def _op_mode(mode: str, T: int) -> str:
    # Below a few steps the chunk form's fixed cost outweighs its parallelism (e.g. acting in RL).
    return ("recurrent" if T <= 4 else "chunk") if mode == "auto" else mode


class LinearAttention(_PreLNFastWeight):
    r"""Linear Transformer layer as a fast-weight memory (Katharopoulos et al.; Schlag et al.).

    .. math::
        S_t = S_{t-1} + \phi(k_t)^\top v_t,\qquad o_t = \phi(q_t) S_t,
        \qquad \phi(x) = \frac{\mathrm{elu}(x) + 1}{\sum (\mathrm{elu}(x) + 1)}

    Block: ``out = x + Dropout(W_o o)`` with q, k, v from ``LayerNorm(x)``.

    Args:
        d_model, num_heads, head_dim, dropout: as for :class:`SRWM`.
        mode: ``"auto"`` (step loop for T <= 4, else chunkwise), ``"chunk"`` or ``"recurrent"``.
        chunk_size: chunk length of the chunkwise form.

    Inputs: ``x [B, T, d_model], state: LinearAttentionState | None, reset: bool [B] or [B, T]``.
    Outputs: ``(y [B, T, d_model], LinearAttentionState(S [B, H, D, D]))``.

    Example::

        >>> layer = LinearAttention(64, 4)
        >>> y, state = layer(torch.randn(2, 10, 64))
    """

    state_type = LinearAttentionState

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        mode: str = "auto",
        chunk_size: int = 64,
    ) -> None:
        super().__init__(d_model, num_heads, head_dim, dropout)
        self.mode = check_choice("LinearAttention", "mode", mode, ("auto", "chunk", "recurrent"))
        self.chunk_size = check_positive_int("LinearAttention", "chunk_size", chunk_size)

    def forward(self, x, state: LinearAttentionState | None = None, reset=None):
        B, T = self.check_input(x, state)
        q, k, v = self._project(x)
        o, S = linear_attention(
            elu_sum_norm(q),
            elu_sum_norm(k),
            v,
            initial_state=None if state is None else state.S,
            reset=reset,
            mode=_op_mode(self.mode, T),
            chunk_size=self.chunk_size,
        )
        return self._output(x, o), LinearAttentionState(S)


class DeltaNet(_PreLNFastWeight):
    r"""DeltaNet layer (Schlag, Irie, Schmidhuber, ICML 2021).

    .. math::
        S_t = S_{t-1} + \beta_t \phi(k_t)^\top (v_t - \phi(k_t) S_{t-1}),\qquad o_t = \phi(q_t) S_t

    with :math:`\phi` = ELU+1 then sum-normalised, :math:`\beta_t = \sigma(\cdot)` one per head
    and step. Block: ``out = x + Dropout(W_o o)`` with q, k, v, beta from ``LayerNorm(x)``.

    Args:
        d_model, num_heads, head_dim, dropout: as for :class:`SRWM`.
        mode: ``"auto"`` (step loop for T <= 4, else chunkwise), ``"chunk"`` or ``"recurrent"``.
        chunk_size: chunk length of the chunkwise form.

    Inputs: ``x [B, T, d_model], state: DeltaNetState | None, reset: bool [B] or [B, T]``.
    Outputs: ``(y [B, T, d_model], DeltaNetState(S [B, H, D, D]))``.

    Example::

        >>> layer = DeltaNet(64, 4)
        >>> y, state = layer(torch.randn(2, 10, 64))
    """

    state_type = DeltaNetState
    n_scalar = 1

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        mode: str = "auto",
        chunk_size: int = 64,
    ) -> None:
        super().__init__(d_model, num_heads, head_dim, dropout)
        self.mode = check_choice("DeltaNet", "mode", mode, ("auto", "chunk", "recurrent"))
        self.chunk_size = check_positive_int("DeltaNet", "chunk_size", chunk_size)

    def forward(self, x, state: DeltaNetState | None = None, reset=None):
        B, T = self.check_input(x, state)
        q, k, v, b = self._project(x)
        o, S = delta_rule(
            elu_sum_norm(q),
            elu_sum_norm(k),
            v,
            torch.sigmoid(b),
            initial_state=None if state is None else state.S,
            reset=reset,
            mode=_op_mode(self.mode, T),
            chunk_size=self.chunk_size,
        )
        return self._output(x, o), DeltaNetState(S)


class RecurrentDeltaNet(_PreLNFastWeight):
    r"""Recurrent Delta Net layer (Irie, Schlag, Csordás, Schmidhuber, NeurIPS 2021).

    The DeltaNet whose q, k, v and beta also read the previous output :math:`\tanh(y_{t-1})`
    through recurrent weights :math:`R_q, R_k, R_v` (D x D per head) and :math:`r_b`; q and k
    use a softmax feature map (see :func:`adaptmem.ops.recurrent_delta_rule`).

    Args:
        d_model, num_heads, head_dim, dropout: as for :class:`SRWM`.
        checkpoint_every: span of the memory-bounded backward.

    Inputs: ``x [B, T, d_model], state: RecurrentDeltaState | None, reset: bool [B] or [B, T]``.
    Outputs: ``(y [B, T, d_model], RecurrentDeltaState(S [B, H, D, D], y [B, H, D]))``.
    """

    state_type = RecurrentDeltaState
    n_scalar = 1

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        checkpoint_every: int = 64,
    ) -> None:
        super().__init__(d_model, num_heads, head_dim, dropout)
        H, D = self.num_heads, self.head_dim
        self.R_q = nn.Parameter(torch.empty(H, D, D))
        self.R_k = nn.Parameter(torch.empty(H, D, D))
        self.R_v = nn.Parameter(torch.empty(H, D, D))
        self.r_b = nn.Parameter(torch.empty(H, D))
        self.checkpoint_every = check_positive_int("RecurrentDeltaNet", "checkpoint_every", checkpoint_every)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.R_q, self.R_k, self.R_v, self.r_b):
            nn.init.normal_(w, std=1.0 / math.sqrt(self.head_dim))

    def state_shapes(self, batch_size: int):
        B, H, D = batch_size, self.num_heads, self.head_dim
        return (B, H, D, D), (B, H, D)

    def forward(self, x, state: RecurrentDeltaState | None = None, reset=None):
        B, T = self.check_input(x, state)
        q, k, v, b = self._project(x)
        o, new_state = recurrent_delta_rule(
            q,
            k,
            v,
            b,
            self.R_q,
            self.R_k,
            self.R_v,
            self.r_b,
            initial_state=state,
            reset=reset,
            checkpoint_every=self.checkpoint_every,
        )
        return self._output(x, o), new_state
