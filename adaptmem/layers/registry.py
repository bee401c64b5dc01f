"""The one registry of layer kinds: the names that stacks, models, agents and examples accept.

>>> layer_kinds()
('srwm', 'deltanet', 'linear', 'recurrent_deltanet', 'lstm')
>>> layer = make_layer("deltanet", d_model=64, num_heads=4)

A new layer class becomes usable everywhere a kind is named (``FastWeightStack``, the few-shot
learner, the RL agent, ...) after ``register_layer("name", MyLayer)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from adaptmem.layers.base import RecurrentLayer
from adaptmem.layers.delta_net import DeltaNet, LinearAttention, RecurrentDeltaNet
from adaptmem.layers.lstm import LSTM
from adaptmem.layers.srwm import SRWM


@dataclass(frozen=True)
class LayerKind:
    """A registered kind of layer.

    Attributes:
        name: what callers pass as ``kind``.
        cls: the layer class; it follows :class:`~adaptmem.layers.base.RecurrentLayer`'s contract.
        blocks: how the layer is built and stacked.

            - ``True`` (fast-weight layers): ``cls(d_model, num_heads, **kw)``, output width
              ``d_model``; :class:`~adaptmem.layers.FastWeightStack` wraps each layer in a
              :class:`~adaptmem.layers.FastWeightBlock` (+ pre-LN feed-forward of width ``d_ff``)
              and adds a final LayerNorm when asked.
            - ``False`` (recurrent baselines such as the LSTM): ``cls(d_in, **kw)``, no heads,
              output width ``layer.out_dim``; the stack chains the layers directly, as
              ``nn.LSTM(num_layers=L, dropout=p)`` does: ``hidden_size`` wide, dropout between
              layers, no feed-forward and no final norm (``d_ff`` and ``final_norm`` do not apply).
    """

    name: str
    cls: type[nn.Module]
    blocks: bool = True


_KINDS: dict[str, LayerKind] = {}
_CLASSES: dict[str, type[nn.Module]] = {}
LAYERS = MappingProxyType(_CLASSES)  # name -> layer class: a read-only, always current view


def register_layer(name: str, cls: type[nn.Module], *, blocks: bool = True) -> LayerKind:
    """Make ``cls`` available as ``kind=name`` everywhere (see :class:`LayerKind` for ``blocks``).

    Registering the same class under the same name again is a no-op; reusing a name for a
    different class raises ``ValueError``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_layer: name must be an identifier-like str, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_layer: cls must be an nn.Module subclass, got {cls!r}")
    if not isinstance(blocks, bool):
        raise TypeError(f"register_layer: blocks must be a bool, got {type(blocks).__name__}")
    entry = LayerKind(name, cls, blocks)
    old = _KINDS.get(name)
    if old is not None and old != entry:
        raise ValueError(f"register_layer: kind {name!r} is already registered as {old}")
    _KINDS[name], _CLASSES[name] = entry, cls
    return entry


def layer_kinds(*, blocks: bool | None = None) -> tuple[str, ...]:
    """The registered kind names, in registration order; ``blocks`` filters by
    :attr:`LayerKind.blocks` (``True``: the fast-weight kinds)."""
    return tuple(n for n, k in _KINDS.items() if blocks is None or k.blocks == blocks)


def layer_kind(kind: str | type[nn.Module], fn: str = "layer_kind") -> LayerKind:
    """The :class:`LayerKind` of a name or class; an unregistered class counts as a fast-weight
    (``blocks=True``) kind. ``fn`` names the caller in the error message."""
    if isinstance(kind, type) and issubclass(kind, nn.Module):
        return next((k for k in _KINDS.values() if k.cls is kind), LayerKind(kind.__name__, kind, True))
    if kind not in _KINDS:
        raise ValueError(f"{fn}: kind must be one of {list(_KINDS)} or a layer class, got {kind!r}")
    return _KINDS[kind]


def make_layer(kind: str | type[nn.Module], d_model: int, num_heads: int, **kwargs: Any) -> RecurrentLayer:
    """Build a layer by kind name (see :func:`layer_kinds`) or class. ``num_heads`` is not passed
    to kinds without heads (``blocks=False``, e.g. the LSTM)."""
    entry = layer_kind(kind, "make_layer")
    return entry.cls(d_model, num_heads, **kwargs) if entry.blocks else entry.cls(d_model, **kwargs)


register_layer("srwm", SRWM)
register_layer("deltanet", DeltaNet)
register_layer("linear", LinearAttention)
register_layer("recurrent_deltanet", RecurrentDeltaNet)
register_layer("lstm", LSTM, blocks=False)
