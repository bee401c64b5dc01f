"""``nn.Module`` fast-weight layers: ``forward(x, state=None, reset=None) -> (y, new_state)``."""

from adaptmem.layers.base import FastWeightLayer, detach_state, mask_state
from adaptmem.layers.delta_net import (
    DeltaNet,
    DeltaNetState,
    LinearAttention,
    LinearAttentionState,
    RecurrentDeltaNet,
    elu_sum_norm,
)
from adaptmem.layers.srwm import SRWM, SRWMState
from adaptmem.layers.stack import LAYERS, FastWeightBlock, FastWeightStack, FeedForward, make_layer
from adaptmem.ops.recurrent_delta_rule_reference import RecurrentDeltaState

__all__ = [
    "LAYERS",
    "DeltaNet",
    "DeltaNetState",
    "FastWeightBlock",
    "FastWeightLayer",
    "FastWeightStack",
    "FeedForward",
    "LinearAttention",
    "LinearAttentionState",
    "RecurrentDeltaNet",
    "RecurrentDeltaState",
    "SRWM",
    "SRWMState",
    "detach_state",
    "elu_sum_norm",
    "make_layer",
    "mask_state",
]
