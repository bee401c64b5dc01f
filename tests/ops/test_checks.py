"""Every op validates its inputs exactly once per call, in :mod:`adaptmem.ops._checks`."""

from __future__ import annotations

import collections
import inspect

import pytest
import torch

from adaptmem import ops
from adaptmem.ops import _checks


@pytest.fixture
def calls(monkeypatch):
    """Count the calls of every check function (the checks call each other through the module too)."""
    counts = collections.Counter()
    for name, fn in inspect.getmembers(_checks, inspect.isfunction):
        if name.startswith("check_") and fn.__module__ == _checks.__name__:

            def counted(*args, _fn=fn, _name=name, **kwargs):
                counts[_name] += 1
                return _fn(*args, **kwargs)

            monkeypatch.setattr(_checks, name, counted)
    return counts


def qkv(T=5, beta=True):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(2, T, 2, 3, generator=g) for _ in range(3))
    return (q, k, v, torch.rand(2, T, 2, generator=g)) if beta else (q, k, v)


def srwm_args(T=5):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, T, 2, 3, generator=g), *[torch.randn(2, 3, n, generator=g) for n in (3, 3, 3, 4)])


def rdn_args(T=5):
    g = torch.Generator().manual_seed(0)
    return (*qkv(T), *[torch.randn(2, 3, 3, generator=g) for _ in range(3)], torch.randn(2, 3, generator=g))


RESET = torch.tensor([[False, False, True, False, False], [False] * 5])
SEQUENCE, RESET_CHECK = "check_sequence", "check_reset"
CASES = [
    # (name, call, the checks it should make, each once)
    ("srwm checkpointed", lambda: ops.srwm(*srwm_args(), reset=RESET), {"check_srwm_inputs"}),
    ("srwm reference", lambda: ops.srwm(*srwm_args(), reset=RESET, mode="reference"), {"check_srwm_inputs"}),
    ("srwm_reference", lambda: ops.srwm_reference(*srwm_args(), reset=RESET), {"check_srwm_inputs"}),
    ("delta_rule chunk", lambda: ops.delta_rule(*qkv(), reset=RESET), {"check_qkv"}),
    ("delta_rule recurrent", lambda: ops.delta_rule(*qkv(), reset=RESET, mode="recurrent"), {"check_qkv"}),
    ("delta_rule_reference", lambda: ops.delta_rule_reference(*qkv(), reset=RESET), {"check_qkv"}),
    (
        "linear_attention chunk",
        lambda: ops.linear_attention(*qkv(beta=False), reset=RESET, normalize=True),
        {"check_qkv", "check_linear_state"},
    ),
    (
        "linear_attention recurrent",
        lambda: ops.linear_attention(*qkv(beta=False), reset=RESET, mode="recurrent"),
        {"check_qkv", "check_linear_state"},
    ),
    (
        "linear_attention_reference",
        lambda: ops.linear_attention_reference(*qkv(beta=False), reset=RESET),
        {"check_qkv", "check_linear_state"},
    ),
    (
        "recurrent_delta_rule checkpointed",
        lambda: ops.recurrent_delta_rule(*rdn_args(), reset=RESET),
        {"check_recurrent_delta_inputs"},
    ),
    (
        "recurrent_delta_rule reference",
        lambda: ops.recurrent_delta_rule(*rdn_args(), reset=RESET, mode="reference"),
        {"check_recurrent_delta_inputs"},
    ),
    (
        "recurrent_delta_rule_reference",
        lambda: ops.recurrent_delta_rule_reference(*rdn_args(), reset=RESET),
        {"check_recurrent_delta_inputs"},
    ),
]


@pytest.mark.parametrize("call, checks", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_call_validates_its_inputs_once(calls, call, checks):
    call()
    assert dict(calls) == dict.fromkeys(checks | {SEQUENCE, RESET_CHECK}, 1)
