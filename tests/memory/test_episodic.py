import threading

import pytest
import torch

import adaptmem.memory.episodic as episodic
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
    want = (
        ((queries[:, None] - mem.keys[slots]) ** 2).sum(-1)
        if metric == "l2"
        else (queries[:, None] * mem.keys[slots]).sum(-1)
    )
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


# ---------------------------------------------------------------- blocked exact search at scale
BLOCKED_N = 4 * episodic._BLOCK + 777  # the blocked scan with a partial last block


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("layout", ["random", "nearer_each_block"])
def test_blocked_scan_keeps_the_exact_top_m(metric, layout):
    g = torch.Generator().manual_seed(4)
    keys = torch.randn(BLOCKED_N, 8, generator=g)
    if layout == "nearer_each_block":  # the running threshold is beaten in every block
        keys = torch.linspace(6, 0, BLOCKED_N)[:, None] + 0.01 * keys
    queries = torch.randn(70, 8, generator=g) if layout == "random" else torch.zeros(70, 8)
    sq = keys.pow(2).sum(-1)
    slots, last = episodic._blocked_top_m(queries, keys, sq, 50, metric)
    full = (
        torch.addmm(sq, queries, keys.T, alpha=-2.0) + queries.pow(2).sum(-1, keepdim=True)
        if metric == "l2"
        else -(queries @ keys.T)
    )
    want = full.topk(50, dim=1, largest=False).values
    got = full.gather(1, slots).sort(dim=1).values
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(len(set(row)) == 50 for row in slots.tolist())
    torch.testing.assert_close(last, want[:, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_blocked_search_equals_brute_force_with_ties(backend, metric):
    g = torch.Generator().manual_seed(5)
    keys = torch.randn(BLOCKED_N, 8, generator=g)
    keys[3000:3100] = keys[11]  # 101 identical keys: more ties than the candidate list holds
    keys[9000:9040] = keys[9000:9040].round()
    queries = torch.cat([torch.randn(20, 8, generator=g), keys[11:12], keys[9000:9001]])
    mem = EpisodicMemory(8, capacity=BLOCKED_N, metric=metric, backend=backend)
    mem.write(keys, torch.arange(BLOCKED_N))
    dist, values, slots = mem.search(queries, k=40)
    assert torch.equal(slots, brute_force(keys, queries, 40, metric))
    if metric == "l2":
        assert slots[20].tolist() == [11] + list(range(3000, 3039))


@needs_faiss
def test_faiss_and_blocked_torch_agree_bitwise_after_wrapping():
    g = torch.Generator().manual_seed(6)
    keys = torch.randn(BLOCKED_N + 5000, 16, generator=g)
    queries = torch.randn(300, 16, generator=g)  # more than one block of query rows
    out = {}
    for backend in ("torch", "faiss"):
        mem = EpisodicMemory(16, capacity=BLOCKED_N, backend=backend)
        mem.write(keys[:5000], torch.arange(5000))
        mem.write(keys[5000:], torch.arange(5000, len(keys)))  # wraps: the oldest 5000 are gone
        out[backend] = mem.search(queries, k=32)
    for a, b in zip(out["torch"], out["faiss"]):
        assert torch.equal(a, b)
    assert bool((out["torch"].values >= 5000).all())


# ---------------------------------------------------------------- concurrent use
def key_of(values: torch.Tensor, dim: int = 8) -> torch.Tensor:
    """The key each value is written with, so a (distance, value) pair can be checked."""
    freq = torch.arange(1, dim + 1, dtype=torch.float64)
    return torch.sin(values.double()[:, None] * 0.01 * freq + freq).float()


@pytest.mark.parametrize("backend", EXACT)
def test_searches_beside_a_writer_return_matching_pairs(tmp_path, backend):
    n = 3000
    mem = EpisodicMemory(8, capacity=n, backend=backend)
    mem.write(key_of(torch.arange(n)), torch.arange(n))
    queries = torch.randn(33, 8, generator=torch.Generator().manual_seed(7))
    stop, failures, checked = threading.Event(), [], [0]

    def writer():  # each write replaces a third of the ring
        try:
            for step in range(300):
                v = torch.arange(n + 1000 * step, n + 1000 * (step + 1))
                mem.write(key_of(v), v)
        finally:
            stop.set()

    def searcher():
        while not stop.is_set():
            dist, values, _ = mem.search(queries, k=12)
            want = ((queries[:, None] - key_of(values.flatten()).view(33, 12, 8)) ** 2).sum(-1)
            if not torch.allclose(dist, want, rtol=1e-6, atol=1e-6) or not bool((dist.diff(dim=1) >= 0).all()):
                failures.append("search")
            checked[0] += 1

    def saver():
        i = 0
        while not stop.is_set():
            mem.save(tmp_path / f"m{i % 3}.pt")
            loaded = EpisodicMemory.load(tmp_path / f"m{i % 3}.pt", backend=backend)
            if not torch.equal(loaded.keys, key_of(loaded.values)) or len(set(loaded.values.tolist())) != n:
                failures.append("save")
            i += 1

    threads = [threading.Thread(target=f) for f in (writer, searcher, searcher, saver)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert checked[0] > 0
    assert failures == [], (
        f"{failures.count('search')} of {checked[0]} searches, {failures.count('save')} saves inconsistent"
    )
    with mem.lock:  # several calls as one: the found slots still hold the found values
        _, values, slots = mem.search(queries, k=3)
        assert torch.equal(mem.fetch(slots)[1], values)


def test_a_memory_can_be_deep_copied_and_pickled():
    import copy
    import pickle

    mem = EpisodicMemory(3, 10, backend="torch")
    mem.write(torch.randn(4, 3), torch.arange(4))
    for other in (copy.deepcopy(mem), pickle.loads(pickle.dumps(mem))):
        assert other.lock is not mem.lock and torch.equal(other.keys, mem.keys)
        other.write(torch.randn(1, 3), torch.tensor([9]))
        assert len(mem) == 4 and len(other) == 5


# ---------------------------------------------------------------- load_state_dict validation
def _valid_state():
    mem = EpisodicMemory(4, capacity=10, backend="torch")
    mem.write(torch.randn(13, 4), torch.arange(13))  # wrapped: total 13, all 10 slots filled
    return mem.state_dict()


def _with(state, **changes):
    state = dict(state)
    state.update(changes)
    return state


BAD_STATES = {
    "negative total": (lambda s: _with(s, total=-3), "total"),
    "total below the filled slots": (lambda s: _with(s, total=7), "total = 7"),
    "total of another type": (lambda s: _with(s, total=13.0), "total"),
    "nan keys": (lambda s: _with(s, keys=s["keys"].clone().index_fill_(0, torch.tensor([2]), float("nan"))), "NaN"),
    "keys of another dtype": (lambda s: _with(s, keys=s["keys"].double()), "keys must be float32"),
    "keys of another width": (lambda s: _with(s, keys=torch.zeros(10, 5)), r"keys must be float32 \[n, 4\]"),
    "more keys than slots": (
        lambda s: _with(s, keys=torch.zeros(11, 4), values=torch.zeros(11, dtype=torch.long), total=11),
        "capacity = 10",
    ),
    "values not one per key": (lambda s: _with(s, values=s["values"][:9]), "values must be"),
    "values of another dtype": (lambda s: _with(s, values=s["values"].int()), "values must be torch.int64"),
    "missing field": (lambda s: {k: v for k, v in s.items() if k != "total"}, "lacks"),
    "index of another type": (lambda s: _with(s, ivf=[1, 2]), "ivf must be"),
    "index built size out of range": (
        lambda s: _with(s, ivf=torch.zeros(3, dtype=torch.uint8), ivf_built_size=11),
        "ivf_built_size",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_load_state_dict_rejects_broken_states_and_changes_nothing(case):
    corrupt, message = BAD_STATES[case]
    mem = EpisodicMemory(4, capacity=10, backend="torch")
    mem.write(torch.ones(2, 4), torch.tensor([7, 8]))
    with pytest.raises(ValueError, match=message):
        mem.load_state_dict(corrupt(_valid_state()))
    assert (
        len(mem) == 2 and mem.values.tolist() == [7, 8] and mem.write(torch.ones(1, 4), torch.tensor([9])).item() == 2
    )


def test_load_state_dict_accepts_a_partly_filled_ring_and_continues_it():
    a = EpisodicMemory(4, capacity=10, backend="torch")
    a.write(torch.randn(6, 4), torch.arange(6))
    b = EpisodicMemory(4, capacity=10, backend="torch")
    b.load_state_dict(a.state_dict())
    assert len(b) == 6 and b.write(torch.randn(5, 4), torch.arange(5)).tolist() == [6, 7, 8, 9, 0]
    with pytest.raises(TypeError, match="dict"):
        b.load_state_dict([1, 2])
