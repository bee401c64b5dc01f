"""FastWeightBlock (fast-weight layer + feed-forward) and FastWeightStack (N blocks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adaptmem.layers.base import FastWeightLayer
from adaptmem.layers.delta_net import DeltaNet, LinearAttention, RecurrentDeltaNet
from adaptmem.layers.srwm import SRWM
from adaptmem.utils.checks import fmt_shape

LAYERS: dict[str, type[FastWeightLayer]] = {
    "srwm": SRWM,
    "deltanet": DeltaNet,
    "linear": LinearAttention,
    "recurrent_deltanet": RecurrentDeltaNet,
}


def make_layer(kind: str | type[FastWeightLayer], d_model: int, num_heads: int, **kwargs: Any) -> FastWeightLayer:
    """Build a fast-weight layer by name (``"srwm"``, ``"deltanet"``, ``"linear"``,
    ``"recurrent_deltanet"``) or class."""
    if isinstance(kind, str):
        if kind not in LAYERS:
            raise ValueError(f"make_layer: kind must be one of {list(LAYERS)}, got {kind!r}")
        kind = LAYERS[kind]
    return kind(d_model, num_heads, **kwargs)


class FeedForward(nn.Module):
    """Pre-LN feed-forward block: ``x + Dropout(W_2 Dropout(ReLU(W_1 LayerNorm(x))))``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model), nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(d_ff, d_model), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class FastWeightBlock(nn.Module):
    """One fast-weight layer followed by a pre-LN feed-forward block.

    Args:
        kind: ``"srwm"``, ``"deltanet"``, ``"linear"``, ``"recurrent_deltanet"`` or a layer class.
        d_model, num_heads: sizes.
        d_ff: feed-forward width (default ``4 * d_model``).
        dropout: used in both sub-blocks.
        **layer_kwargs: passed to the fast-weight layer (e.g. ``head_dim``, ``beta_init``).

    Inputs/outputs as for the layer: ``forward(x, state=None, reset=None) -> (y, new_state)``.
    """

    def __init__(self, kind: str | type[FastWeightLayer], d_model: int, num_heads: int,
                 d_ff: int | None = None, dropout: float = 0.0, **layer_kwargs: Any) -> None:
        super().__init__()
        self.fast = make_layer(kind, d_model, num_heads, dropout=dropout, **layer_kwargs)
        self.ff = FeedForward(d_model, d_ff or 4 * d_model, dropout)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32):
        return self.fast.init_state(batch_size, device, dtype)

    def forward(self, x: torch.Tensor, state=None, reset: torch.Tensor | None = None):
        y, state = self.fast(x, state, reset)
        return self.ff(y), state


class FastWeightStack(nn.Module):
    """``num_layers`` x (fast-weight layer + feed-forward), carrying one state per layer.

    Args:
        kind: layer kind for every block (see :class:`FastWeightBlock`).
        num_layers, d_model, num_heads, d_ff, dropout: sizes.
        final_norm: apply a LayerNorm to the output (useful before a softmax head).
        **layer_kwargs: passed to every fast-weight layer.

    Inputs: ``x, state=None, reset=None``
        - **x** ``[B, T, d_model]``
        - **state** list of per-layer states (``None``: fresh); see :meth:`init_state`.
        - **reset** bool ``[B]`` or ``[B, T]``: where set, that row's state of every layer is
          reset before that step (e.g. episode boundaries in RL).

    Outputs: ``(y [B, T, d_model], new_state: list)``. States are never detached here: call
    :func:`adaptmem.layers.detach_state` between segments for truncated BPTT.

    Example::

        >>> stack = FastWeightStack("srwm", num_layers=2, d_model=64, num_heads=4)
        >>> state = stack.init_state(batch_size=8)
        >>> for segment in torch.randn(3, 8, 20, 64):
        ...     y, state = stack(segment, state)
        ...     state = detach_state(state)
    """

    def __init__(self, kind: str | type[FastWeightLayer], num_layers: int, d_model: int, num_heads: int,
                 d_ff: int | None = None, dropout: float = 0.0, final_norm: bool = False,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"FastWeightStack: num_layers must be a positive int, got {num_layers!r}")
        self.kind, self.d_model = kind, d_model
        self.blocks = nn.ModuleList(
            FastWeightBlock(kind, d_model, num_heads, d_ff, dropout, **layer_kwargs) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if final_norm else None

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> list:
        """The fresh state of every layer."""
        return [b.init_state(batch_size, device, dtype) for b in self.blocks]

    def forward(self, x: torch.Tensor, state: list | None = None, reset: torch.Tensor | None = None):
        if state is None:
            state = [None] * len(self.blocks)
        elif not isinstance(state, (list, tuple)) or len(state) != len(self.blocks):
            raise ValueError(f"FastWeightStack: state must be a list of {len(self.blocks)} per-layer states, "
                             f"got {type(state).__name__} of length {len(state) if hasattr(state, '__len__') else '?'}")
        if reset is not None and isinstance(reset, torch.Tensor) and reset.dim() not in (1, 2):
            raise ValueError(f"FastWeightStack: reset must be bool [B] or [B, T], got shape {fmt_shape(reset)}")
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block(x, s, reset)
            new_state.append(s)
        if self.norm is not None:
            x = self.norm(x)
        return x, new_state
