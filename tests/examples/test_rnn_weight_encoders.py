import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script, args, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / script), run_name="__main__")


def test_example_runs_end_to_end_at_a_tiny_size(tmp_path, monkeypatch, capsys):
    _run("examples/rnn_weight_encoders.py", [
        "--out-dir", str(tmp_path), "--runs", "40", "--zoo-steps", "2", "--workers", "1", "--threads", "1",
        "--zoo-set", "hidden_size=8,rollouts=2,accept_samples=8,max_n=4,group_size=40",
        "--encoders", "interactive,probing,stats", "--steps", "3", "--width", "16", "--batch-size", "8", "--probe-steps", "5",
    ], monkeypatch)
    out = capsys.readouterr().out
    assert "| interactive |" in out and "| probing |" in out and "| stats |" in out
    assert "Downstream probes" in out and "| encoder | task | accuracy | checkpoint |" in out
    pytest.importorskip("matplotlib")
    assert (tmp_path / "pca_formal_language.png").stat().st_size > 1000


def test_benchmark_quick_mode_prints_both_tables(monkeypatch, capsys):
    _run("benchmarks/bench_weights.py", ["--quick"], monkeypatch)
    out = capsys.readouterr().out
    assert "functional_rnn over 8 LSTMs" in out and "speed-up" in out
    assert "batched unit of 16" in out
