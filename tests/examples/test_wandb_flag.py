"""Every example that logs metrics takes ``--wandb PROJECT`` and hands it to its MetricLogger."""

from __future__ import annotations

import sys

import pytest

from tests.examples import load_example


def parse(name: str, argv: list[str], monkeypatch):
    """The example's parsed flags (two examples read sys.argv, two take argv)."""
    module = load_example(name)
    try:
        if name in ("srwm_fewshot", "srwm_procgen"):
            return module.parse_args(argv)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
        return module.parse_args()
    finally:
        sys.modules.pop(f"example_{name}", None)


@pytest.mark.parametrize("name", ["srwm_lm", "srwm_fewshot", "srwm_procgen", "rnn_weight_encoders"])
def test_examples_that_log_take_the_wandb_flag(name, monkeypatch):
    assert not parse(name, [], monkeypatch).wandb  # off by default
    assert parse(name, ["--wandb", "my-project"], monkeypatch).wandb == "my-project"


def test_train_emulation_needs_a_log_dir_for_wandb():
    from adaptmem.weights.training import EmulationConfig, train_emulation

    with pytest.raises(ValueError, match="wandb needs a log_dir"):
        train_emulation(None, None, None, EmulationConfig(), wandb="p")
