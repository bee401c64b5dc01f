"""Which implementation runs a call: one table of rules for every op, every fallback listed in it.

Two words name an implementation. ``mode`` is the algorithm form: ``"chunk"`` or
``"recurrent"`` for the delta rule and linear attention, ``"checkpointed"`` (memory-bounded
backward) or ``"reference"`` (autograd through the step loop) for the strictly sequential SRWM
and Recurrent Delta Net. ``backend`` is the device code: ``"auto"``, ``"torch"``, ``"triton"``,
``"fla"``, ``"numba"`` (compiled CPU kernels).

The public ops validate their inputs, describe the call as an :class:`OpCall` and ask
:func:`resolve_backend`. ``"auto"`` tries the op's backends in :data:`TABLE` order and takes the
first whose rules all hold (``"torch"`` has none, so it always can). An explicit backend checks
the same rules, except those marked ``AUTO_ONLY``; a rule that fails there either raises (its
``on_explicit`` is ``ValueError`` or ``ImportError``: the call cannot run as asked) or is a
``FALLBACK``: the call runs on ``"torch"`` with the caller's mode and every argument, with the
same results within rounding. The choice and the reasons are inspectable::

    >>> call = OpCall("delta_rule", "chunk", device="cuda", float64=True)
    >>> resolve_backend(call, "triton")  # with Triton installed
    Choice(backend='torch', passed_over=(('triton', 'the kernel accumulates in float32, float64 inputs run on torch'),))
    >>> print(explain_backend(OpCall("srwm", "checkpointed")))
    srwm(mode='checkpointed', backend='auto') runs on 'torch'
      not 'triton': ...
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from adaptmem.ops import _fla
from adaptmem.utils.checks import check_choice
from adaptmem.utils.extras import install_hint

# The algorithm forms of each op, default first.
MODES = {
    "srwm": ("checkpointed", "reference"),
    "delta_rule": ("chunk", "recurrent"),
    "linear_attention": ("chunk", "recurrent"),
    "recurrent_delta_rule": ("checkpointed", "reference"),
}
# Old spellings, still accepted with a DeprecationWarning: (argument, old value) -> (mode, backend).
RENAMED = {
    "srwm": {("backend", "reference"): ("reference", "auto")},
    "recurrent_delta_rule": {
        ("mode", "checkpoint"): ("checkpointed", None),
        ("mode", "recurrent"): ("reference", None),
    },
}
TRITON_MAX_HEAD_DIM = {"srwm": 128, "delta_rule": 256, "linear_attention": 256}  # registers per program
FLA_MAX_HEAD_DIM = 256


@dataclass(frozen=True)
class OpCall:
    """What the rules read of one call, taken after its inputs are validated."""

    op: str
    mode: str
    device: str = "cpu"  # as str(tensor.device), e.g. "cuda:0"
    dtypes: frozenset = frozenset({torch.float32})  # of the sequence inputs (x; or q, k, v, beta)
    float64: bool = False  # any input, weights and state included, in float64
    key_dim: int = 16  # D for SRWM
    value_dim: int = 16
    steps: int = 1
    heads: int = 1
    reset: bool = False  # resets inside the sequence
    normalize: bool = False  # linear attention's normaliser
    interpret: bool = False  # TRITON_INTERPRET=1: Triton kernels may run on CPU tensors

    @classmethod
    def of(
        cls,
        op: str,
        mode: str,
        inputs: Sequence[torch.Tensor | None],
        others: Sequence[torch.Tensor | None] = (),
        *,
        key_dim: int,
        value_dim: int,
        reset: torch.Tensor | None = None,
        normalize: bool = False,
    ) -> OpCall:
        """Describe a call from its sequence inputs (the first is ``[B, T, H, ...]``) and other tensors."""
        first = inputs[0]
        return cls(
            op,
            mode,
            device=str(first.device),
            dtypes=frozenset(t.dtype for t in inputs if t is not None),
            float64=any(t is not None and t.dtype == torch.float64 for t in (*inputs, *others)),
            key_dim=key_dim,
            value_dim=value_dim,
            steps=first.shape[1],
            heads=first.shape[2],
            reset=reset is not None,
            normalize=normalize,
            interpret=os.environ.get("TRITON_INTERPRET") == "1",
        )

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


# What an explicit request does when a rule fails (an exception type raises it).
FALLBACK = "fall back to torch"
AUTO_ONLY = "auto only"


class Rule(NamedTuple):
    """One condition of a backend: ``why_not(call)`` is ``None`` when it holds, else the reason."""

    why_not: Callable[[OpCall], str | None]
    on_explicit: type[Exception] | str  # ValueError, ImportError, FALLBACK or AUTO_ONLY


class Choice(NamedTuple):
    """The backend that runs a call, and each backend passed over on the way with the reason."""

    backend: str
    passed_over: tuple[tuple[str, str], ...] = ()


@functools.cache
def installed(package: str) -> bool:
    """Whether ``package`` is importable (found without importing it)."""
    return importlib.util.find_spec(package) is not None


def _installed(package: str, name: str, extra: str) -> Rule:
    return Rule(
        lambda c: None if installed(package) else f"{name} is not installed: {install_hint(extra)}", ImportError
    )


def _triton_rules(op: str, *form_rules: Rule) -> tuple[Rule, ...]:
    limit = TRITON_MAX_HEAD_DIM[op]
    return (
        _installed("triton", "Triton", "triton"),
        Rule(
            lambda c: (
                None
                if c.device_type == "cuda" or (c.device_type == "cpu" and c.interpret)
                else f"Triton needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), got a tensor on {c.device}"
            ),
            ValueError,
        ),
        Rule(lambda c: None if c.device_type == "cuda" else "auto runs Triton kernels on CUDA only", AUTO_ONLY),
        *form_rules,
        Rule(
            lambda c: "the kernel accumulates in float32, float64 inputs run on torch" if c.float64 else None, FALLBACK
        ),
        Rule(
            lambda c: None if c.key_dim <= limit else f"the kernel holds head dims up to {limit}, got {c.key_dim}",
            FALLBACK,
        ),
    )


def _fla_dtype_rule(c: OpCall) -> str | None:
    if len(c.dtypes) != 1:
        return f"fla needs its inputs in one dtype, got {sorted(map(str, c.dtypes))}"
    (dtype,) = c.dtypes
    if c.op == "delta_rule" and c.mode == "chunk" and dtype == torch.float32:
        return "fla's chunk delta rule rejects float32"
    if c.op == "linear_attention" and dtype == torch.float32:
        return "fla's linear attention is used for bfloat16/float16 only"
    return None


def _fla_passes_check(c: OpCall) -> str | None:
    (dtype,) = c.dtypes
    if _fla.fla_passes_check(c.op, c.mode, dtype, c.key_dim, c.value_dim, c.device):
        return None
    return "fla failed its one-time check against our reference (see the warning it gave)"


FLA_RULES = (
    _installed("fla", "fla-core (flash-linear-attention's kernels)", "fla"),
    Rule(lambda c: None if c.device_type == "cuda" else f"fla runs only on CUDA tensors, got {c.device}", ValueError),
    Rule(lambda c: "fla has no in-sequence reset" if c.reset else None, ValueError),
    Rule(lambda c: "fla has no float64 kernels" if c.float64 else None, ValueError),
    Rule(_fla_dtype_rule, ValueError),
    Rule(
        lambda c: (
            None
            if max(c.key_dim, c.value_dim) <= FLA_MAX_HEAD_DIM
            else f"fla supports head dims up to {FLA_MAX_HEAD_DIM}, got Dk={c.key_dim}, Dv={c.value_dim}"
        ),
        ValueError,
    ),
    Rule(
        lambda c: "fla's normalised linear attention uses another epsilon and state" if c.normalize else None,
        ValueError,
    ),
    Rule(
        lambda c: (
            "fla's chunk linear attention rejects T < H (it takes it for a head-first layout)"
            if c.op == "linear_attention" and c.steps < c.heads
            else None
        ),
        ValueError,
    ),
    Rule(_fla_passes_check, AUTO_ONLY),  # last: it runs fla once per configuration
)

_MODE_CHECKPOINTED = Rule(
    lambda c: None if c.mode == "checkpointed" else "the kernel implements mode='checkpointed' only", ValueError
)

# The fused CPU kernels (<op>/fused_cpu.py): float32 and float64 (half precision is computed in
# float32 by the ops, as on torch).
NUMBA_RULES = (
    _installed("numba", "numba", "numba"),
    _MODE_CHECKPOINTED,
    Rule(
        lambda c: None if c.device_type == "cpu" else f"numba runs on CPU tensors, got a tensor on {c.device}",
        ValueError,
    ),
)

# op -> backend -> rules, backends in the order "auto" tries them, rules in the order they are checked.
TABLE: dict[str, dict[str, tuple[Rule, ...]]] = {
    "srwm": {"numba": NUMBA_RULES, "triton": _triton_rules("srwm", _MODE_CHECKPOINTED), "torch": ()},
    "delta_rule": {"fla": FLA_RULES, "triton": _triton_rules("delta_rule"), "torch": ()},
    "linear_attention": {"fla": FLA_RULES, "triton": _triton_rules("linear_attention"), "torch": ()},
    "recurrent_delta_rule": {"numba": NUMBA_RULES, "torch": ()},
}


def check_mode_and_backend(op: str, mode: str, backend: str) -> tuple[str, str]:
    """Validate ``mode`` and ``backend`` of ``op``, translating old spellings (with a warning)."""
    for (arg, old), (new_mode, new_backend) in RENAMED.get(op, {}).items():
        if (mode if arg == "mode" else backend) == old:
            use = f"mode={new_mode!r}" + (f", backend={new_backend!r}" if new_backend not in (None, "auto") else "")
            warnings.warn(f"{op}: {arg}={old!r} is deprecated; use {use}", DeprecationWarning, stacklevel=3)
            mode, backend = new_mode, new_backend or backend
    check_choice(op, "mode", mode, MODES[op])
    check_choice(op, "backend", backend, ("auto", *TABLE[op]))
    return mode, backend


def _first_failure(call: OpCall, backend: str, explicit: bool) -> tuple[Rule, str] | None:
    for rule in TABLE[call.op][backend]:
        if explicit and rule.on_explicit == AUTO_ONLY:
            continue
        reason = rule.why_not(call)
        if reason is not None:
            return rule, reason
    return None


def resolve_backend(call: OpCall, backend: str = "auto") -> Choice:
    """The backend that runs ``call`` when ``backend`` is asked for (see the module docstring)."""
    if backend != "auto":
        failure = _first_failure(call, backend, explicit=True)
        if failure is None:
            return Choice(backend)
        rule, reason = failure
        if rule.on_explicit == FALLBACK:
            return Choice("torch", ((backend, reason),))
        raise rule.on_explicit(
            f"{call.op}: backend={backend!r} cannot run this call: {reason}; use backend='auto' or 'torch'"
        )
    passed_over = []
    for candidate in TABLE[call.op]:
        failure = _first_failure(call, candidate, explicit=False)
        if failure is None:
            return Choice(candidate, tuple(passed_over))
        passed_over.append((candidate, failure[1]))
    raise AssertionError(f"{call.op}: no backend without rules")  # "torch" has none


def explain_backend(call: OpCall, backend: str = "auto") -> str:
    """One line for the backend that runs ``call``, one per backend passed over and why."""
    choice = resolve_backend(call, backend)
    lines = [f"{call.op}(mode={call.mode!r}, backend={backend!r}) runs on {choice.backend!r}"]
    lines += [f"  not {name!r}: {why}" for name, why in choice.passed_over]
    return "\n".join(lines)
