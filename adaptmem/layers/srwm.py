"""The SRWM layer."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from adaptmem.layers.base import FastWeightLayer, resolve_heads
from adaptmem.ops import _dispatch
from adaptmem.ops.srwm import srwm
from adaptmem.utils.checks import check_bool, check_choice, check_float, check_positive_int

# W0 = m * (stored parameter) with m = DEFAULT_W0_SCALE / sqrt(D): see "Parametrization" in SRWM.
DEFAULT_W0_SCALE = 32.0


class SRWMState(NamedTuple):
    """Fast weights minus the learned initial weights (all zero = fresh)."""

    dW_y: torch.Tensor  # [B, H, D, D]
    dW_q: torch.Tensor  # [B, H, D, D]
    dW_k: torch.Tensor  # [B, H, D, D]
    dw_b: torch.Tensor  # [B, H, D, 4]


class SRWM(FastWeightLayer):
    r"""Self-referential weight matrix layer (Irie, Schlag, Csordás, Schmidhuber, ICML 2022).

    Each head keeps fast matrices :math:`W_y, W_q, W_k` (D x D) and :math:`w_b` (D x 4), starts
    from learned initial values and rewrites all four at every step, read before write:

    .. math::
        y_t = x_t W_y,\; q_t = \mathrm{softmax}(x_t W_q),\; k_t = \mathrm{softmax}(x_t W_k),\;
        b_t = \sigma(x_t w_b) \\
        M \leftarrow M + b_M\, k_t^\top (q_t M - k_t M), \quad M \in (W_y, W_q, W_k, w_b)

    **Parametrization of the initial fast weights.** The learned initial values
    :math:`W_0 = (W_y, W_q, W_k, w_b)` are the "program" every sequence starts from, initialised as
    in the paper (normal, std :math:`1/\sqrt{D}`). Adam moves every stored element by about ``lr``
    per step whatever its scale, so stored as they are they change slowly for their size: with the
    paper's parametrization SRWM trailed DeltaNet from the first hundred steps and, at the paper's
    width, stayed at chance for 1,000 steps (docs/fewshot.md). The parameters therefore store
    :math:`W_0 / m` and ``forward`` uses :math:`m` times them (:meth:`initial_weights`), with
    ``m = w0_multiplier`` defaulting to :math:`32/\sqrt{D}` (8 at D = 16): the stored parameters
    start at std 1/32 whatever D, and a head's pre-softmax scores :math:`x W` (D terms) change by
    about :math:`m \cdot lr \cdot \sqrt{D} = 32\, lr` per step for every head size. The constant
    is from a sweep over widths 64-256 and D in {16, 32} (best m 5-12 at D = 16, 5-8 at D = 32).
    The function at initialisation is unchanged; only the optimiser's effective step on
    :math:`W_0` grows m-fold. ``w0_multiplier=1`` is the paper's (and the authors' code's)
    parametrization. With plain SGD the effective step grows :math:`m^2`-fold instead: lower the
    learning rate of these tensors or pass ``w0_multiplier=1``. Every state dict stores ``m`` (the
    buffer ``w0_multiplier``); state dicts without it (saved before this parametrization existed,
    i.e. with ``m = 1``) or with another ``m`` are converted on load to the same function.

    The block is the paper's few-shot one: ``out = LayerNorm(x) + Dropout(W_o [y^1; ..; y^H])``
    (``norm_skip=False`` gives the RL block ``x + Dropout(W_o y)``; adding ``pre_norm=True`` gives
    the pre-LN block of the other layers, ``x + Dropout(W_o SRWM(LayerNorm(x)))``).

    Args:
        d_model: input and output size.
        num_heads: H.
        head_dim: D (default ``d_model // num_heads``); if ``H * D != d_model`` an input
            projection ``d_model -> H * D`` (no bias) is added.
        dropout: dropout on the output projection.
        beta_init: mean of the initial ``w_b`` (the paper's few-shot and RL runs use 0).
        input_softmax: softmax each head's input first (the paper's RL agent does).
        norm_skip: LayerNorm on the skip path (few-shot block) or plain residual (RL block).
        pre_norm: feed the SRWM ``LayerNorm(x)`` instead of the raw residual stream ``x``.
        backend, checkpoint_every: passed to :func:`adaptmem.ops.srwm`.
        w0_multiplier: ``m`` above (default ``32 / sqrt(head_dim)``; ``1.0``: the paper's).

    Inputs: ``x, state=None, reset=None``
        - **x** ``[B, T, d_model]``
        - **state** :class:`SRWMState` or ``None`` (fresh): the fast weights' shift from the
          learned initial weights. Because the state is a difference, the initial weights keep
          receiving gradients when the caller detaches the state between segments.
        - **reset** bool ``[B]`` or ``[B, T]``: restart that row from the initial weights
          before that step.

    Outputs: ``(y, new_state)`` with ``y`` ``[B, T, d_model]``.

    Example::

        >>> layer = SRWM(d_model=64, num_heads=4)
        >>> y, state = layer(torch.randn(2, 10, 64))
        >>> y2, state = layer(torch.randn(2, 5, 64), state)   # continue the sequence
    """

    state_type = SRWMState

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        beta_init: float = 0.0,
        input_softmax: bool = False,
        norm_skip: bool = True,
        pre_norm: bool = False,
        backend: str = "auto",
        checkpoint_every: int = 64,
        w0_multiplier: float | None = None,
    ) -> None:
        super().__init__()
        D = resolve_heads("SRWM", d_model, num_heads, head_dim)
        check_float("SRWM", "dropout", dropout, lo=0.0, hi=1.0)
        beta_init = check_float("SRWM", "beta_init", beta_init)
        for name, flag in (("input_softmax", input_softmax), ("norm_skip", norm_skip), ("pre_norm", pre_norm)):
            check_bool("SRWM", name, flag)
        check_choice("SRWM", "backend", backend, ("auto", *_dispatch.TABLE["srwm"], "reference"))  # "reference": old
        check_positive_int("SRWM", "checkpoint_every", checkpoint_every)
        if w0_multiplier is None:
            w0_multiplier = DEFAULT_W0_SCALE / math.sqrt(D)
        if (
            isinstance(w0_multiplier, bool)
            or not isinstance(w0_multiplier, (int, float))
            or not math.isfinite(w0_multiplier)
            or w0_multiplier <= 0
        ):
            raise ValueError(f"SRWM: w0_multiplier must be a positive finite number, got {w0_multiplier!r}")
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, D
        self.beta_init, self.input_softmax, self.norm_skip = beta_init, input_softmax, norm_skip
        self.pre_norm = pre_norm
        self.backend, self.checkpoint_every = backend, checkpoint_every
        H = num_heads
        self.in_proj = nn.Linear(d_model, H * D, bias=False) if H * D != d_model else None
        self.W_y = nn.Parameter(torch.empty(H, D, D))
        self.W_q = nn.Parameter(torch.empty(H, D, D))
        self.W_k = nn.Parameter(torch.empty(H, D, D))
        self.w_b = nn.Parameter(torch.empty(H, D, 4))
        self.out_proj = nn.Linear(H * D, d_model, bias=False)
        self.norm = nn.LayerNorm(d_model) if norm_skip or pre_norm else None
        self.dropout = nn.Dropout(dropout)
        # A buffer so that every state dict says how its W0 was stored; the float copy serves code
        # that must not read tensors (meta-device construction, e.g. transformers' from_pretrained).
        self._w0_multiplier = float(np.float32(w0_multiplier))  # exactly the float32 buffer
        self.register_buffer("w0_multiplier", torch.tensor(self._w0_multiplier))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        m = self._w0_multiplier
        std = 1.0 / math.sqrt(self.head_dim)
        with torch.no_grad():
            for w in (self.W_y, self.W_q, self.W_k):
                nn.init.normal_(w, mean=0.0, std=std).div_(m)
            nn.init.normal_(self.w_b, mean=self.beta_init, std=std).div_(m)

    def initial_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The initial fast weights ``W_0 = m * (stored parameters)``: ``(W_y, W_q, W_k, w_b)``."""
        m = self.w0_multiplier.to(self.W_y.dtype)
        return self.W_y * m, self.W_q * m, self.W_k * m, self.w_b * m

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # Convert W0 stored with another multiplier (none saved = 1.0, the parametrization before
        # w0_multiplier existed) to this layer's, so that the loaded function is the same.
        key = prefix + "w0_multiplier"
        names = [prefix + n for n in ("W_y", "W_q", "W_k", "w_b")]
        if any(n in state_dict for n in names):
            saved = state_dict.get(key)
            m_saved = float(saved) if saved is not None else 1.0
            m = self._w0_multiplier
            if not math.isclose(m_saved, m, rel_tol=1e-6):  # float32/float16 buffers round m
                for n in names:
                    if n in state_dict:
                        state_dict[n] = state_dict[n] * (m_saved / m)
            state_dict[key] = torch.tensor(m, dtype=self.w0_multiplier.dtype)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def state_shapes(self, batch_size: int):
        B, H, D = batch_size, self.num_heads, self.head_dim
        return (B, H, D, D), (B, H, D, D), (B, H, D, D), (B, H, D, 4)

    def forward(
        self, x: torch.Tensor, state: SRWMState | None = None, reset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, SRWMState]:
        B, T = self.check_input(x, state)
        normed = self.norm(x) if self.norm is not None else x
        h = normed if self.pre_norm else x
        h = self.in_proj(h) if self.in_proj is not None else h
        h = h.view(B, T, self.num_heads, self.head_dim)
        if self.input_softmax:
            h = torch.softmax(h, dim=-1)
        W0 = self.initial_weights()
        start = W0 if state is None else tuple(w + s for w, s in zip(W0, state))
        y, W_T = srwm(h, *start, reset=reset, reset_to=W0, backend=self.backend, checkpoint_every=self.checkpoint_every)
        new_state = SRWMState(*(w_t - w0.to(w_t.dtype) for w_t, w0 in zip(W_T, W0)))
        out = self.dropout(self.out_proj(y.reshape(B, T, self.num_heads * self.head_dim)))
        return (normed if self.norm_skip else x) + out, new_state

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"beta_init={self.beta_init}, input_softmax={self.input_softmax}, norm_skip={self.norm_skip}, "
            f"pre_norm={self.pre_norm}, w0_multiplier={self._w0_multiplier:g}"
        )
