"""examples/rnn_weight_encoders.py end to end at a tiny size, run as a script."""

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_example_runs_end_to_end_at_a_tiny_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "rnn_weight_encoders.py",
            "--out",
            str(tmp_path),
            "--runs",
            "40",
            "--zoo-steps",
            "2",
            "--workers",
            "1",
            "--threads",
            "1",
            "--zoo-set",
            "hidden_size=8,rollouts=2,accept_samples=8,max_n=4,group_size=40",
            "--encoders",
            "interactive,probing,stats",
            "--steps",
            "3",
            "--width",
            "16",
            "--batch-size",
            "8",
            "--probe-steps",
            "5",
        ],
    )
    runpy.run_path(str(ROOT / "examples" / "rnn_weight_encoders.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "| interactive |" in out and "| probing |" in out and "| stats |" in out
    assert "Downstream probes" in out and "| encoder | task | accuracy | checkpoint |" in out
    pytest.importorskip("matplotlib")
    assert (tmp_path / "pca_formal_language.png").stat().st_size > 1000
