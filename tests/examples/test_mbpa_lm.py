"""examples/mbpa_lm.py end to end at a tiny size on a generated PTB corpus: the table, exact resume."""

import math

import pytest
import torch

from adaptmem.data.text import make_synthetic_corpus
from tests.examples import load_example

LM_TINY = [
    "--level",
    "word",
    "--emb",
    "8",
    "--hidden",
    "16",
    "--batch-size",
    "4",
    "--bptt",
    "8",
    "--eval-tokens",
    "120",
    "--cache-size",
    "20",
    "--mem-size",
    "50",
    "--k",
    "4",
    "8",
    "--lambda-cache",
    "0.1",
    "--lambda-mbpa",
    "0.1",
    "0.2",
    "--threads",
    "1",
    "--checkpoint-every",
    "2",
]


@pytest.mark.parametrize("layout", ["ptb", "wikitext"])
def test_lm_example_runs_end_to_end_on_a_generated_corpus_in_each_layout(tmp_path, capsys, layout):
    make_synthetic_corpus(tmp_path / "data" / layout, layout, lines=(80, 20, 20), vocab_size=60)
    example = load_example("mbpa_lm")
    result = example.main(
        [
            "--data",
            str(tmp_path / "data"),
            "--corpus",
            layout,
            "--steps",
            "3",  # <--data>/<layout>
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            *LM_TINY,
        ]
    )
    out = capsys.readouterr().out
    assert "| + cache + MbPA |" in out and (tmp_path / "out" / "ckpt.pt").exists()
    rows = result["rows"]
    assert list(rows) == ["LSTM", "+ cache", "+ MbPA", "+ cache + MbPA"]
    for _, ppl in rows.values():
        assert set(ppl) == {"valid", "test"}
        assert all(math.isfinite(p) and p > 1 and tps > 0 for p, tps in ppl.values())
    (c, m, (k, t, a)), _ = rows["+ cache + MbPA"]
    assert c == 0.1 and m in (0.1, 0.2) and k in (4, 8) and (t, a) == (1, 0.15)  # chosen from the swept grid
    assert rows["LSTM"][0] == (0.0, 0.0, None)


def test_lm_example_resumes_an_interrupted_evaluation_exactly(tmp_path, capsys):
    folder = make_synthetic_corpus(tmp_path / "ptb", "ptb", lines=(80, 20, 20), vocab_size=60)
    example = load_example("mbpa_lm")
    common = [
        "--corpus",
        str(folder),
        "--steps",
        "3",
        "--cache-dir",
        str(tmp_path / "cache"),
        *LM_TINY,
        "--mbpa-lr",
        "0.15",
        "0.5",
        "--mbpa-steps",
        "1",
        "2",
        "--log-every",
        "1e-9",
    ]
    whole = example.main([*common, "--out", str(tmp_path / "a")])["rows"]
    assert "eval valid: " in capsys.readouterr().err  # progress lines without a terminal
    run = [*common, "--out", str(tmp_path / "b")]
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
    common = [
        "--corpus",
        str(folder),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--eval-tokens",
        "20",
        *LM_TINY[: LM_TINY.index("--eval-tokens")],
        "--k",
        "4",
        "--threads",
        "1",
        "--checkpoint-every",
        "2",
    ]
    straight = example.main([*common, "--steps", "4", "--out", str(tmp_path / "a")])["model"]
    example.main([*common, "--steps", "2", "--out", str(tmp_path / "b")])
    resumed = example.main([*common, "--steps", "4", "--out", str(tmp_path / "b"), "--resume"])["model"]
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
