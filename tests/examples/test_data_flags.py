"""A fresh user's first runs: an example whose data is missing says how to get it (no traceback),
and --download fetches the data set into --data (a file:// mirror stands in for the network)."""

import hashlib
import subprocess
import sys

import pytest

from adaptmem.data import text as text_mod
from tests.examples import EXAMPLES, load_example

MISSING = [  # script, flags for a tiny run, what the message names
    ("srwm_lm.py", ["--max-steps", "1"], "Tiny Shakespeare"),
    ("mbpa_lm.py", ["--steps", "1"], "Tiny Shakespeare"),
    ("mbpa_permuted_mnist.py", [], "MNIST's t10k-images-idx3-ubyte"),
    ("srwm_fewshot.py", ["--steps", "1"], "Omniglot's images_background_small1.zip"),
    ("rnn_weight_encoders.py", ["--zoo", "smnist", "--runs", "2"], "MNIST's t10k-images-idx3-ubyte"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, flags, what", MISSING, ids=[m[0] for m in MISSING])
def test_missing_data_ends_with_the_flags_to_use_not_a_traceback(tmp_path, script, flags, what):
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / script),
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--threads",
            "1",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: ") and what in last
    assert "--download" in last and "--data" in last and "shared" not in last


def test_download_fetches_tiny_shakespeare_into_the_data_folder(tmp_path, monkeypatch, capsys):
    src = tmp_path / "mirror" / "input.txt"
    src.parent.mkdir()
    src.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    monkeypatch.setitem(
        text_mod.KNOWN_CORPORA,
        "tinyshakespeare",
        text_mod.KnownCorpus(
            "Tiny Shakespeare", "input.txt", (src.as_uri(),), hashlib.sha256(src.read_bytes()).hexdigest()
        ),
    )
    example = load_example("srwm_lm")
    example.main(
        [
            "--data",
            str(tmp_path / "data"),
            "--download",
            "--out",
            str(tmp_path / "out"),
            "--kind",
            "deltanet",
            "--num-layers",
            "1",
            "--d-model",
            "16",
            "--num-heads",
            "2",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--max-steps",
            "2",
            "--warmup",
            "1",
            "--eval-interval",
            "2",
            "--eval-tokens",
            "64",
            "--threads",
            "1",
        ]
    )
    assert (tmp_path / "data" / "tinyshakespeare" / "input.txt").read_bytes() == src.read_bytes()
    assert "Corpus(" in capsys.readouterr().out


def test_srwm_lm_reads_data_as_the_old_corpus_flag_only_when_it_names_a_corpus(tmp_path):
    lm = load_example("srwm_lm")
    (tmp_path / "one.txt").write_text("abc\n")
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text("a b\n")
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    assert lm._names_a_corpus(str(tmp_path / "one.txt")) and lm._names_a_corpus(str(tmp_path / "ptb"))
    assert lm._names_a_corpus("wikitext:wikitext-2-raw-v1")
    assert not lm._names_a_corpus(str(tmp_path / "data"))  # a data folder
    assert not lm._names_a_corpus(str(tmp_path / "not-yet"))  # a data folder --download will fill
    cfg = lm.parse_args(["--data", str(tmp_path / "not-yet"), "--download"])
    assert (cfg.data, cfg.corpus, cfg.download) == (str(tmp_path / "not-yet"), "tinyshakespeare", True)
