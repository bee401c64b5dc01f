"""Flat weight layouts of PyTorch recurrent networks.

A :class:`WeightSpec` describes an ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (unidirectional,
``batch_first`` or not) optionally followed by an output ``nn.Linear``. Its flat vector keeps
PyTorch's own order: per layer ``weight_ih_l{k}`` (G*H x in), ``weight_hh_l{k}`` (G*H x H),
``bias_ih_l{k}``, ``bias_hh_l{k}``; then ``linear.weight`` and ``linear.bias``. ``G`` is the
number of gate blocks, stacked in PyTorch's gate order (LSTM ``i, f, g, o``; GRU ``r, z, n``).

For the 2-layer, 32-unit LSTM of the formal-language zoo (6 -> 32 -> 6) the offsets are
``weight_ih_l0 [0:768]``, ``weight_hh_l0 [768:4864]``, ``bias_ih_l0 [4864:4992]``,
``bias_hh_l0 [4992:5120]``, layer 1 ``[5120:13568]``, linear ``[13568:13766]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn

from adaptmem.utils.checks import check_floating, check_tensor, fmt_shape

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
_GATE_ORDER = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn_tanh": ("h",), "rnn_relu": ("h",)}


@dataclass(frozen=True)
class TensorEntry:
    """One named tensor inside the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    layer: int  # recurrent layer index; ``num_layers`` for the output Linear
    kind: str  # weight_ih | weight_hh | bias_ih | bias_hh | linear_weight | linear_bias

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.numel)


@dataclass(frozen=True)
class WeightSpec:
    """Layout of a recurrent network's parameters as one flat vector.

    Args:
        cell: ``"lstm"``, ``"gru"``, ``"rnn_tanh"`` or ``"rnn_relu"``.
        input_size: features per input step.
        hidden_size: units per recurrent layer.
        num_layers: stacked recurrent layers.
        output_size: size of the output ``nn.Linear`` on top, or ``None`` for none.
        bias: whether the recurrent layers have biases (the Linear always has one).

    Example::

        >>> spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
        >>> spec.num_params, spec.entry("bias_hh_l0").slice
        (13766, slice(4992, 5120, None))
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    output_size: int | None = None
    bias: bool = True

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"WeightSpec: cell must be one of {list(CELLS)}, got {self.cell!r}")
        for name in ("input_size", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"WeightSpec: {name} must be a positive int, got {v!r}")
        if self.output_size is not None and (
            isinstance(self.output_size, bool) or not isinstance(self.output_size, int) or self.output_size <= 0
        ):
            raise ValueError(f"WeightSpec: output_size must be a positive int or None, got {self.output_size!r}")
        if not isinstance(self.bias, bool):
            raise TypeError(f"WeightSpec: bias must be a bool, got {type(self.bias).__name__} {self.bias!r}")

    # ---- layout -------------------------------------------------------------------------
    @property
    def gates(self) -> int:
        """Number of stacked gate blocks G (4 for LSTM, 3 for GRU, 1 for a plain RNN)."""
        return len(_GATE_ORDER[self.cell])

    @property
    def gate_order(self) -> tuple[str, ...]:
        return _GATE_ORDER[self.cell]

    @property
    def out_features(self) -> int:
        """Size of what the network emits per step (the Linear's output, else ``hidden_size``)."""
        return self.output_size if self.output_size is not None else self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.num_layers:
            raise ValueError(
                f"WeightSpec.layer_input_size: layer must be an int in [0, {self.num_layers}), got {layer!r}"
            )
        return self.input_size if layer == 0 else self.hidden_size

    @cached_property
    def entries(self) -> tuple[TensorEntry, ...]:
        out: list[TensorEntry] = []
        offset = 0

        def add(name: str, shape: tuple[int, ...], layer: int, kind: str) -> None:
            nonlocal offset
            out.append(TensorEntry(name, shape, offset, layer, kind))
            offset += math.prod(shape)

        gh = self.gates * self.hidden_size
        for k in range(self.num_layers):
            add(f"weight_ih_l{k}", (gh, self.layer_input_size(k)), k, "weight_ih")
            add(f"weight_hh_l{k}", (gh, self.hidden_size), k, "weight_hh")
            if self.bias:
                add(f"bias_ih_l{k}", (gh,), k, "bias_ih")
                add(f"bias_hh_l{k}", (gh,), k, "bias_hh")
        if self.output_size is not None:
            add("linear.weight", (self.output_size, self.hidden_size), self.num_layers, "linear_weight")
            add("linear.bias", (self.output_size,), self.num_layers, "linear_bias")
        return tuple(out)

    @cached_property
    def _by_name(self) -> dict[str, TensorEntry]:
        return {e.name: e for e in self.entries}

    @property
    def num_params(self) -> int:
        last = self.entries[-1]
        return last.offset + last.numel

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def entry(self, name: str) -> TensorEntry:
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"WeightSpec: no tensor named {name!r}; have {list(self.names)}") from None

    def gate_slice(self, gate: str) -> slice:
        """Rows of a ``weight_*`` / ``bias_*`` tensor that belong to ``gate`` (e.g. ``"g"``)."""
        if gate not in self.gate_order:
            raise ValueError(f"WeightSpec.gate_slice: gate must be one of {self.gate_order}, got {gate!r}")
        k = self.gate_order.index(gate)
        return slice(k * self.hidden_size, (k + 1) * self.hidden_size)

    # ---- conversions --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "output_size": self.output_size,
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WeightSpec:
        if not isinstance(d, dict):
            raise TypeError(f"WeightSpec.from_dict: d must be a dict (from to_dict), got {type(d).__name__}")
        try:
            return cls(**d)
        except TypeError as e:  # missing or unknown fields
            raise TypeError(f"WeightSpec.from_dict: d must hold the fields of to_dict(), got {sorted(d)} ({e})") from e

    @classmethod
    def from_module(cls, module: nn.Module) -> WeightSpec:
        """The spec of an ``nn.LSTM``/``nn.GRU``/``nn.RNN``, or of a module holding exactly one
        of them plus at most one ``nn.Linear`` applied to its outputs (e.g. :class:`RNNModel`)."""
        rnn, linear = _split_module(module)
        if rnn.mode == "LSTM":
            cell = "lstm"
        elif rnn.mode == "GRU":
            cell = "gru"
        else:
            cell = "rnn_tanh" if rnn.mode == "RNN_TANH" else "rnn_relu"
        if rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError("WeightSpec.from_module: bidirectional RNNs and LSTM proj_size are not supported")
        if linear is not None and (linear.in_features != rnn.hidden_size or linear.bias is None):
            raise ValueError(
                f"WeightSpec.from_module: the Linear must map hidden_size={rnn.hidden_size} features "
                f"and have a bias, got in_features={linear.in_features} bias={linear.bias is not None}"
            )
        return cls(
            cell,
            rnn.input_size,
            rnn.hidden_size,
            rnn.num_layers,
            None if linear is None else linear.out_features,
            rnn.bias,
        )

    def build(self) -> RNNModel:
        """A fresh ``batch_first`` :class:`RNNModel` with this layout."""
        return RNNModel(self)

    def init_vectors(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``[n, P]`` vectors drawn like PyTorch's default initialisation of the modules:
        recurrent tensors ~ U(-1/sqrt(H), 1/sqrt(H)); Linear ~ U(-1/sqrt(H), 1/sqrt(H))."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"WeightSpec.init_vectors: n must be an int >= 0, got {n!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"WeightSpec.init_vectors: dtype must be a floating-point torch.dtype, got {dtype!r}")
        bound = 1.0 / math.sqrt(self.hidden_size)  # the Linear's fan-in is also hidden_size
        u = torch.rand(n, self.num_params, generator=generator, dtype=dtype)
        return (2 * u - 1) * bound


class RNNModel(nn.Module):
    """A ``batch_first`` recurrent network with an optional output Linear, built from a spec.

    Inputs: ``x [B, T, input_size]`` and an optional state (as for the wrapped module).
    Outputs: ``(y [B, T, out_features], state)``.

    Example::

        >>> model = RNNModel(WeightSpec("lstm", 6, 32, 2, output_size=6))
        >>> y, (h, c) = model(torch.zeros(3, 5, 6))
    """

    def __init__(self, spec: WeightSpec) -> None:
        super().__init__()
        self.spec = spec
        kwargs = dict(num_layers=spec.num_layers, bias=spec.bias, batch_first=True)
        if spec.cell == "lstm":
            self.rnn: nn.RNNBase = nn.LSTM(spec.input_size, spec.hidden_size, **kwargs)
        elif spec.cell == "gru":
            self.rnn = nn.GRU(spec.input_size, spec.hidden_size, **kwargs)
        else:
            self.rnn = nn.RNN(spec.input_size, spec.hidden_size, nonlinearity=spec.cell[4:], **kwargs)
        self.linear = nn.Linear(spec.hidden_size, spec.output_size) if spec.output_size else None

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.rnn(x, state)
        return (self.linear(y) if self.linear is not None else y), state

    def extra_repr(self) -> str:
        return f"params={self.spec.num_params}"


def _split_module(module: nn.Module) -> tuple[nn.RNNBase, nn.Linear | None]:
    if isinstance(module, nn.RNNBase):
        return module, None
    rnns = [m for m in module.children() if isinstance(m, nn.RNNBase)]
    linears = [m for m in module.children() if isinstance(m, nn.Linear)]
    if len(rnns) != 1 or len(linears) > 1:
        raise TypeError(
            f"weights: expected an nn.LSTM/nn.GRU/nn.RNN or a module with one of them and at most "
            f"one nn.Linear as direct children, got {type(module).__name__} with {len(rnns)} RNNs "
            f"and {len(linears)} Linears"
        )
    return rnns[0], (linears[0] if linears else None)


def _module_tensors(module: nn.Module, spec: WeightSpec) -> list[torch.Tensor]:
    rnn, linear = _split_module(module)
    out = []
    for e in spec.entries:
        out.append(getattr(linear, e.name.split(".")[1]) if e.name.startswith("linear.") else getattr(rnn, e.name))
    return out


def flatten(module: nn.Module) -> torch.Tensor:
    """The module's parameters as one vector ``[P]`` in :class:`WeightSpec` order.

    The result is a new tensor that stays connected to the parameters' autograd graph.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"flatten: module must be an nn.Module, got {type(module).__name__}")
    spec = WeightSpec.from_module(module)
    return torch.cat([t.reshape(-1) for t in _module_tensors(module, spec)])


def unflatten(vectors: torch.Tensor, spec: WeightSpec) -> dict[str, torch.Tensor]:
    """Views ``{name: [..., *shape]}`` into ``vectors [..., P]`` (any leading batch dims)."""
    check_spec("unflatten", spec)
    check_floating("unflatten", "vectors", vectors)
    if vectors.dim() == 0 or vectors.shape[-1] != spec.num_params:
        raise ValueError(
            f"unflatten: vectors must be [..., P] with P={spec.num_params} for this spec, "
            f"got shape {fmt_shape(vectors)}"
        )
    lead = vectors.shape[:-1]
    # one split rather than a slice per entry: its backward is one cat, where the backward of
    # each slice zero-fills a whole [..., P] gradient (10 of them for the zoo LSTM: in a batched
    # forward+backward that was 40% of the time)
    parts = vectors.split([e.numel for e in spec.entries], dim=-1)
    return {e.name: t.reshape(*lead, *e.shape) for e, t in zip(spec.entries, parts)}


def load_into(vector: torch.Tensor, module: nn.Module) -> nn.Module:
    """Copy a flat vector ``[P]`` into the module's parameters in place; returns the module."""
    check_tensor("load_into", "vector", vector)
    spec = WeightSpec.from_module(module)
    if vector.dim() != 1 or vector.shape[0] != spec.num_params:
        raise ValueError(
            f"load_into: vector must be [P] with P={spec.num_params} for "
            f"{type(module).__name__}, got shape {fmt_shape(vector)}"
        )
    with torch.no_grad():
        for t, e in zip(_module_tensors(module, spec), spec.entries):
            t.copy_(vector[e.slice].view(e.shape))
    if isinstance(module, nn.RNNBase):
        module.flatten_parameters()
    else:
        _split_module(module)[0].flatten_parameters()
    return module


def check_spec(fn: str, spec: object) -> WeightSpec:
    """``spec`` must be a :class:`WeightSpec`."""
    if not isinstance(spec, WeightSpec):
        raise TypeError(f"{fn}: spec must be a WeightSpec, got {type(spec).__name__}")
    return spec
