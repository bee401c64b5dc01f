"""Pure tensor functions (no ``nn.Module``), batch-first ``[B, T, H, D]``.

Each family has a plain step-loop reference (``*_reference``), the specification that every
fast version is tested against, and a public entry point that picks the fast version.
"""

from adaptmem.ops.delta_rule import delta_rule
from adaptmem.ops.delta_rule.reference import delta_rule_reference
from adaptmem.ops.linear_attention import linear_attention
from adaptmem.ops.linear_attention.reference import linear_attention_reference
from adaptmem.ops.recurrent_delta_rule import recurrent_delta_rule
from adaptmem.ops.recurrent_delta_rule.reference import RecurrentDeltaState, recurrent_delta_rule_reference
from adaptmem.ops.srwm import srwm
from adaptmem.ops._checks import SRWMWeights
from adaptmem.ops.srwm.reference import srwm_reference

__all__ = [
    "RecurrentDeltaState",
    "SRWMWeights",
    "delta_rule",
    "delta_rule_reference",
    "linear_attention",
    "linear_attention_reference",
    "recurrent_delta_rule",
    "recurrent_delta_rule_reference",
    "srwm",
    "srwm_reference",
]
