"""EpisodicMemory with FAISS: approximate indexes (IVF, IVF-PQ, HNSW), GPU sharding, threads."""

import pytest
import torch

import adaptmem.memory.episodic as episodic
from adaptmem.memory import EpisodicMemory, faiss_available
from adaptmem.utils.integrity import save_verified

faiss = pytest.importorskip("faiss", reason="faiss not installed")
PARAMS = {
    "ivf": {"nlist": 32, "nprobe": 8},
    "ivfpq": {"nlist": 16, "nprobe": 8, "pq_m": 8, "pq_nbits": 6},
    "hnsw": {"hnsw_m": 16, "ef_search": 64},
}


def clustered(n, dim=16, seed=3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(20, dim, generator=g) * 4
    return centers[torch.randint(0, 20, (n,), generator=g)] + torch.randn(n, dim, generator=g), g


def recall(got, want):
    return sum(len(set(a) & set(b)) for a, b in zip(got.tolist(), want.tolist())) / want.numel()


@pytest.mark.parametrize("kind", list(PARAMS))
def test_approximate_index_finds_most_neighbours_and_skips_evicted_entries(tmp_path, kind):
    keys, g = clustered(6000)
    mem = EpisodicMemory(16, capacity=4000, index=kind, **PARAMS[kind])
    exact = EpisodicMemory(16, capacity=4000, backend="torch")
    for m in (mem, exact):
        m.write(keys[:3000], torch.arange(3000))
    q = keys[:50] + 0.1 * torch.randn(50, 16, generator=g)
    mem.search(q, 5)  # builds the index over the first 3000 entries
    assert mem._approx.kind == kind and mem._approx.ntotal == 3000
    for m in (mem, exact):
        m.write(keys[3000:], torch.arange(3000, 6000))  # evicts ids 0..1999 from the ring
    got, want = mem.search(q, 10), exact.search(q, 10)
    assert bool((got.values >= 2000).all())  # evicted entries never come back
    assert recall(got.slots, want.slots) > 0.8
    # candidates are re-ranked exactly: the distances are those of the returned keys
    torch.testing.assert_close(got.distances, ((q[:, None] - mem.keys[got.slots]) ** 2).sum(-1))
    for _ in range(2):  # eviction never calls remove_ids; stale entries are dropped by rebuilds
        mem.write(keys[:2000], torch.arange(2000))
        mem.search(q, 10)
        assert mem._approx.ntotal < 2 * mem.capacity + 2000
    mem.save(tmp_path / "approx.pt")
    got = mem.search(q, 10)
    again = EpisodicMemory.load(tmp_path / "approx.pt")
    assert again.index == kind and again.index_params == mem.index_params
    assert torch.equal(again.search(q, 10).slots, got.slots)


def test_small_memories_search_exactly_until_an_index_can_be_trained():
    keys, g = clustered(900)
    mem = EpisodicMemory(16, capacity=2000, index="ivfpq", pq_m=4)
    mem.write(keys, torch.arange(900))
    exact = EpisodicMemory(16, capacity=2000, backend="torch")
    exact.write(keys, torch.arange(900))
    q = torch.randn(7, 16, generator=g)
    assert torch.equal(mem.search(q, 5).slots, exact.search(q, 5).slots)
    assert mem._approx.index is None and mem.memory_usage()["index"] == 0


def test_memory_usage_shows_pq_codes_far_smaller_than_flat_lists():
    keys, _ = clustered(5000, dim=32)
    sizes = {}
    for kind, params in (("ivf", {"nlist": 16}), ("ivfpq", {"nlist": 16, "pq_m": 4, "pq_nbits": 8})):
        mem = EpisodicMemory(32, capacity=5000, index=kind, **params)
        mem.write(keys, torch.arange(5000))
        mem.search(keys[:2], 3)
        sizes[kind] = mem.memory_usage()
    assert sizes["ivf"]["ring"] == sizes["ivfpq"]["ring"] == 5000 * (32 * 4 + 4 + 8)
    assert sizes["ivf"]["index"] > 5000 * 32 * 4  # full float32 keys in the inverted lists
    assert sizes["ivfpq"]["index"] < 5000 * (4 + 8) + 16 * 32 * 4 + 4 * 256 * 8 * 4 + 4096  # codes + ids + tables


def test_backend_ivf_is_the_older_spelling_of_index_ivf():
    mem = EpisodicMemory(8, 100, backend="ivf", nlist=4)
    assert (mem.backend, mem.index) == ("faiss", "ivf")
    with pytest.raises(ValueError, match="FAISS index"):
        EpisodicMemory(8, 100, backend="torch", index="hnsw")
    with pytest.raises(ValueError, match="index"):
        EpisodicMemory(8, 100, index="annoy")
    with pytest.raises(ValueError, match="pq_m must divide key_dim = 8, got 3"):
        EpisodicMemory(8, 100, index="ivfpq", pq_m=3)


def searched_ivf_state():
    """Keys, queries, the search result and the state of a 3000-entry IVF memory."""
    keys, g = clustered(3000)
    mem = EpisodicMemory(16, capacity=3000, index="ivf", nlist=16)
    mem.write(keys, torch.arange(3000))
    q = torch.randn(5, 16, generator=g)
    return keys, q, mem.search(q, 4), mem.state_dict()


def test_files_saved_before_index_existed_still_load(tmp_path):
    _, q, before, state = searched_ivf_state()
    for key in ("index", "index_params"):  # the config of files written by earlier versions
        del state["config"][key]
    save_verified(state, tmp_path / "checksummed.pt", format=episodic.FILE_FORMAT, version=episodic.FILE_VERSION)
    torch.save(state, tmp_path / "legacy.pt")  # before the checksum too
    with pytest.warns(UserWarning, match="without checksum"):
        legacy = EpisodicMemory.load(tmp_path / "legacy.pt", allow_legacy=True)
    for loaded in (EpisodicMemory.load(tmp_path / "checksummed.pt"), legacy):
        assert loaded.index == "ivf" and torch.equal(loaded.search(q, 4).slots, before.slots)


# ---------------------------------------------------------------- FAISS threads
def test_faiss_calls_run_with_the_library_thread_count_and_restore_faiss_settings(monkeypatch):
    seen = []
    real_knn = faiss.knn

    def spy(*args, **kwargs):
        seen.append((faiss.omp_get_max_threads(), faiss.cvar.distance_compute_blas_threshold))
        return real_knn(*args, **kwargs)

    monkeypatch.setattr(faiss, "knn", spy)
    before = (faiss.omp_get_max_threads(), faiss.cvar.distance_compute_blas_threshold)
    keys = torch.randn(500, 8)
    explicit = EpisodicMemory(8, 500, backend="faiss", threads=3)
    default = EpisodicMemory(8, 500, backend="faiss")
    for mem in (explicit, default):
        mem.write(keys, torch.arange(500))
        mem.search(torch.randn(20, 8), 5)
    default.search(torch.randn(2, 8), 5)
    assert seen[0] == (3, 1)  # threads=3; batches of >= 8 queries are forced onto FAISS's GEMM path
    assert seen[1][0] == torch.get_num_threads()
    assert seen[2][1] == before[1]  # 2 queries: FAISS's own choice (its SIMD loop is faster there)
    assert (faiss.omp_get_max_threads(), faiss.cvar.distance_compute_blas_threshold) == before


# ---------------------------------------------------------------- GPU sharding
class FakeClonerOptions:
    shard = False


class FakeGpuParameterSpace:
    def set_index_parameter(self, index, name, value):
        assert name == "nprobe"
        index.nprobe = value


def test_ivf_indexes_are_sharded_over_all_gpus_when_faiss_sees_some(monkeypatch):
    calls = []

    def to_all_gpus(index, co=None, ngpu=-1):
        calls.append((index.ntotal, co.shard))
        return index  # stands in for the sharded GPU index: same interface

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", FakeClonerOptions, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_all_gpus)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: index, raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", FakeGpuParameterSpace, raising=False)
    keys, g = clustered(3000)
    mem = EpisodicMemory(16, capacity=3000, index="ivf", nlist=16, nprobe=5)
    mem.write(keys[:2000], torch.arange(2000))
    q = torch.randn(5, 16, generator=g)
    mem.search(q, 4)
    assert calls == [(0, True)]  # trained on the CPU, cloned empty, then filled on the GPUs
    assert mem._approx.on_gpus == 2 and mem._approx.ntotal == 2000 and mem._approx.index.nprobe == 5
    mem.write(keys[2000:], torch.arange(2000, 3000))  # writes go to the sharded index
    assert mem._approx.ntotal == 3000 and mem.memory_usage()["index"] > 0
    hnsw = EpisodicMemory(16, capacity=3000, index="hnsw")  # HNSW has no GPU version: stays on the CPU
    hnsw.write(keys, torch.arange(3000))
    hnsw.search(q, 4)
    assert len(calls) == 1 and hnsw._approx.on_gpus == 0
    off = EpisodicMemory(16, capacity=3000, index="ivf", nlist=16, shard_gpus=False)
    off.write(keys, torch.arange(3000))
    off.search(q, 4)
    assert len(calls) == 1


def test_without_gpus_the_index_stays_on_the_cpu(monkeypatch):
    def must_not_be_called(*args, **kwargs):  # with no GPU it returns an empty replica set (pitfall 10)
        raise AssertionError("index_cpu_to_all_gpus called without GPUs")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", must_not_be_called)
    keys, g = clustered(2000)
    mem = EpisodicMemory(16, capacity=2000, index="ivf", nlist=16)
    mem.write(keys, torch.arange(2000))
    mem.search(torch.randn(3, 16, generator=g), 4)
    assert mem._approx.on_gpus == 0 and isinstance(mem._approx.index, faiss.IndexIVFFlat)


@pytest.mark.skipif(
    not faiss_available() or not hasattr(faiss, "GpuMultipleClonerOptions") or faiss.get_num_gpus() == 0,
    reason="needs faiss-gpu and a GPU",
)
def test_sharded_gpu_index_matches_the_cpu_index():
    keys, g = clustered(8000)
    q = torch.randn(40, 16, generator=g)
    out = {}
    for shard in (True, False):
        mem = EpisodicMemory(16, capacity=8000, index="ivf", nlist=32, nprobe=32, shard_gpus=shard)
        mem.write(keys, torch.arange(8000))
        out[shard] = mem.search(q, 10)
    assert recall(out[True].slots, out[False].slots) > 0.99  # nprobe = nlist: both exhaustive


@pytest.mark.parametrize("kind", list(PARAMS))
def test_search_params_trade_speed_for_recall_without_a_rebuild(kind):
    g = torch.Generator().manual_seed(8)
    keys = torch.randn(4000, 16, generator=g)  # no clusters: the hard case for an index
    q = torch.randn(40, 16, generator=g)
    mem = EpisodicMemory(
        16, capacity=4000, index=kind, nlist=64, nprobe=1, pq_m=4, pq_nbits=4, k_factor=1, hnsw_m=8, ef_search=16
    )
    exact = EpisodicMemory(16, capacity=4000, backend="torch")
    for m in (mem, exact):
        m.write(keys, torch.arange(4000))
    want = exact.search(q, 10).slots
    low = recall(mem.search(q, 10).slots, want)
    index = mem._approx.index
    mem.set_search_params(nprobe=64, ef_search=512, k_factor=64)  # IVF-PQ: re-rank 64x more candidates
    high = recall(mem.search(q, 10).slots, want)
    assert mem._approx.index is index  # not rebuilt
    assert low < 0.9 and high > 0.97 and high > low
    with pytest.raises(ValueError, match="nprobe"):
        mem.set_search_params(nprobe=0)


def test_load_state_dict_checks_the_saved_index():
    keys, q, before, state = searched_ivf_state()
    target = EpisodicMemory(16, capacity=3000, index="ivf", nlist=16)
    target.write(keys[:10], torch.arange(10))
    with pytest.raises(ValueError, match="not a readable FAISS index"):
        target.load_state_dict({**state, "ivf": torch.randint(0, 256, (300,), dtype=torch.uint8)})
    with pytest.raises(ValueError, match="at most total = 2000"):  # an index of more writes than the state made
        target.load_state_dict(
            {
                **state,
                "keys": state["keys"][:2000],
                "values": state["values"][:2000],
                "total": 2000,
                "ivf_built_size": 2000,
            }
        )
    assert len(target) == 10  # unchanged by the failed loads
    hnsw = EpisodicMemory(16, capacity=3000, index="hnsw")
    hnsw.load_state_dict(state)  # an IVF index is no use to HNSW: dropped, rebuilt by the first search
    assert hnsw._approx is None
    hnsw.search(q, 4)
    assert hnsw._approx.kind == "hnsw" and hnsw._approx.ntotal == 3000
    target.load_state_dict(state)
    assert torch.equal(target.search(q, 4).slots, before.slots)
