import json

import numpy as np
import pytest
import torch

from adaptmem.data.mnist import write_idx
from adaptmem.weights import WeightSpec
from adaptmem.weights.zoo import ZooConfig, ZooDataset, generate_zoo, geometric_checkpoints, split_runs
from adaptmem.weights.zoo import formal_language as fl
from adaptmem.weights.zoo import smnist as sm
from adaptmem.weights.zoo.generate import ZooInterrupted

from .conftest import TINY

ARRAYS = ["weights", "log_probs", "tokens", "accuracy", "valid_loss", "step", "run", "checkpoint", "task_id", "task"]


def _read(root):
    meta = json.loads((root / "meta.json").read_text())
    return {name: np.load(root / f"{name}.npy") for name in meta["arrays"]}


def test_geometric_schedule_matches_the_paper_at_20k_steps():
    assert geometric_checkpoints(20000) == [0, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
    assert geometric_checkpoints(1000) == [0, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert geometric_checkpoints(12, 3) == [0, 10, 12]
    assert ZooConfig(steps=10).checkpoint_steps == [0, 1, 2, 5, 10] and ZooConfig(steps=10).num_checkpoints == 5


def test_sampled_strings_are_accepted_and_corruptions_are_not():
    g = torch.Generator().manual_seed(0)
    m = fl.task_table()[torch.tensor([0, 57, 129, 215])]
    tok = fl.sample_strings(m, 50, 6, g)
    assert tok.shape == (4, 50, fl.seq_len(6) + 1) and (tok[..., 0] == fl.BOS).all()
    assert fl.accepts(tok[..., 1:], m.unsqueeze(1), 6).all()
    assert not fl.accepts(tok[..., 1:], m.roll(1, 0).unsqueeze(1), 6).any()  # another task's language
    bad = tok.clone()
    bad[..., 1] = 3  # 'd' before 'a'
    assert not fl.accepts(bad[..., 1:], m.unsqueeze(1), 6).any()
    no_eos = torch.zeros(1, 10, dtype=torch.long)
    assert not fl.accepts(no_eos, m[:1], 6).any()


def test_task_split_holds_out_the_most_balanced_tasks():
    split = split_runs("formal_language", {"task_id": np.arange(216)})
    assert [(split == s).sum() for s in ("train", "valid", "ood")] == [151, 32, 33]
    assert split[fl.TASKS.index((0, 0, 0))] == "ood" and split[fl.TASKS.index((-3, 2, -3))] != "ood"
    angles = np.linspace(0, 359, 100)
    s2 = split_runs("smnist", {"angle": angles})
    assert (angles[s2 == "ood"] >= 306).all() and (s2 == "valid").sum() == 15


def test_tiny_zoo_layout_and_dataset(tiny_zoo):
    cfg = ZooConfig(**TINY)
    arrays = _read(tiny_zoo)
    E = cfg.num_runs * cfg.num_checkpoints
    spec = cfg.spec
    assert sorted(arrays) == sorted(ARRAYS)
    assert arrays["weights"].shape == (E, spec.num_params)
    assert arrays["log_probs"].shape == (E, 3, fl.seq_len(4), fl.VOCAB)
    assert np.allclose(np.exp(arrays["log_probs"]).sum(-1), 1, atol=1e-5)
    assert arrays["step"].tolist()[:3] == [0, 10, 12] and arrays["run"].tolist()[:4] == [0, 0, 0, 1]
    assert ((arrays["accuracy"] >= 0) & (arrays["accuracy"] <= 1)).all()
    # weights change during training; step-0 weights differ between runs
    w = arrays["weights"].reshape(cfg.num_runs, cfg.num_checkpoints, -1)
    assert np.abs(w[:, 0] - w[:, -1]).max() > 0 and np.abs(w[0, 0] - w[1, 0]).max() > 0
    # the training signal decreases the held-out loss on average
    vl = arrays["valid_loss"].reshape(cfg.num_runs, -1)
    assert vl[:, -1].mean() < vl[:, 0].mean()

    splits = {s: ZooDataset(tiny_zoo, s) for s in ("train", "valid", "ood")}
    assert sum(len(d) for d in splits.values()) == E
    runs = {s: set(d.labels()["run"].tolist()) for s, d in splits.items()}
    assert not (runs["train"] & runs["valid"]) and not (runs["train"] & runs["ood"])
    d = splits["train"]
    assert d.spec == spec and isinstance(d.arrays["weights"], np.memmap)
    b = d.sample(5, torch.Generator().manual_seed(0))
    assert b["weights"].shape == (5, spec.num_params) and b["inputs"].shape == (5, fl.seq_len(4), 6)
    # inputs are the one-hot rollout tokens, starting with BOS
    assert (b["inputs"][:, 0].argmax(-1) == fl.BOS).all() and torch.allclose(
        b["inputs"].sum(-1), torch.ones(5, fl.seq_len(4))
    )
    item = d[0]
    assert item["inputs"].shape == (3, fl.seq_len(4), 6) and item["task"].shape == (3,)
    assert ZooDataset(tiny_zoo, "all", steps=[12]).labels()["step"].tolist() == [12] * cfg.num_runs


def test_stored_log_probs_are_the_networks_own_distributions(tiny_zoo):
    from adaptmem.weights import functional_rnn

    d = ZooDataset(tiny_zoo, "all")
    b = d.batch(np.arange(6), np.array([0, 1, 2, 0, 1, 2]))
    logp = torch.log_softmax(functional_rnn(d.spec, b["weights"], b["inputs"]), -1)
    torch.testing.assert_close(logp, b["log_probs"], atol=1e-5, rtol=0)


def test_killed_and_restarted_generation_equals_an_uninterrupted_run(tmp_path):
    cfg = ZooConfig(**{**TINY, "num_runs": 6, "group_size": 3})
    generate_zoo(tmp_path / "full", cfg, show_progress=False)
    with pytest.raises(ZooInterrupted):  # unit 1 dies at step 8: unit 0 is done, unit 1 has a step-5 checkpoint
        generate_zoo(tmp_path / "resumed", cfg, show_progress=False, _interrupt=(1, 8))
    assert (tmp_path / "resumed" / "shards" / "unit_00000.pt").exists()
    assert (tmp_path / "resumed" / "work" / "unit_00001.ckpt").exists()
    assert not (tmp_path / "resumed" / "meta.json").exists()
    generate_zoo(tmp_path / "resumed", cfg, show_progress=False)
    full, resumed = _read(tmp_path / "full"), _read(tmp_path / "resumed")
    for name in full:
        assert np.array_equal(full[name], resumed[name]), name
    assert not (tmp_path / "resumed" / "work").exists()
    with pytest.raises(ValueError, match="different config"):
        generate_zoo(tmp_path / "resumed", ZooConfig(**{**TINY, "num_runs": 7}), show_progress=False)


def test_process_pool_gives_the_same_zoo_as_one_process(tmp_path, tiny_zoo):
    cfg = ZooConfig(**{**TINY, "num_runs": 4, "group_size": 2})
    generate_zoo(tmp_path / "pool", cfg, workers=2, show_progress=False)
    generate_zoo(tmp_path / "single", cfg, workers=1, show_progress=False)
    pool, single = _read(tmp_path / "pool"), _read(tmp_path / "single")
    for name in pool:
        assert np.array_equal(pool[name], single[name]), name


def _fake_mnist(folder, n=60, seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, y in enumerate(labels):  # a class-dependent bar, so the task is learnable
        images[i, 2 + 2 * y : 5 + 2 * y, 4:24] = 255
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)


def test_tiny_smnist_zoo_from_idx_files(tmp_path):
    _fake_mnist(tmp_path / "mnist")
    cfg = ZooConfig(
        kind="smnist",
        num_runs=4,
        steps=6,
        checkpoints=2,
        group_size=4,
        batch_size=8,
        hidden_size=8,
        rollouts=2,
        eval_images=10,
        data_dir=str(tmp_path / "mnist"),
    )
    generate_zoo(tmp_path / "zoo", cfg, show_progress=False)
    d = ZooDataset(tmp_path / "zoo", "all")
    assert d.spec == WeightSpec("lstm", 16, 8, 2, 10)
    lab = d.labels()
    assert set(lab) >= {"angle", "weight_decay", "accuracy", "train_accuracy", "generalisation_gap", "step"}
    assert np.isin(lab["weight_decay"], np.float32([0.0, 0.001, 0.01, 0.1])).all()
    b = d.batch(np.arange(4), np.array([0, 1, 0, 1]))
    assert b["inputs"].shape == (4, 50, 16) and b["log_probs"].shape == (4, 50, 10)
    assert (b["inputs"][:, 0] == 0).all()  # the BOS tile


def test_mnist_accuracy_is_computed_over_every_evaluation_chunk(tmp_path, monkeypatch):
    from adaptmem.weights.functional import BatchedRNN
    from adaptmem.weights.zoo import generate

    _fake_mnist(tmp_path / "mnist", n=60)
    cfg = ZooConfig(
        kind="smnist", num_runs=2, hidden_size=8, rollouts=2, eval_images=0, data_dir=str(tmp_path / "mnist")
    )
    plan = {k: v[:2] for k, v in generate.plan_runs(cfg).items()}
    problem = generate._SequentialMNIST(cfg, plan, torch.Generator(), torch.Generator().manual_seed(1))
    nets = BatchedRNN(cfg.spec, cfg.spec.init_vectors(2, torch.Generator().manual_seed(0)) * 4)
    whole_acc, whole_loss = problem._evaluate(nets, problem.eval_x, problem.eval_y)
    monkeypatch.setattr(generate, "EVAL_CHUNK", 5)  # 12 held-out digits -> chunks of 5, 5, 2
    acc, loss = problem._evaluate(nets, problem.eval_x, problem.eval_y)
    assert len(problem.eval_x) == 12
    torch.testing.assert_close(acc, whole_acc)
    torch.testing.assert_close(loss, whole_loss)
    assert ((acc * 12).round() - acc * 12).abs().max() < 1e-5  # a fraction of all 12 digits


def test_tiles_and_rotation():
    img = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    img[0, 0, 0:4, 4:8] = 255  # exactly tile (row 0, col 1)
    t = sm.rotated_tiles(img, torch.tensor([0.0]))
    assert t.shape == (1, 1, 50, 16) and torch.allclose(t[0, 0, 2], torch.ones(16))
    assert t[0, 0].sum().item() == pytest.approx(16)
    r = sm.rotated_tiles(img, torch.tensor([180.0]))
    assert torch.allclose(r[0, 0, 1 + 48 - 1], torch.ones(16), atol=1e-4)  # tile (6, 5)


@pytest.mark.data
def test_real_mnist_smnist_zoo_learns(shared_data, tmp_path):
    cfg = ZooConfig(
        kind="smnist",
        num_runs=2,
        steps=100,
        checkpoints=2,
        group_size=2,
        hidden_size=16,
        rollouts=2,
        eval_images=200,
        data_dir=str(shared_data / "mnist"),
        seed=1,
    )
    generate_zoo(tmp_path, cfg, show_progress=False)
    acc = np.load(tmp_path / "accuracy.npy").reshape(2, 2)
    loss = np.load(tmp_path / "valid_loss.npy").reshape(2, 2)
    assert (loss[:, 1] < loss[:, 0]).all() and (acc[:, 1] > 0.18).all()  # chance is 0.1; 100 steps only


def test_bad_configs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        ZooConfig(kind="cifar")
    with pytest.raises(ValueError, match="max_n must be an int >= 4"):
        ZooConfig(max_n=2)
    with pytest.raises(ValueError, match="num_runs must be a positive int"):
        ZooConfig(num_runs=0)
    with pytest.raises(FileNotFoundError, match="meta.json not found"):
        ZooDataset(tmp_path)
    cfg = ZooConfig.paper("smnist")
    assert (cfg.num_runs, cfg.steps, cfg.rollouts, cfg.checkpoint_steps[1]) == (1000, 20000, 100, 100)
    assert cfg.lr_at(10000) == pytest.approx(0.003) and cfg.lr_at(20000) == pytest.approx(0.0003)
