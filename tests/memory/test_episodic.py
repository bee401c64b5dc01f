import pytest
import torch

from adaptmem.memory import EpisodicMemory, faiss_available

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
EXACT = ["torch", pytest.param("faiss", marks=needs_faiss)]


def brute_force(keys, queries, k, metric="l2"):
    """Slots of the k nearest keys ordered by (distance, slot), in float64."""
    q, h = queries.double(), keys.double()
    d = ((q[:, None] - h[None]) ** 2).sum(-1) if metric == "l2" else -(q @ h.T)
    slots = torch.arange(len(h)).expand_as(d)
    out = []
    for row_d, row_s in zip(d.tolist(), slots.tolist()):
        out.append([s for _, s in sorted(zip(row_d, row_s))[:k]])
    return torch.tensor(out)


@pytest.mark.parametrize("backend", EXACT)
def test_fifo_overwrites_oldest_slots_in_place(backend):
    mem = EpisodicMemory(4, capacity=5, backend=backend)
    s1 = mem.write(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    s2 = mem.write(torch.randn(4, 4), torch.tensor([3, 4, 5, 6]))
    assert s1.tolist() == [0, 1, 2] and s2.tolist() == [3, 4, 0, 1]
    assert len(mem) == 5
    # slots 0 and 1 now hold the newest entries 5 and 6; 2, 3, 4 hold 2, 3, 4
    assert mem.values.tolist() == [5, 6, 2, 3, 4]


def test_write_larger_than_capacity_keeps_the_last_entries():
    mem = EpisodicMemory(2, capacity=3, backend="torch")
    mem.write(torch.randn(1, 2), torch.tensor([100]))
    keys = torch.arange(14.0).view(7, 2)
    mem.write(keys, torch.arange(7))
    assert sorted(mem.values.tolist()) == [4, 5, 6]
    for slot, v in enumerate(mem.values.tolist()):
        assert torch.equal(mem.keys[slot], keys[v])
    mem.write(torch.zeros(1, 2), torch.tensor([7]))  # continues after the newest, evicting 4
    assert sorted(mem.values.tolist()) == [5, 6, 7]


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_neighbours_equal_brute_force(backend, metric):
    g = torch.Generator().manual_seed(1)
    mem = EpisodicMemory(8, capacity=300, metric=metric, backend=backend)
    keys = torch.randn(450, 8, generator=g)
    mem.write(keys[:200], torch.arange(200))
    mem.write(keys[200:], torch.arange(200, 450))  # wraps around the ring
    queries = torch.randn(37, 8, generator=g)
    dist, values, slots = mem.search(queries, k=10)
    assert torch.equal(slots, brute_force(mem.keys, queries, 10, metric))
    assert torch.equal(values, mem.values[slots])
    want = ((queries[:, None] - mem.keys[slots]) ** 2).sum(-1) if metric == "l2" else (queries[:, None] * mem.keys[slots]).sum(-1)
    torch.testing.assert_close(dist, want)


@needs_faiss
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_faiss_and_torch_backends_agree_bitwise_with_ties(metric):
    g = torch.Generator().manual_seed(2)
    keys = torch.randn(500, 16, generator=g)
    keys[200:260] = keys[7]  # 61 identical keys: more ties than the candidate margin
    keys[300:310] = keys[300:310].round()  # small-integer keys give exact distance ties
    queries = torch.cat([torch.randn(40, 16, generator=g), keys[7:8], keys[300:302], torch.zeros(1, 16)])
    results = {}
    for backend in ("torch", "faiss"):
        mem = EpisodicMemory(16, 500, metric=metric, backend=backend)
        mem.write(keys, torch.arange(500))
        results[backend] = mem.search(queries, k=40)
    assert torch.equal(results["torch"].slots, results["faiss"].slots)
    assert torch.equal(results["torch"].distances, results["faiss"].distances)
    if metric == "l2":  # ties resolve to the lowest slots
        assert results["torch"].slots[40].tolist() == [7] + list(range(200, 239))
    assert torch.equal(results["torch"].slots, brute_force(keys, queries, 40, metric))


@pytest.mark.parametrize("backend", EXACT)
def test_save_load_round_trip_gives_bit_identical_search(tmp_path, backend):
    mem = EpisodicMemory(6, capacity=50, value_shape=(2,), value_dtype=torch.float32, backend=backend)
    mem.write(torch.randn(80, 6), torch.randn(80, 2))
    q = torch.randn(9, 6)
    before = mem.search(q, k=7)
    mem.save(tmp_path / "mem.pt")
    loaded = EpisodicMemory.load(tmp_path / "mem.pt", backend=backend)
    after = loaded.search(q, k=7)
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    # the ring position survives: the next write evicts the same slot in both
    new = (torch.randn(1, 6), torch.randn(1, 2))
    assert torch.equal(mem.write(*new), loaded.write(*new))
    assert not list(tmp_path.glob("*.tmp"))


def test_load_state_dict_rejects_a_different_configuration():
    a = EpisodicMemory(4, 10, backend="torch")
    a.write(torch.randn(3, 4), torch.arange(3))
    with pytest.raises(ValueError, match="key_dim"):
        EpisodicMemory(5, 10, backend="torch").load_state_dict(a.state_dict())


def test_clear_forgets_everything():
    mem = EpisodicMemory(3, 4, backend="torch")
    mem.write(torch.randn(4, 3), torch.arange(4))
    mem.clear()
    assert len(mem) == 0
    with pytest.raises(ValueError, match="empty"):
        mem.search(torch.randn(1, 3), k=1)


def test_bad_inputs_raise_clear_errors():
    mem = EpisodicMemory(4, 10, backend="torch")
    with pytest.raises(ValueError, match="empty"):
        mem.search(torch.randn(2, 4), 1)
    with pytest.raises(ValueError, match=r"key_dim = 4.*\(3, 5\)"):
        mem.write(torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="NaN"):
        mem.write(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), torch.arange(1))
    with pytest.raises(TypeError, match="int64.*int32"):
        mem.write(torch.randn(2, 4), torch.arange(2, dtype=torch.int32))
    with pytest.raises(TypeError, match="floating point"):
        mem.write(torch.ones(2, 4, dtype=torch.long), torch.arange(2))
    with pytest.raises(ValueError, match="values must have shape"):
        mem.write(torch.randn(2, 4), torch.arange(3))
    mem.write(torch.randn(3, 4), torch.arange(3))
    with pytest.raises(ValueError, match="k = 4 exceeds"):
        mem.search(torch.randn(2, 4), 4)
    with pytest.raises(ValueError, match="NaN"):
        mem.search(torch.full((1, 4), float("inf")), 1)
    with pytest.raises(ValueError, match="metric"):
        EpisodicMemory(4, 10, metric="cosine")
    with pytest.raises(ValueError, match="backend"):
        EpisodicMemory(4, 10, backend="annoy")


def test_float64_queries_and_keys_are_accepted_and_stored_float32():
    mem = EpisodicMemory(3, 8, backend="torch")
    mem.write(torch.randn(5, 3, dtype=torch.float64), torch.arange(5))
    assert mem.keys.dtype == torch.float32
    d, v, s = mem.search(torch.randn(2, 3, dtype=torch.float64), 2)
    assert d.dtype == torch.float32 and s.dtype == torch.long and v.shape == (2, 2)


def test_fetch_returns_stored_keys_and_values():
    mem = EpisodicMemory(2, 4, backend="torch")
    keys = torch.randn(4, 2)
    mem.write(keys, torch.tensor([5, 6, 7, 8]))
    k, v = mem.fetch(torch.tensor([[2, 0]]))
    assert torch.equal(k, keys[[2, 0]][None]) and v.tolist() == [[7, 5]]
    with pytest.raises(ValueError, match="slots must lie"):
        mem.fetch(torch.tensor([4]))


@needs_faiss
def test_ivf_backend_finds_most_true_neighbours_and_skips_evicted_entries(tmp_path):
    g = torch.Generator().manual_seed(3)
    centers = torch.randn(20, 16, generator=g) * 4
    keys = centers[torch.randint(0, 20, (6000,), generator=g)] + torch.randn(6000, 16, generator=g)
    mem = EpisodicMemory(16, capacity=4000, backend="ivf", nlist=32, nprobe=8)
    exact = EpisodicMemory(16, capacity=4000, backend="torch")
    for m in (mem, exact):
        m.write(keys[:3000], torch.arange(3000))
    q = keys[:50] + 0.1 * torch.randn(50, 16, generator=g)
    mem.search(q, 5)  # builds the index over the first 3000 entries
    for m in (mem, exact):
        m.write(keys[3000:], torch.arange(3000, 6000))  # evicts ids 0..1999 from the ring
    got, want = mem.search(q, 10), exact.search(q, 10)
    assert bool((got.values >= 2000).all())  # evicted entries never come back
    recall = sum(len(set(a) & set(b)) for a, b in zip(got.slots.tolist(), want.slots.tolist())) / want.slots.numel()
    assert recall > 0.8
    for _ in range(2):  # eviction never calls remove_ids; stale entries are dropped by rebuilds
        mem.write(keys[:2000], torch.arange(2000))
        mem.search(q, 10)
        assert mem._ivf.ntotal < 2 * mem.capacity + 2000
    mem.save(tmp_path / "ivf.pt")
    got = mem.search(q, 10)
    again = EpisodicMemory.load(tmp_path / "ivf.pt")
    assert again.backend == "ivf" and torch.equal(again.search(q, 10).slots, got.slots)
