"""The closed-form MbPA of linear-softmax heads equals the generic torch.func adaptation."""

import random

import pytest
import torch
from torch import nn

from adaptmem.memory import EpisodicMemory, MbPA, mbpa_linear
from tests.ops.helpers import rel_err

RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}


def random_case(seed: int, dtype: torch.dtype = torch.float64):
    """A random head, a filled memory, queries and MbPA settings (K, T, lr, l2, bias)."""
    rnd = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    dim, vocab, n = rnd.randint(2, 12), rnd.randint(2, 40), rnd.randint(20, 120)
    mem = EpisodicMemory(dim, capacity=n, backend="torch")
    mem.write(torch.randn(n, dim, generator=g), torch.randint(0, vocab, (n,), generator=g))
    head = nn.Linear(dim, vocab, bias=rnd.random() < 0.5).to(dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, dim, generator=g))
    settings = dict(
        k=rnd.randint(1, 40),
        steps=rnd.randint(1, 4),
        lr=10 ** rnd.uniform(-2, 0),
        l2=rnd.choice([0.0, 10 ** rnd.uniform(-2, 0.5)]),
    )
    h = torch.randn(rnd.randint(1, 17), dim, generator=g).to(dtype)
    return head, mem, h, settings


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cache_logits", [True, False])
def test_linear_path_equals_the_generic_path_on_random_heads(seed, dtype, cache_logits):
    head, mem, h, kw = random_case(seed, dtype)
    fast = MbPA(head, mem, mode="auto", cache_logits=cache_logits, chunk_size=5, **kw)
    assert fast.path == "linear"
    want = MbPA(head, mem, mode="vmap", **kw)(h)
    assert rel_err(torch.log_softmax(head(h), -1), want) > 1e-3  # the adaptation moves the output
    got = fast(h)
    assert rel_err(got, want) < RTOL[dtype], (kw, head.bias is not None)
    assert rel_err(fast(h), want) < RTOL[dtype]  # a second call, served from the table


def test_bfloat16_linear_head_stays_within_the_bf16_tolerance_of_float32():
    head, mem, h, kw = random_case(3, torch.float32)
    want = MbPA(head, mem, mode="vmap", **kw)(h)
    got = MbPA(head.to(torch.bfloat16), mem, **kw)(h.bfloat16())
    assert got.dtype == torch.bfloat16 and rel_err(got, want) < RTOL[torch.bfloat16]


@pytest.mark.parametrize("steps", [1, 3])
def test_multi_step_sub_chunks_do_not_change_the_result(monkeypatch, steps):
    head, mem, h, kw = random_case(5)
    kw["steps"] = steps
    whole = MbPA(head, mem, **kw)(h)
    monkeypatch.setattr(mbpa_linear, "_MULTI_STEP_ELEMENTS", 1)  # one query per sub-chunk
    torch.testing.assert_close(MbPA(head, mem, **kw)(h), whole, rtol=1e-12, atol=1e-12)


def test_cached_neighbour_probabilities_follow_overwrites_and_head_updates():
    torch.manual_seed(0)
    dim, vocab = 6, 30
    mem = EpisodicMemory(dim, capacity=50, backend="torch")
    mem.write(torch.randn(50, dim), torch.randint(0, vocab, (50,)))
    head = nn.Linear(dim, vocab).double()
    kw = dict(k=20, steps=1, lr=0.5, l2=0.1)
    cached = MbPA(head, mem, cache_logits=True, **kw)
    h = torch.randn(8, dim, dtype=torch.float64)

    def check():
        want = MbPA(head, mem, mode="loop", **kw)(h)
        assert rel_err(cached(h), want) < 1e-10

    check()
    mem.write(torch.randn(30, dim), torch.randint(0, vocab, (30,)))  # overwrites 30 of the slots
    check()
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    head(torch.randn(4, dim, dtype=torch.float64)).sum().backward()
    opt.step()  # an in-place update of the head's parameters
    check()
    head.bias.data += 1.0  # a change that bypasses autograd's version counters
    check()
    mem.clear()
    mem.write(torch.randn(50, dim), torch.randint(0, vocab, (50,)))  # same slots, new keys
    check()


def test_the_path_is_chosen_once_and_reported():
    head, mem, _, kw = random_case(1, torch.float32)
    assert "path='linear' (nn.Linear head: exact closed form), cache_logits=True" in repr(MbPA(head, mem, **kw))

    class MyLinear(nn.Linear):  # a subclass may compute something else: generic path
        pass

    sub = MyLinear(head.in_features, head.out_features)
    assert MbPA(sub, mem, **kw).path == "vmap"
    hooked = nn.Linear(head.in_features, head.out_features)
    hooked.register_forward_hook(lambda m, i, o: 2 * o)
    assert MbPA(hooked, mem, **kw).path == "vmap"
    assert MbPA(head, mem, mode="loop", **kw).path == "loop"


@pytest.mark.parametrize("steps", [1, 2])
def test_sweep_lr_equals_one_mbpa_per_learning_rate(steps):
    head, mem, h, kw = random_case(7)
    kw.update(steps=steps, l2=0.05)
    lrs = [0.01, 0.15, 1.0]
    mbpa = MbPA(head, mem, **kw)
    swept = mbpa.sweep_lr(h, lrs)
    assert swept.shape == (3, *h.shape[:1], head.out_features)
    for lr, got in zip(lrs, swept):
        want = MbPA(head, mem, mode="vmap", **{**kw, "lr": lr})(h)
        assert rel_err(got, want) < RTOL[torch.float64]
    mlp = nn.Sequential(nn.Linear(head.in_features, 4), nn.Tanh(), nn.Linear(4, head.out_features)).double()
    generic = MbPA(mlp, mem, **kw)
    torch.testing.assert_close(generic.sweep_lr(h, [0.3])[0], MbPA(mlp, mem, **{**kw, "lr": 0.3})(h))
    with pytest.raises(ValueError, match="lrs must be a non-empty list"):
        mbpa.sweep_lr(h, [])


def test_neighbour_table_rows_do_not_depend_on_how_many_are_computed_together():
    torch.manual_seed(0)
    head = nn.Linear(32, 500)
    keys = torch.randn(300, 32)
    w, b = head.weight.detach(), head.bias.detach()
    together = mbpa_linear.neighbour_table(keys, w, b, "probs")
    for sl in (slice(0, 1), slice(5, 8), slice(64, 200)):
        assert torch.equal(mbpa_linear.neighbour_table(keys[sl], w, b, "probs"), together[sl])
