import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adaptmem.memory import EpisodicMemory, MbPA

TOL = dict(atol=1e-5, rtol=1e-5)


def filled_memory(n=400, dim=8, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mem = EpisodicMemory(dim, capacity=n, backend="torch")
    mem.write(torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g))
    return mem


def zero_linear(dim=2, classes=2):
    head = nn.Linear(dim, classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def mlp_head(dim=8, classes=5):
    return nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, classes))


def test_hand_computed_two_dimensional_example():
    # memory: h1 = (1, 0) with y = 0, h2 = (0, 2) with y = 1; query q = (1, 2); zero linear head.
    # ||q - h1||^2 = 4, ||q - h2||^2 = 1, eps = 0  ->  w = (0.2, 0.8); p = (0.5, 0.5) at θ = 0.
    # dNLL/dlogits_i = w_i (p - onehot(y_i)):  row 1: 0.2 * (-0.5, 0.5), row 2: 0.8 * (0.5, -0.5)
    # dW = Σ_i g_i^T h_i = [[-0.1, 0.8], [0.1, -0.8]],  db = (0.3, -0.3)
    # one step with lr 1: W = [[0.1, -0.8], [-0.1, 0.8]], b = (-0.3, 0.3); logits(q) = (-1.8, 1.8)
    mem = EpisodicMemory(2, capacity=2, backend="torch")
    mem.write(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
    head = zero_linear()
    for mode in ("linear", "vmap", "loop"):
        out = MbPA(head, mem, k=2, steps=1, lr=1.0, kernel_eps=0.0, mode=mode)(torch.tensor([[1.0, 2.0]]))
        torch.testing.assert_close(out, F.log_softmax(torch.tensor([[-1.8, 1.8]]), -1))


@pytest.mark.parametrize("mode", ["linear", "vmap"])
def test_zero_kernel_eps_with_an_exact_copy_of_the_query_stays_finite(mode):
    mem = EpisodicMemory(2, capacity=3, backend="torch")
    mem.write(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 1]))
    head = nn.Linear(2, 2)
    out = MbPA(head, mem, k=3, steps=3, lr=1.0, kernel_eps=0.0, mode=mode)(torch.tensor([[1.0, 0.0]]))
    assert torch.isfinite(out).all() and out.argmax(-1).item() == 0  # all weight on the copy


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_zero_steps_reproduce_the_base_head(mode):
    head, mem = mlp_head(), filled_memory()
    h = torch.randn(11, 8)
    out = MbPA(head, mem, k=16, steps=0, lr=0.5, mode=mode)(h)
    torch.testing.assert_close(out, F.log_softmax(head(h), -1), rtol=0, atol=0)


def test_huge_l2_keeps_the_parameters_at_theta():
    head, mem = mlp_head(), filled_memory()
    h = torch.randn(7, 8)
    out = MbPA(head, mem, k=16, steps=5, lr=0.5, l2=1e9)(h)
    torch.testing.assert_close(out, F.log_softmax(head(h), -1), atol=1e-6, rtol=0)
    free = MbPA(head, mem, k=16, steps=5, lr=0.5, l2=0.0)(h)
    assert (free - out).abs().max() > 1e-2  # without the prior the adaptation does move


def test_batched_equals_per_query_loop_and_chunking():
    head, mem = mlp_head(), filled_memory()
    h = torch.randn(37, 8)
    kw = dict(k=24, steps=3, lr=0.3, l2=0.05)
    batched = MbPA(head, mem, mode="vmap", chunk_size=8, **kw)(h)
    loop = MbPA(head, mem, mode="loop", **kw)(h)
    torch.testing.assert_close(batched, loop, **TOL)
    assert torch.equal(batched.argmax(-1), loop.argmax(-1))


def test_theta_is_never_modified_and_gets_no_gradient():
    head, mem = mlp_head(), filled_memory()
    before = copy.deepcopy(head.state_dict())
    MbPA(head, mem, k=8, steps=4, lr=1.0)(torch.randn(5, 8, requires_grad=True))
    for name, p in head.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None


def test_adaptation_moves_predictions_towards_neighbour_labels():
    # all neighbours of the query carry label 3, which the base head finds unlikely
    mem = EpisodicMemory(4, capacity=64, backend="torch")
    mem.write(torch.randn(64, 4) * 0.1, torch.full((64,), 3))
    head = nn.Linear(4, 5)
    q = torch.zeros(1, 4)
    base = F.log_softmax(head(q), -1)[0, 3]
    adapted = MbPA(head, mem, k=16, steps=5, lr=0.5)(q)[0, 3]
    assert adapted > base and math.exp(adapted) > 0.5


def test_retrieval_is_euclidean_not_inner_product():
    # A far key with a large inner product must not outweigh a near key (pitfall 11).
    mem = EpisodicMemory(2, capacity=2, backend="torch")
    mem.write(torch.tensor([[1.0, 0.0], [10.0, 0.0]]), torch.tensor([0, 1]))
    head = zero_linear()
    out = MbPA(head, mem, k=1, steps=1, lr=1.0)(torch.tensor([[1.2, 0.0]]))
    assert out.argmax(-1).item() == 0
    with pytest.raises(ValueError, match="metric must be 'l2'"):
        MbPA(head, EpisodicMemory(2, 4, metric="ip", backend="torch"))


def test_small_or_empty_memory_clips_k_and_falls_back_to_theta():
    head = mlp_head()
    mem = EpisodicMemory(8, capacity=10, backend="torch")
    h = torch.randn(3, 8)
    torch.testing.assert_close(MbPA(head, mem, k=32)(h), F.log_softmax(head(h), -1))
    mem.write(torch.randn(3, 8), torch.tensor([0, 1, 2]))
    assert MbPA(head, mem, k=32, steps=2)(h).shape == (3, 5)


class ItemHead(nn.Module):
    """A head with data-dependent Python control flow, which vmap cannot trace."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 5)

    def forward(self, x):
        return self.lin(x) * (2.0 if x.sum().item() > 0 else 1.0)


def test_auto_mode_probes_once_and_falls_back_to_the_loop_for_heads_vmap_cannot_trace():
    mem = filled_memory()
    h = torch.randn(4, 8)
    with pytest.warns(UserWarning, match="cannot be vmapped"):
        mbpa = MbPA(ItemHead(), mem, k=8, steps=2, lr=0.1)
    assert mbpa.path == "loop" and "vmap probe failed" in repr(mbpa)
    out = mbpa(h)
    assert mbpa.mode == "auto" and torch.isfinite(out).all()
    with pytest.raises(RuntimeError, match="vmap"):
        MbPA(ItemHead(), mem, k=8, steps=2, mode="vmap")(h)


def test_a_failed_call_never_changes_the_path_of_later_calls():
    head, mem = mlp_head(), filled_memory()
    h = torch.randn(9, 8)
    mbpa = MbPA(head, mem, k=8, steps=2, lr=0.3)
    assert mbpa.path == "vmap" and "vmap probe passed" in repr(mbpa)
    before = mbpa(h)
    with pytest.raises(TypeError, match=r"MbPA: h must have the head's dtype torch.float32.*got dtype torch.float64"):
        mbpa(h.double())
    assert mbpa.path == "vmap"
    torch.testing.assert_close(mbpa(h), before, rtol=0, atol=0)
    torch.testing.assert_close(before, MbPA(head, mem, k=8, steps=2, lr=0.3, mode="loop")(h), **TOL)


def test_language_model_head_over_a_vocabulary():
    vocab, dim = 50, 12
    mem = EpisodicMemory(dim, capacity=300, backend="torch")
    mem.write(torch.randn(300, dim), torch.randint(0, vocab, (300,)))
    head = nn.Linear(dim, vocab)
    h = torch.randn(6, dim)
    a = MbPA(head, mem, k=32, steps=1, lr=0.15, mode="vmap")(h)
    b = MbPA(head, mem, k=32, steps=1, lr=0.15, mode="loop")(h)
    assert a.shape == (6, vocab)
    torch.testing.assert_close(a.exp().sum(-1), torch.ones(6))
    torch.testing.assert_close(a, b, **TOL)


def test_bad_arguments_raise():
    head, mem = mlp_head(), filled_memory()
    with pytest.raises(ValueError, match="steps"):
        MbPA(head, mem, steps=-1)
    with pytest.raises(ValueError, match="mode"):
        MbPA(head, mem, mode="jit")
    with pytest.raises(ValueError, match=r"MbPA: h must be \[B, D\]"):
        MbPA(head, mem)(torch.randn(3, 7))
    with pytest.raises(ValueError, match="class ids"):
        MbPA(head, EpisodicMemory(8, 4, value_shape=(2,), backend="torch"))
    with pytest.raises(ValueError, match="mode='linear' needs a plain nn.Linear head"):
        MbPA(head, mem, mode="linear")
    with pytest.raises(ValueError, match="takes 7 features but the memory keys have key_dim = 8"):
        MbPA(nn.Linear(7, 5), mem)
    with pytest.raises(TypeError, match="cache_logits must be a bool"):
        MbPA(nn.Linear(8, 5), mem, cache_logits=1)
    with pytest.raises(TypeError, match="head must be an nn.Module, got NoneType"):
        MbPA(None, mem)
    with pytest.raises(ValueError, match="MbPA: h contains NaN"):
        MbPA(head, mem)(torch.full((2, 8), math.nan))


@pytest.mark.parametrize("head_fn", [lambda: nn.Linear(8, 5), mlp_head])
def test_search_and_fetch_run_under_one_hold_of_the_memory_lock(head_fn):
    # A writer thread between search and fetch would hand back other entries' keys.
    mem = filled_memory()
    held = []
    search, fetch = mem.search, mem.fetch
    mem.search = lambda *a, **k: (held.append(("search", mem.lock._is_owned())), search(*a, **k))[1]
    mem.fetch = lambda *a, **k: (held.append(("fetch", mem.lock._is_owned())), fetch(*a, **k))[1]
    MbPA(head_fn(), mem, k=16, steps=2, lr=0.1)(torch.randn(3, 8))
    assert held and {name for name, _ in held} == {"search", "fetch"}
    assert all(owned for _, owned in held)
