"""``nn.Module`` recurrent layers: ``forward(x, state=None, reset=None) -> (y, new_state)``.

The fast-weight layers (SRWM, DeltaNet, LinearAttention, RecurrentDeltaNet) and the LSTM
baseline share one contract (:class:`RecurrentLayer`) and one registry of kind names
(:func:`layer_kinds`, :func:`make_layer`, :func:`register_layer`); :class:`FastWeightStack`
stacks any kind; :mod:`adaptmem.layers.state` walks their (nested, batch-first) states.
"""

from adaptmem.layers.base import FastWeightLayer, RecurrentLayer
from adaptmem.layers.delta_net import (
    DeltaNet,
    DeltaNetState,
    LinearAttention,
    LinearAttentionState,
    RecurrentDeltaNet,
    elu_sum_norm,
)
from adaptmem.layers.lstm import LSTM, LSTMState
from adaptmem.layers.registry import LAYERS, LayerKind, layer_kind, layer_kinds, make_layer, register_layer
from adaptmem.layers.srwm import SRWM, SRWMState
from adaptmem.layers.stack import FastWeightBlock, FastWeightStack, FeedForward
from adaptmem.layers.state import detach_state, index_state, map_state, mask_state, repeat_rows, state_tensors
from adaptmem.ops import RecurrentDeltaState

__all__ = [
    "LAYERS",
    "LSTM",
    "DeltaNet",
    "DeltaNetState",
    "FastWeightBlock",
    "FastWeightLayer",
    "FastWeightStack",
    "FeedForward",
    "LSTMState",
    "LayerKind",
    "LinearAttention",
    "LinearAttentionState",
    "RecurrentDeltaNet",
    "RecurrentDeltaState",
    "RecurrentLayer",
    "SRWM",
    "SRWMState",
    "detach_state",
    "elu_sum_norm",
    "index_state",
    "layer_kind",
    "layer_kinds",
    "make_layer",
    "map_state",
    "mask_state",
    "register_layer",
    "repeat_rows",
    "state_tensors",
]
