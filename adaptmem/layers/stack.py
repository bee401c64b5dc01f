"""FastWeightBlock (layer + feed-forward) and FastWeightStack (N blocks, or N bare recurrent layers)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from adaptmem.layers.registry import LAYERS, layer_kind, make_layer
from adaptmem.utils.checks import check_bool, check_float, check_positive_int, fmt_shape

# LAYERS and make_layer lived here before the registry; they stay importable from here.
__all__ = ["LAYERS", "FastWeightBlock", "FastWeightStack", "FeedForward", "make_layer"]

_NN_LSTM_PARAM = re.compile(r"(weight|bias)_(ih|hh)_l(\d+)")  # nn.LSTM(num_layers=L)'s, e.g. weight_ih_l1


class FeedForward(nn.Module):
    """Pre-LN feed-forward block: ``x + Dropout(W_2 Dropout(ReLU(W_1 LayerNorm(x))))``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("FeedForward", "d_model", d_model)
        check_positive_int("FeedForward", "d_ff", d_ff)
        check_float("FeedForward", "dropout", dropout, lo=0.0, hi=1.0)
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, d_ff),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(d_ff, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class FastWeightBlock(nn.Module):
    """One layer followed by a pre-LN feed-forward block.

    Args:
        kind: a registered kind (:func:`adaptmem.layers.layer_kinds`) or a layer class.
        d_model, num_heads: sizes.
        d_ff: feed-forward width (default ``4 * d_model``).
        dropout: used in both sub-blocks.
        **layer_kwargs: passed to the fast-weight layer (e.g. ``head_dim``, ``beta_init``).

    Inputs/outputs as for the layer: ``forward(x, state=None, reset=None) -> (y, new_state)``.
    """

    def __init__(
        self,
        kind: str | type[nn.Module],
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.fast = make_layer(kind, d_model, num_heads, dropout=dropout, **layer_kwargs)
        self.out_dim = self.fast.out_dim
        # d_ff=0 is an error, not "the default": only None means 4 * width
        d_ff = 4 * self.out_dim if d_ff is None else check_positive_int("FastWeightBlock", "d_ff", d_ff)
        self.ff = FeedForward(self.out_dim, d_ff, dropout)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32):
        return self.fast.init_state(batch_size, device, dtype)

    def forward(self, x: torch.Tensor, state=None, reset: torch.Tensor | None = None):
        y, state = self.fast(x, state, reset)
        return self.ff(y), state


class FastWeightStack(nn.Module):
    """``num_layers`` layers of one kind, carrying one state per layer.

    How a kind is stacked is the registry's call (:class:`~adaptmem.layers.LayerKind`):

    - fast-weight kinds (``"srwm"``, ``"deltanet"``, ``"linear"``, ``"recurrent_deltanet"``):
      ``num_layers`` x :class:`FastWeightBlock` (layer + pre-LN feed-forward), width ``d_model``,
      then a LayerNorm if ``final_norm``;
    - recurrent baselines (``"lstm"``): ``num_layers`` bare layers chained as ``nn.LSTM(num_layers,
      dropout)`` chains its own, ``hidden_size`` wide; ``d_ff`` and ``final_norm`` do not apply
      (there is no feed-forward, and the LSTM's output is already bounded).

    Args:
        kind: a registered kind (:func:`adaptmem.layers.layer_kinds`) or a layer class.
        num_layers, d_model, num_heads, d_ff, dropout: sizes (``num_heads`` is unused by kinds
            without heads).
        final_norm: apply a LayerNorm to the output of a block stack (useful before a softmax head).
        hidden_size: width of a recurrent-baseline stack (default ``d_model``); unused by blocks.
        **layer_kwargs: passed to every layer (e.g. ``head_dim``, ``beta_init``).

    Inputs: ``x, state=None, reset=None``
        - **x** ``[B, T, d_model]``
        - **state** list of per-layer states (``None``: fresh); see :meth:`init_state`.
        - **reset** bool ``[B]`` or ``[B, T]``: where set, that row's state of every layer is
          reset before that step (e.g. episode boundaries in RL).

    Outputs: ``(y [B, T, out_dim], new_state: list)``. States are never detached here: call
    :func:`adaptmem.layers.detach_state` between segments for truncated BPTT.

    Example::

        >>> stack = FastWeightStack("srwm", num_layers=2, d_model=64, num_heads=4)
        >>> state = stack.init_state(batch_size=8)
        >>> for segment in torch.randn(3, 8, 20, 64):
        ...     y, state = stack(segment, state)
        ...     state = detach_state(state)
    """

    def __init__(
        self,
        kind: str | type[nn.Module],
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        final_norm: bool = False,
        hidden_size: int | None = None,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        entry = layer_kind(kind, "FastWeightStack")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"FastWeightStack: num_layers must be a positive int, got {num_layers!r}")
        check_bool("FastWeightStack", "final_norm", final_norm)
        for arg, val in (("d_ff", d_ff), ("hidden_size", hidden_size)):
            if val is not None:  # 0 is an error, not "the default" (unused by kinds it does not apply to)
                check_positive_int("FastWeightStack", arg, val)
        self.kind, self.d_model, self._bare = kind, d_model, not entry.blocks
        if entry.blocks:
            blocks = [
                FastWeightBlock(kind, d_model, num_heads, d_ff, dropout, **layer_kwargs) for _ in range(num_layers)
            ]
        else:
            blocks, width = [], d_model
            hidden = d_model if hidden_size is None else hidden_size
            for i in range(num_layers):  # dropout between layers, not after the last (as nn.LSTM)
                blocks.append(
                    make_layer(
                        kind,
                        width,
                        num_heads,
                        hidden_size=hidden,
                        dropout=dropout if i < num_layers - 1 else 0.0,
                        **layer_kwargs,
                    )
                )
                width = blocks[-1].out_dim
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = self.blocks[-1].out_dim
        self.norm = nn.LayerNorm(self.out_dim) if final_norm and entry.blocks else None

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> list:
        """The fresh state of every layer."""
        return [b.init_state(batch_size, device, dtype) for b in self.blocks]

    def forward(self, x: torch.Tensor, state: list | None = None, reset: torch.Tensor | None = None):
        if state is None:
            state = [None] * len(self.blocks)
        elif not isinstance(state, (list, tuple)) or len(state) != len(self.blocks):
            raise ValueError(
                f"FastWeightStack: state must be a list of {len(self.blocks)} per-layer states, "
                f"got {type(state).__name__} of length {len(state) if hasattr(state, '__len__') else '?'}"
            )
        if reset is not None and isinstance(reset, torch.Tensor) and reset.dim() not in (1, 2):
            raise ValueError(f"FastWeightStack: reset must be bool [B] or [B, T], got shape {fmt_shape(reset)}")
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block(x, s, reset)
            new_state.append(s)
        if self.norm is not None:
            x = self.norm(x)
        return x, new_state

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A stack of LSTM layers replaced the multi-layer nn.LSTM of earlier few-shot and demo
        # models: load such a state dict by renaming "weight_ih_l<i>" to "blocks.<i>.lstm.weight_ih_l0".
        for key in [k for k in state_dict if k.startswith(prefix)]:
            m = _NN_LSTM_PARAM.fullmatch(key[len(prefix) :])
            if m and self._bare:
                kind, gate, layer = m.groups()
                state_dict[f"{prefix}blocks.{layer}.lstm.{kind}_{gate}_l0"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
