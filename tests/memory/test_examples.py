"""End-to-end smoke tests of the two MbPA examples at tiny sizes."""

import math

import numpy as np
import pytest
import torch

from adaptmem.data.mnist import write_idx
from adaptmem.data.text import make_synthetic_corpus
from tests.examples import load_benchmark, load_example



def write_fake_digits(folder, n, seed):
    """MNIST test-set IDX files whose class is visible as a bright row, so a few steps learn it."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    images[np.arange(n), 2 + 2 * labels, :] = 255
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)


def test_permuted_mnist_example_runs_end_to_end_on_fake_digits(tmp_path, capsys):
    write_fake_digits(tmp_path, 300, seed=0)
    example = load_example("mbpa_permuted_mnist")
    acc = example.main(["--data-dir", str(tmp_path), "--tasks", "2", "--train-per-task", "200",
                        "--test-per-task", "50", "--hidden", "16", "--k", "8", "--mbpa-steps", "2",
                        "--fisher-samples", "20", "--epochs", "4", "--batch-size", "16", "--lr", "0.01",
                        "--replay", "--out-dir", str(tmp_path / "out"), "--threads", "1"])
    out = capsys.readouterr().out
    assert "| MbPA+replay |" in out and "| EWC |" in out
    assert set(acc) == {"SGD", "EWC", "MbPA", "MbPA+replay"}
    assert all(len(a) == 2 and all(0.0 <= x <= 1.0 for x in a) for a in acc.values())
    assert acc["SGD"][1] > 0.3  # the last task is learnt (chance: 0.1)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out" / "per_task_accuracy.png").stat().st_size > 0


def test_permuted_mnist_example_resumes_exactly_after_an_interruption(tmp_path):
    write_fake_digits(tmp_path, 200, seed=1)
    example = load_example("mbpa_permuted_mnist")
    args = ["--data-dir", str(tmp_path), "--tasks", "3", "--train-per-task", "100", "--test-per-task", "40",
            "--hidden", "16", "--k", "4", "--mbpa-steps", "1", "--fisher-samples", "10", "--batch-size", "16",
            "--threads", "1"]
    whole = example.main(args + ["--out-dir", str(tmp_path / "a")])
    assert example.main(args + ["--out-dir", str(tmp_path / "b"), "--stop-after-task", "1"]) == {}
    resumed = example.main(args + ["--out-dir", str(tmp_path / "b"), "--resume"])
    assert resumed == whole
    with pytest.raises(ValueError, match="different settings"):
        example.main(args[:-2] + ["--hidden", "8", "--out-dir", str(tmp_path / "b"), "--resume"] + args[-2:])


LM_TINY = ["--level", "word", "--emb", "8", "--hidden", "16", "--batch-size", "4", "--bptt", "8",
           "--eval-tokens", "120", "--cache-size", "20", "--mem-size", "50", "--k", "4", "8",
           "--lambda-cache", "0.1", "--lambda-mbpa", "0.1", "0.2", "--threads", "1", "--ckpt-every", "2"]


@pytest.mark.parametrize("layout", ["ptb", "wikitext"])
def test_lm_example_runs_end_to_end_on_a_generated_corpus_in_each_layout(tmp_path, capsys, layout):
    folder = make_synthetic_corpus(tmp_path / layout, layout, lines=(80, 20, 20), vocab_size=60)
    example = load_example("mbpa_lm")
    result = example.main(["--corpus", str(folder), "--steps", "3", "--ckpt", str(tmp_path / "ck.pt"),
                           "--cache-dir", str(tmp_path / "cache"), *LM_TINY])
    out = capsys.readouterr().out
    assert "| + cache + MbPA |" in out
    rows = result["rows"]
    assert list(rows) == ["LSTM", "+ cache", "+ MbPA", "+ cache + MbPA"]
    for (lam_c, lam_m, cfg), ppl in rows.values():
        assert set(ppl) == {"valid", "test"}
        assert all(math.isfinite(p) and p > 1 and tps > 0 for p, tps in ppl.values())
    (c, m, (k, t, a)), _ = rows["+ cache + MbPA"]
    assert c == 0.1 and m in (0.1, 0.2) and k in (4, 8) and (t, a) == (1, 0.15)  # chosen from the swept grid
    assert rows["LSTM"][0] == (0.0, 0.0, None)


def test_lm_example_resumes_an_interrupted_evaluation_exactly(tmp_path, capsys):
    folder = make_synthetic_corpus(tmp_path / "ptb", "ptb", lines=(80, 20, 20), vocab_size=60)
    example = load_example("mbpa_lm")
    common = ["--corpus", str(folder), "--steps", "3", "--cache-dir", str(tmp_path / "cache"), *LM_TINY,
              "--mbpa-lr", "0.15", "0.5", "--mbpa-steps", "1", "2", "--log-every", "0"]
    whole = example.main([*common, "--ckpt", str(tmp_path / "a" / "ck.pt")])["rows"]
    assert "eval valid: segment" in capsys.readouterr().out  # progress lines without a terminal
    run = [*common, "--ckpt", str(tmp_path / "b" / "ck.pt")]
    assert example.main([*run, "--stop-after-segments", "9"])["rows"] is None  # inside valid (15 segments)
    assert example.main([*run, "--resume", "--stop-after-segments", "9"])["rows"] is None  # inside test
    assert "resuming the evaluation" in capsys.readouterr().out
    resumed = example.main([*run, "--resume"])["rows"]
    assert resumed.keys() == whole.keys()
    for name in whole:
        (best_w, ppl_w), (best_r, ppl_r) = whole[name], resumed[name]
        assert best_w == best_r and {s: p for s, (p, _) in ppl_w.items()} == {s: p for s, (p, _) in ppl_r.items()}
    state = next((tmp_path / "b").glob("eval-*.pt"))
    with pytest.raises(ValueError, match="different settings"):
        example.main([*run, "--resume", "--cache-size", "21", "--eval-state", str(state)])


def test_lm_example_resumes_training_exactly(tmp_path):
    folder = make_synthetic_corpus(tmp_path / "ptb", "ptb", lines=(80, 20, 20), vocab_size=60)
    example = load_example("mbpa_lm")
    common = ["--corpus", str(folder), "--cache-dir", str(tmp_path / "cache"), "--eval-tokens", "20",
              *LM_TINY[:LM_TINY.index("--eval-tokens")], "--k", "4", "--threads", "1", "--ckpt-every", "2"]
    straight = example.main([*common, "--steps", "4", "--ckpt", str(tmp_path / "a.pt")])["model"]
    example.main([*common, "--steps", "2", "--ckpt", str(tmp_path / "b.pt")])
    resumed = example.main([*common, "--steps", "4", "--ckpt", str(tmp_path / "b.pt"), "--resume"])["model"]
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_memory_benchmark_quick_mode_prints_both_tables(capsys):
    bench = load_benchmark("bench_memory")
    bench.main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    assert "(a) kNN search" in out and "(b) MbPA" in out and "(c) MbPA, LM configuration" in out
    assert "MISMATCH" not in out and "MbPA linear vs generic" in out
