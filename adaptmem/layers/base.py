"""What all recurrent layers share: the layer contract, state shapes, zero states, input checks."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from adaptmem.layers.state import detach_state, mask_state  # noqa: F401  (re-exported: their old home)
from adaptmem.utils.checks import check_floating, fmt_shape


class RecurrentLayer(nn.Module):
    """The layer contract: ``forward(x [B, T, d_model], state=None, reset=None) -> (y, new_state)``.

    ``y`` is ``[B, T, out_dim]``; ``state`` is a ``NamedTuple`` (``state_type``) of batch-first
    tensors whose shapes :meth:`state_shapes` gives, all zero when fresh; ``reset`` (bool ``[B]``
    or ``[B, T]``) restarts a row from the fresh state before that step. Every adaptmem layer
    (the fast-weight layers and the :class:`~adaptmem.layers.LSTM` baseline) follows it, so
    stacks, models and agents never special-case a kind.
    """

    state_type: type[NamedTuple]
    d_model: int

    @property
    def out_dim(self) -> int:
        """Size of the output features (``d_model`` unless the layer changes the width)."""
        return self.d_model

    def state_shapes(self, batch_size: int) -> tuple[tuple[int, ...], ...]:
        raise NotImplementedError

    def init_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> NamedTuple:
        """The fresh (all-zero) state for ``batch_size`` rows."""
        name = f"{type(self).__name__}.init_state"
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"{name}: batch_size must be an int >= 0, got {batch_size!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"{name}: dtype must be a floating-point torch.dtype, got {dtype!r}")
        device = device if device is not None else next(self.parameters()).device
        return self.state_type(*(torch.zeros(s, device=device, dtype=dtype) for s in self.state_shapes(batch_size)))

    def check_input(self, x: Any, state: Any) -> tuple[int, int]:
        """Validate ``x`` and ``state``; returns ``(B, T)``."""
        name = type(self).__name__
        check_floating(name, "x", x)
        if x.dim() != 3 or x.shape[-1] != self.d_model or x.shape[1] == 0:
            raise ValueError(f"{name}: x must be [B, T, d_model] = (*, >0, {self.d_model}), got shape {fmt_shape(x)}")
        B = x.shape[0]
        param = next(self.parameters(), None)
        if param is not None and x.device != param.device:
            raise ValueError(
                f"{name}: x is on {x.device} but the layer's parameters are on {param.device}; "
                f"move one of them (layer.to(x.device))"
            )
        if param is not None and x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"{name}: x has dtype {x.dtype} but the layer's parameters are {param.dtype}; convert "
                f"one of them (x.to({param.dtype}) or layer.to({x.dtype})), or run under torch.autocast"
            )
        if state is not None:
            shapes = self.state_shapes(B)
            fields = self.state_type._fields
            if not isinstance(state, tuple) or len(state) != len(shapes):
                raise TypeError(
                    f"{name}: state must be a {self.state_type.__name__}{fields}, got {type(state).__name__}"
                )
            for f, s, t in zip(fields, shapes, state):
                check_floating(name, f"state.{f}", t)
                if tuple(t.shape) != s:
                    raise ValueError(
                        f"{name}: state.{f} must have shape {fmt_shape(s)} for batch size {B}, got {fmt_shape(t)}"
                    )
                if t.device != x.device:
                    raise ValueError(f"{name}: state.{f} is on {t.device} but x is on {x.device}")
        return B, x.shape[1]


class FastWeightLayer(RecurrentLayer):
    """A fast-weight memory layer (SRWM, DeltaNet, ...): a :class:`RecurrentLayer` whose state
    is a set of per-head fast weight matrices and whose output keeps the width ``d_model``.
    The zero state is the fresh state (for SRWM: the learned initial weights, unchanged)."""


def resolve_heads(name: str, d_model: int, num_heads: int, head_dim: int | None) -> int:
    for arg, val in (("d_model", d_model), ("num_heads", num_heads)):
        if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
            raise ValueError(f"{name}: {arg} must be a positive int, got {val!r}")
    if head_dim is None:
        if d_model % num_heads:
            raise ValueError(
                f"{name}: d_model ({d_model}) must be divisible by num_heads ({num_heads}) when head_dim is not given"
            )
        return d_model // num_heads
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0:
        raise ValueError(f"{name}: head_dim must be a positive int, got {head_dim!r}")
    return head_dim
