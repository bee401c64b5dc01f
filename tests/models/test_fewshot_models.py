import re

import pytest
import torch

from adaptmem.data.fewshot import Episode
from adaptmem.models import (
    Conv4,
    ResNet12,
    SequentialFewShotLearner,
    accuracy_by_shot,
    build_fewshot_learner,
    episode_loss,
    occurrence_index,
)
from tests.data.fewshot_fakes import one_thread  # noqa: F401

KINDS = ["srwm", "deltanet", "linear", "recurrent_deltanet", "lstm"]
ATOL = 1e-5
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(model="srwm", num_classes=5, **kw):
    kw = {"d_model": 16, "num_layers": 2, "num_heads": 2, "d_ff": 32, **kw}
    return build_fewshot_learner(
        model, num_classes=num_classes, in_channels=1, image_size=16, conv_channels=4, **kw
    ).eval()


def episode(B=2, N=3, K=2, Q=2, size=16):
    sy = torch.stack([torch.arange(N).repeat(K)[torch.randperm(N * K)] for _ in range(B)])
    qy = torch.stack([torch.arange(N).repeat(Q)[torch.randperm(N * Q)] for _ in range(B)])
    return Episode(torch.rand(B, N * K, 1, size, size), sy, torch.rand(B, N * Q, 1, size, size), qy)


@pytest.mark.parametrize("channels,size,expected", [(64, 28, 64), (32, 84, 800), (32, 32, 128)])
def test_conv4_feature_sizes_match_the_paper(channels, size, expected):
    net = Conv4(3 if size != 28 else 1, channels)
    assert net.out_features(size) == expected
    assert net(torch.rand(2, net.in_channels, size, size)).shape == (2, expected)


def test_resnet12_gives_256_features_at_any_size():
    net = ResNet12(3)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 256) and net.out_features(84) == 256


@pytest.mark.parametrize("kind", KINDS)
def test_parallel_queries_equal_one_sequence_per_query(kind):
    net, ep = tiny(kind), episode()
    logits = net(ep.support_x, ep.support_y, ep.query_x)
    assert logits.shape == (2, 6, 5)
    S = ep.support_y.shape[1]
    with torch.no_grad():
        feats = net.encode(torch.cat([ep.support_x, ep.query_x], 1))
        h_s = net._inputs(feats[:, :S], ep.support_y)
        h_q = net._inputs(feats[:, S:], None)
        for j in range(ep.query_x.shape[1]):
            out, _ = net.seq(torch.cat([h_s, h_q[:, j : j + 1]], 1))
            want = net.head(out[:, -1])
            torch.testing.assert_close(logits[:, j, :3], want[:, :3], atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["srwm", "deltanet", "lstm"])
def test_delayed_protocol_sees_each_label_one_step_late(kind):
    net = tiny(kind, num_classes=3)
    x = torch.rand(2, 7, 1, 16, 16)
    y = torch.tensor([[0, 1, 2, 0, 1, 2, 0], [2, 1, 0, 2, 1, 0, 2]])
    base = net.forward_delayed(x, y)
    y2 = y.clone()
    y2[:, 3] = (y2[:, 3] + 1) % 3
    changed = net.forward_delayed(x, y2)
    torch.testing.assert_close(changed[:, :4], base[:, :4], atol=0, rtol=0)  # step 3 cannot see its own label
    assert (changed[:, 4:] - base[:, 4:]).abs().amax() > 1e-4  # step 4 sees it


def test_absent_label_slots_are_masked_for_fewer_ways():
    net, ep = tiny(num_classes=10), episode(N=3)
    logits = net(ep.support_x, ep.support_y, ep.query_x)
    assert torch.isinf(logits[..., 3:]).all() and torch.isfinite(logits[..., :3]).all()
    loss, acc = episode_loss(net, ep)
    assert torch.isfinite(loss) and acc.shape == (2,)


def test_any_number_of_shots_at_test_time():
    net = tiny()
    for K in (1, 3, 5):
        ep = episode(N=5, K=K, Q=1)
        assert net(ep.support_x, ep.support_y, ep.query_x).shape == (2, 5, 5)


def test_every_srwm_fast_weight_and_the_backbone_get_gradients():
    net = tiny("srwm").train()
    loss, _ = episode_loss(net, episode())
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    fast = {n.rsplit(".", 1)[-1] for n, _ in net.named_parameters() if ".fast.W_" in n or ".fast.w_b" in n}
    assert fast == {"W_y", "W_q", "W_k", "w_b"}


def test_delayed_loss_counts_only_repeated_classes():
    y = torch.tensor([[0, 1, 0, 0, 1]])
    assert occurrence_index(y).tolist() == [[0, 0, 1, 2, 1]]
    logits = torch.nn.functional.one_hot(torch.tensor([[1, 1, 0, 1, 1]]), 2).float()
    by_shot = accuracy_by_shot(logits, y, 3)
    assert by_shot[:3].tolist() == [0.5, 1.0, 0.0] and torch.isnan(by_shot[3])
    net = tiny(num_classes=2)
    ep = Episode(torch.rand(1, 5, 1, 16, 16), y, torch.rand(1, 0, 1, 16, 16), torch.zeros(1, 0, dtype=torch.long))
    _, acc, logits = episode_loss(net, ep, "delayed", return_logits=True)
    hit = (logits.argmax(-1) == y)[0, [2, 3, 4]].float().mean()
    assert acc.item() == pytest.approx(hit.item())


def test_classifier_for_single_tasks_and_its_label_slot_check():
    net, ep = tiny(num_classes=5), episode(B=1, N=5, K=1, Q=1)
    pred = net.classifier()(ep.support_x[0], ep.support_y[0], ep.query_x[0])
    assert pred.shape == (5,) and pred.dtype == torch.long and pred.max() < 5
    with pytest.raises(ValueError, match="the task has 20 classes but the model has 5 label slots"):
        net.classifier()(torch.rand(20, 1, 16, 16), torch.arange(20), torch.rand(3, 1, 16, 16))


def test_bad_inputs_raise_clear_errors():
    net, ep = tiny(), episode()
    with pytest.raises(ValueError, match="SequentialFewShotLearner.forward: images must be float \\[B, T, C, H, W\\]"):
        net(ep.support_x[0], ep.support_y, ep.query_x)
    with pytest.raises(ValueError, match="labels must be int \\[B, T\\] = \\(2, 6\\)"):
        net(ep.support_x, ep.support_y[:, :2], ep.query_x)
    with pytest.raises(ValueError, match="labels must lie in \\[0, 5\\)"):
        net(ep.support_x, ep.support_y + 4, ep.query_x)
    with pytest.raises(ValueError, match="query_x .* must match support_x"):
        net(ep.support_x, ep.support_y, ep.query_x[:1])
    with pytest.raises(ValueError, match="model must be one of"):
        SequentialFewShotLearner(Conv4(), 64, 5, model="gru")
    with pytest.raises(ValueError, match="Conv4: x must be \\[N, 1, H, W\\]"):
        Conv4(1)(torch.rand(2, 3, 28, 28))


def test_an_lstm_learner_loads_the_state_dict_of_its_former_nn_lstm():
    net = tiny("lstm").train()
    # before the layer registry the sequence model was one nn.LSTM(num_layers=2): "seq.weight_ih_l1", ...
    old = {re.sub(r"^seq\.blocks\.(\d+)\.lstm\.(\w+)_l0$", r"seq.\2_l\1", k): v for k, v in net.state_dict().items()}
    assert {"seq.weight_ih_l0", "seq.bias_hh_l1"} <= set(old)
    torch.manual_seed(7)
    fresh = tiny("lstm")
    fresh.load_state_dict(old)  # strict
    for (name, a), b in zip(fresh.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name
