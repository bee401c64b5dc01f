"""Pure tensor functions (no ``nn.Module``), batch-first ``[B, T, H, D]``, one folder per op family.

Each family (``srwm/``, ``delta_rule/``, ``linear_attention/``, ``recurrent_delta_rule/``) holds
its public function (``__init__.py``: checks the inputs once, picks the implementation once from
the table in :mod:`adaptmem.ops._dispatch`), its plain step-loop reference (``reference.py``:
the specification that every fast form is tested against) and one file per fast form. The math
of every op: ``docs/reference.md``.

The folders share their functions' names, so ``adaptmem.ops.srwm`` is the function; import a
form with ``from adaptmem.ops.srwm import checkpointed`` (``import adaptmem.ops.srwm.checkpointed
as m`` finds the function first and fails).
"""

from adaptmem.ops._dispatch import OpCall, explain_backend, resolve_backend
from adaptmem.ops._state import RecurrentDeltaState, SRWMWeights
from adaptmem.ops.delta_rule import delta_rule, delta_rule_reference
from adaptmem.ops.linear_attention import linear_attention, linear_attention_reference
from adaptmem.ops.recurrent_delta_rule import recurrent_delta_rule, recurrent_delta_rule_reference
from adaptmem.ops.srwm import srwm, srwm_reference

__all__ = [
    "OpCall",
    "RecurrentDeltaState",
    "SRWMWeights",
    "delta_rule",
    "delta_rule_reference",
    "explain_backend",
    "linear_attention",
    "linear_attention_reference",
    "recurrent_delta_rule",
    "recurrent_delta_rule_reference",
    "resolve_backend",
    "srwm",
    "srwm_reference",
]
