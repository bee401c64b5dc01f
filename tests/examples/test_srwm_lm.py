"""examples/srwm_lm.py end to end at a tiny size: compare, exact resume, sampling, DDP."""

import importlib.util
from pathlib import Path

import pytest
import torch

from adaptmem.utils.checkpoint import read_checkpoint
from tests.examples import load_example, run_torchrun

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "srwm_lm.py"
TINY = [
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
    "--eval-batch-size",
    "2",
    "--eval-tokens",
    "96",
    "--warmup",
    "2",
    "--threads",
    "1",
    "--log-interval",
    "1",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is faster (the example's --threads 1 sets the same)."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTMEM_CACHE", str(tmp_path / "cache"))
    g = torch.Generator().manual_seed(0)
    words = ["thou", "art", "the", "king", "and", "I", "am", "thy", "fool", "\n"]
    text = " ".join(words[int(i)] for i in torch.randint(len(words), (700,), generator=g))
    path = tmp_path / "input.txt"
    path.write_text(text)
    return path


def run_example(monkeypatch, *args: str) -> None:
    load_example("srwm_lm").main(list(args))


def checkpoint(run_dir: Path) -> dict:
    return read_checkpoint(run_dir / "ckpt.pt")


def test_compare_mode_trains_every_kind_at_equal_parameters_and_prints_the_table(corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    run_example(
        monkeypatch,
        "--action",
        "compare",
        "--kinds",
        "transformer,srwm,deltanet",
        "--corpus",
        str(corpus),
        "--max-steps",
        "6",
        "--eval-interval",
        "3",
        "--out",
        str(out),
        *TINY,
    )
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith(("| transformer", "| srwm", "| deltanet"))]
    assert len(rows) == 3 and (out / "compare.md").read_text().count("\n") == 5
    params = [int(r.split("|")[2].replace(",", "")) for r in rows]
    assert max(params) / min(params) < 1.1  # d_ff matched to the Transformer
    for kind in ("transformer", "srwm", "deltanet"):
        assert checkpoint(out / kind)["step"] == 6
        assert len((out / kind / "valid.csv").read_text().splitlines()) == 3  # header + 2 evaluations
        if importlib.util.find_spec("matplotlib"):
            assert (out / kind / "curves.png").stat().st_size > 0


def test_interrupted_run_resumes_bit_for_bit(corpus, tmp_path, monkeypatch):
    args = [
        "--kind",
        "srwm",
        "--corpus",
        str(corpus),
        "--max-steps",
        "8",
        "--eval-interval",
        "4",
        "--dropout",
        "0.1",
        *TINY,
    ]
    run_example(monkeypatch, *args, "--out", str(tmp_path / "straight"))
    run_example(monkeypatch, *args, "--out", str(tmp_path / "pieces"), "--halt-after", "4")
    assert checkpoint(tmp_path / "pieces" / "srwm")["step"] == 4
    run_example(monkeypatch, *args, "--out", str(tmp_path / "pieces"), "--resume")
    a, b = checkpoint(tmp_path / "straight" / "srwm"), checkpoint(tmp_path / "pieces" / "srwm")
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for s, t in zip(a["extra"]["state"][0], b["extra"]["state"][0]):  # the carried fast weights
        assert all(torch.equal(x, y) for x, y in zip(s, t))
    rows = [(tmp_path / d / "srwm" / "train.csv").read_text().splitlines() for d in ("straight", "pieces")]
    assert [r.split(",")[:3] for r in rows[0]] == [r.split(",")[:3] for r in rows[1]]  # step, loss, lr


def test_resume_takes_a_new_step_count_and_refuses_a_new_architecture(corpus, tmp_path, monkeypatch, capsys):
    # The case: --resume --max-steps 40 kept the checkpoint's 20 without a word.
    args = ["--kind", "deltanet", "--corpus", str(corpus), "--eval-interval", "2", "--out", str(tmp_path), *TINY]
    run_example(monkeypatch, *args, "--max-steps", "2")
    capsys.readouterr()
    run_example(monkeypatch, *args, "--max-steps", "4", "--resume")
    assert "resumed at step 2 of 4\n  --max-steps: 2 -> 4" in capsys.readouterr().out
    assert checkpoint(tmp_path / "deltanet")["step"] == 4
    run_example(monkeypatch, *args, "--resume")  # no flag: the checkpoint's 4 holds (done: no steps)
    assert "resumed at step 4 of 4" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"cannot change when resuming: --d-model 32 \(the checkpoint has 16\)"):
        run_example(monkeypatch, *args, "--resume", "--d-model", "32")


def test_sample_mode_generates_from_the_trained_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "runs")
    run_example(monkeypatch, "--kind", "deltanet", "--corpus", str(corpus), "--max-steps", "3", "--out", out, *TINY)
    capsys.readouterr()
    run_example(
        monkeypatch,
        "--action",
        "sample",
        "--kind",
        "deltanet",
        "--out",
        out,
        "--prompt",
        "thou ",
        "--num-tokens",
        "30",
        "--threads",
        "1",
    )
    text = capsys.readouterr().out
    assert text.startswith("thou ") and "30 tokens at" in text
    assert len(text.split("\n\n[")[0]) == len("thou ") + 30  # characters: one per token
    with pytest.raises(SystemExit, match="no checkpoint"):
        run_example(monkeypatch, "--action", "sample", "--kind", "srwm", "--out", out)


def test_two_process_ddp_matches_one_process_with_the_combined_batch(corpus, tmp_path, monkeypatch):
    common = ["--kind", "deltanet", "--corpus", str(corpus), "--max-steps", "4", "--eval-interval", "4", *TINY]
    run_torchrun(EXAMPLE, *common, "--out", str(tmp_path / "ddp"))
    run_example(monkeypatch, *common, "--batch-size", "4", "--eval-batch-size", "2", "--out", str(tmp_path / "one"))
    a, b = checkpoint(tmp_path / "ddp" / "deltanet"), checkpoint(tmp_path / "one" / "deltanet")
    assert len(a["extra"]["state"]) == 2  # each rank's carried state is saved
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4)
    va = (tmp_path / "ddp" / "deltanet" / "valid.csv").read_text().splitlines()[1].split(",")[1]
    vb = (tmp_path / "one" / "deltanet" / "valid.csv").read_text().splitlines()[1].split(",")[1]
    assert float(va) == pytest.approx(float(vb), abs=1e-5)


def test_data_naming_a_corpus_is_read_as_corpus_and_old_checkpoint_configs_load(corpus, capsys):
    lm = load_example("srwm_lm")
    old = lm.parse_args(["--data", str(corpus), "--out_dir", "x"])  # --data was the corpus before
    assert old == lm.parse_args(["--corpus", str(corpus), "--out", "x"])
    err = capsys.readouterr().err
    assert f"reading {corpus} as --corpus" in err and "--out_dir is deprecated, use --out" in err
    folder = corpus.parent / "data"
    (folder / "tinyshakespeare").mkdir(parents=True)
    assert lm.parse_args(["--data", str(folder)]).data == str(folder)  # a data folder: its new meaning
    saved = lm.Config.from_saved({"mode": "train", "out_dir": "runs/x", "data": None, "d_model": 32, "gone": 1})
    assert (saved.action, saved.out, saved.corpus, saved.d_model) == ("train", "runs/x", None, 32)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs the hf extra (transformers)")
def test_export_mode_writes_a_hugging_face_model_that_generates_like_the_checkpoint(corpus, tmp_path, monkeypatch):
    import transformers

    import adaptmem.hf  # noqa: F401  (registers the Auto classes)
    from adaptmem.data.text import Vocab
    from adaptmem.models.lm import generate

    out = str(tmp_path / "runs")
    run_example(monkeypatch, "--kind", "srwm", "--corpus", str(corpus), "--max-steps", "3", "--out", out, *TINY)
    run_example(monkeypatch, "--action", "export", "--kind", "srwm", "--out", out)
    folder = tmp_path / "runs" / "srwm" / "hf"
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    vocab = Vocab.from_json((folder / "adaptmem_vocab.json").read_text())
    module = load_example("srwm_lm")
    trained, _, _ = module.load_model(module.parse_args(["--kind", "srwm", "--out", out]), torch.device("cpu"))
    for k, v in trained.state_dict().items():  # the checkpoint's weights, d_ff matched as in training
        assert torch.equal(model.model.state_dict()[k], v), k
    prompt = torch.tensor([vocab.encode("thou ")])
    got = model.generate(prompt, max_new_tokens=12, do_sample=False)[0, prompt.shape[1] :]
    assert torch.equal(got, generate(trained, prompt, 12, temperature=0)[0])


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="needs the wandb extra")
def test_wandb_flag_logs_the_run_offline(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_example(
        monkeypatch,
        "--kind",
        "deltanet",
        "--corpus",
        str(corpus),
        "--max-steps",
        "2",
        "--eval-interval",
        "2",
        "--out",
        str(tmp_path / "runs"),
        "--wandb",
        "adaptmem-test",
        *TINY,
    )
    import wandb

    wandb.teardown()  # wait for W&B's writer process to finish the offline file
    run_dir = tmp_path / "runs" / "deltanet"
    run_id = (run_dir / "wandb-run-id").read_text().strip()
    (offline,) = run_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    assert b"valid/loss" in offline.read_bytes() and b"train/loss" in offline.read_bytes()
