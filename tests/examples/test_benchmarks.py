"""Smoke runs of the benchmark scripts (--quick): each prints its ratio table."""

import pytest

from tests.examples import load_benchmark


def test_fewshot_benchmark_quick_prints_the_ratio_table(capsys):
    pytest.importorskip("PIL")
    load_benchmark("bench_fewshot").main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    for model in ("srwm", "deltanet", "lstm"):
        assert f"| {model} |" in out
    assert "| lstm |" in out and "1.00x / 1.00x |" in out


def test_memory_benchmark_quick_mode_prints_its_three_tables(capsys):
    load_benchmark("bench_memory").main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    assert "(a) kNN search" in out and "(b) MbPA" in out and "(c) MbPA, LM configuration" in out
    assert "MISMATCH" not in out and "MbPA linear vs generic" in out


def test_weights_benchmark_quick_mode_prints_both_tables(capsys):
    load_benchmark("bench_weights").main(["--quick"])
    out = capsys.readouterr().out
    assert "functional_rnn over 8 LSTMs" in out and "speed-up" in out and "GEMM floor" in out
    assert "1 torch thread(s)" in out
    rows = [line for line in out.splitlines() if line.startswith(("| 1 | forward |", "| 8 | fwd+bwd |"))]
    assert len(rows) == 2 and all(line.count("x |") >= 2 for line in rows)
    assert "batched unit of 16" in out


def test_weights_benchmark_cuda_path_refuses_a_machine_without_cuda_and_bad_devices(monkeypatch, capsys):
    import torch

    bench = load_benchmark("bench_weights")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda, but torch sees no CUDA device"):
        bench.main(["--quick", "--device", "cuda"])
    monkeypatch.setattr("sys.argv", ["bench_weights.py"])
    with pytest.raises(SystemExit):
        bench.main(["--device", "tpu"])
    assert "argument --device: invalid choice: 'tpu'" in capsys.readouterr().err


def test_rl_benchmark_times_registered_cores_and_refuses_others_by_flag(monkeypatch):
    from adaptmem.rl import CORES

    bench = load_benchmark("bench_rl")
    assert set(bench.PAPER_CORES) <= set(CORES)  # its torch-free default list
    monkeypatch.setattr("sys.argv", ["bench_rl.py"])
    with pytest.raises(SystemExit, match=r"argument --kinds: invalid choice: 'gru'"):
        bench.main(["--kinds", "lstm", "gru", "--quick"])
