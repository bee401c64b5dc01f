"""examples/mbpa_lm.py end to end at a tiny size on a generated PTB corpus: the table, exact resume."""

import math

import torch

from adaptmem.data.text import make_synthetic_corpus
from tests.examples import load_example

LM_TINY = ["--level", "word", "--emb", "8", "--hidden", "16", "--batch-size", "4", "--bptt", "8",
           "--eval-tokens", "120", "--cache-size", "20", "--mem-size", "50", "--k", "4", "8",
           "--lambda-cache", "0.1", "--lambda-mbpa", "0.1", "0.2", "--threads", "1", "--checkpoint-every", "2"]


def test_lm_example_runs_end_to_end_on_a_generated_ptb_corpus(tmp_path, capsys):
    make_synthetic_corpus(tmp_path / "data" / "ptb", "ptb", lines=(80, 20, 20), vocab_size=60)
    example = load_example("mbpa_lm")
    result = example.main(["--data", str(tmp_path / "data"), "--corpus", "ptb", "--steps", "3",  # <--data>/ptb
                           "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), *LM_TINY])
    out = capsys.readouterr().out
    assert "| + cache + MbPA |" in out and (tmp_path / "out" / "ckpt.pt").exists()
    rows = result["rows"]
    assert list(rows) == ["LSTM", "+ cache", "+ MbPA", "+ cache + MbPA"]
    for (lam_c, lam_m, k), ppl in rows.values():
        assert set(ppl) == {"valid", "test"} and all(math.isfinite(v) and v > 1 for v in ppl.values())
    (c, m, k), _ = rows["+ cache + MbPA"]
    assert c == 0.1 and m in (0.1, 0.2) and k in (4, 8)  # chosen from the swept grid
    assert rows["LSTM"][0] == (0.0, 0.0, None)


def test_lm_example_resumes_training_exactly(tmp_path):
    folder = make_synthetic_corpus(tmp_path / "ptb", "ptb", lines=(80, 20, 20), vocab_size=60)
    example = load_example("mbpa_lm")
    common = ["--corpus", str(folder), "--cache-dir", str(tmp_path / "cache"), "--eval-tokens", "20",
              *LM_TINY[:LM_TINY.index("--eval-tokens")], "--k", "4", "--threads", "1", "--checkpoint-every", "2"]
    straight = example.main([*common, "--steps", "4", "--out", str(tmp_path / "a")])["model"]
    example.main([*common, "--steps", "2", "--out", str(tmp_path / "b")])
    resumed = example.main([*common, "--steps", "4", "--out", str(tmp_path / "b"), "--resume"])["model"]
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
