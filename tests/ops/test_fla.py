"""The fla adapter's one-time check: an fla that disagrees with our reference, or fails, stays out of "auto".

fla itself is stood in for by stubs, so this runs without fla and without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from adaptmem.ops import _fla
from adaptmem.ops.delta_rule.reference import delta_rule_reference


class _StubFla:
    """fla stand-ins with our contract: the reference itself, a wrong one, and a broken one."""

    @staticmethod
    def good(q, k, v, beta, h0):
        return delta_rule_reference(q, k, v, beta, initial_state=h0)

    @staticmethod
    def wrong_scale(q, k, v, beta, h0):  # what calling fla with its default q scale would give
        return delta_rule_reference(q * q.shape[-1] ** -0.5, k, v, beta, initial_state=h0)

    @staticmethod
    def broken(q, k, v, beta, h0):
        raise RuntimeError("0 active drivers")


@pytest.mark.parametrize("stub, passes", [("good", True), ("wrong_scale", False), ("broken", False)])
def test_fla_gate_keeps_a_disagreeing_or_failing_fla_out(monkeypatch, stub, passes):
    monkeypatch.setattr(_fla, "_fla_op", lambda op, mode: getattr(_StubFla, stub))
    _fla.fla_passes_check.cache_clear()
    try:
        if passes:
            rng = torch.get_rng_state()
            with torch.no_grad():  # the first auto call may come from inference code
                assert _fla.fla_passes_check("delta_rule", "chunk", torch.float32, 8, 8, "cpu")
            assert torch.equal(rng, torch.get_rng_state())  # the user's random stream is untouched
        else:
            with pytest.warns(UserWarning, match="flash-linear-attention delta_rule"):
                assert not _fla.fla_passes_check("delta_rule", "chunk", torch.float32, 8, 8, "cpu")
    finally:
        _fla.fla_passes_check.cache_clear()
