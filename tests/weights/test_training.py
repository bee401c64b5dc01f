import numpy as np
import pytest
import torch

from adaptmem.weights import (
    DownstreamProbe,
    EmulationConfig,
    Emulator,
    build_encoder,
    emulation_loss,
    encode,
    evaluate_emulation,
    pca,
    train_emulation,
)
from adaptmem.weights.zoo import ZooDataset


def test_emulator_shape_and_paper_size():
    emu = Emulator(6, 6)
    assert 1.05e6 < sum(p.numel() for p in emu.parameters()) < 1.07e6  # "about 1.06M"
    assert emu(torch.zeros(3, 9, 6), torch.randn(3, 16)).shape == (3, 9, 6)
    with pytest.raises(ValueError, match="Emulator: inputs must be"):
        emu(torch.zeros(3, 9, 5), torch.randn(3, 16))


def test_emulator_sees_z_only_at_the_first_position():
    torch.manual_seed(0)
    emu = Emulator(4, 3, z_dim=2, hidden=8, num_layers=1)
    x = torch.randn(1, 5, 4)
    z = torch.randn(1, 2, requires_grad=True)
    logits = emu(x, z)
    assert not torch.equal(logits, emu(x, z + 1))  # z changes every later step through the LSTM state
    e = emu.inp(x)
    e2 = torch.cat([e[:, :1] + emu.cond(z).unsqueeze(1), e[:, 1:]], 1)
    torch.testing.assert_close(logits, emu.out(emu.lstm(e2)[0]))


def test_emulation_losses_known_values():
    p = torch.log(torch.tensor([[[0.5, 0.5, 0.0 + 1e-30]]]))
    logits = torch.log(torch.tensor([[[0.25, 0.25, 0.5]]]))
    assert emulation_loss(logits, p, "tv").item() == pytest.approx(0.5)
    q = torch.tensor([0.25, 0.25, 0.5])
    assert emulation_loss(p.clamp_min(-60), p.clamp_min(-60), "reverse_kl").item() == pytest.approx(0, abs=1e-6)
    p2 = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    kl = (q * (q.log() - p2[0, 0].exp().log())).sum()
    assert emulation_loss(logits, p2, "reverse_kl").item() == pytest.approx(kl.item(), rel=1e-5)
    assert emulation_loss(logits, logits, "tv", reduction="none").shape == (1, 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        emulation_loss(logits, p, "forward")


def _train(zoo, steps, ckpt=None, name="probing"):
    torch.manual_seed(0)
    train = ZooDataset(zoo, "train")
    kw = {"probing": dict(num_probes=2, probe_len=4, hidden=16), "flat": dict(hidden=16)}[name]
    enc = build_encoder(name, train.spec, **kw)
    emu = Emulator(6, 6, hidden=16, num_layers=1)
    cfg = EmulationConfig(steps=steps, batch_size=8, lr=3e-3, clip=1.0, eval_every=5, save_every=5, eval_rollouts=1)
    hist = train_emulation(enc, emu, train, cfg, valid=ZooDataset(zoo, "valid"), checkpoint=ckpt, show_progress=False)
    return enc, emu, hist


def test_joint_training_lowers_the_emulation_loss(tiny_zoo):
    enc, emu, hist = _train(tiny_zoo, 30)
    valid = ZooDataset(tiny_zoo, "valid")
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["valid_loss"] == pytest.approx(evaluate_emulation(enc, emu, valid, rollouts=1))
    z = encode(enc, valid)
    assert z.shape == (len(valid), 16) and torch.allclose(z.norm(dim=1), torch.ones(len(valid)))


def test_training_resumes_exactly_from_its_checkpoint(tiny_zoo, tmp_path):
    enc_a, emu_a, hist_a = _train(tiny_zoo, 10, name="flat")  # uninterrupted, with augmentation
    _train(tiny_zoo, 5, tmp_path / "ck.pt", name="flat")  # "killed" after 5 steps
    cfg_steps = 10
    enc_b, emu_b, hist_b = _train(tiny_zoo, cfg_steps, tmp_path / "ck.pt", name="flat")  # restarted
    for a, b in zip(
        list(enc_a.parameters()) + list(emu_a.parameters()), list(enc_b.parameters()) + list(emu_b.parameters())
    ):
        assert torch.equal(a, b)
    assert [r["step"] for r in hist_b] == [5, 10] and hist_b[-1] == hist_a[-1]


def test_downstream_probe_fits_separable_targets_and_reports_accuracy_and_r2():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(600, 8, generator=g)
    y_cls = np.stack([(z[:, 0] > 0).long().numpy(), (z[:, 1] > 0.5).long().numpy() * 2], 1)  # 2 targets, 3 classes
    y_reg = (2 * z[:, 2] - z[:, 3]).numpy()
    cls = DownstreamProbe.fit(z[:500], y_cls[:500], "classification", steps=300)
    reg = DownstreamProbe.fit(z[:500], y_reg[:500], "regression", steps=300)
    assert cls.num_classes == 3 and cls(z[:2]).shape == (2, 2, 3)
    assert cls.score(z[500:], y_cls[500:]) > 0.9
    assert reg.score(z[500:], y_reg[500:]) > 0.9
    assert reg.score(z[500:], np.random.default_rng(0).normal(size=100)) < 0.1  # unrelated targets
    with pytest.raises(ValueError, match="non-negative integers"):
        DownstreamProbe.fit(z, -np.ones(600, dtype=np.int64), "classification")


def test_pca_orders_components_by_variance():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 4, generator=g) * torch.tensor([0.1, 5.0, 1.0, 0.01])
    xy = pca(z)
    assert xy.shape == (500, 2) and xy[:, 0].var() > xy[:, 1].var() > 0.5
