"""FAISS helpers for :class:`~adaptmem.memory.EpisodicMemory`: thread control and the
approximate indexes (IVF-Flat, IVF-PQ, HNSW) whose ids are the memory's write counters.

FAISS is imported inside the functions, never at package import time (it is optional).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

KINDS = ("ivf", "ivfpq", "hnsw")
MIN_ENTRIES = 1024  # below this an approximate index saves nothing: search exactly
_TRAIN_PER_CENTROID = 39  # FAISS's k-means warns below 39 training points per centroid
# faiss.knn takes its BLAS (GEMM) path only when nq * D >= distance_compute_blas_threshold
# (128,000 by default in FAISS 1.15; older versions compare nq alone, default 20). At D = 128 a
# batch of 256 queries (32,768) therefore ran the per-pair SIMD loop: 6x slower than the GEMM at
# N = 1M (4.4 s vs 0.75 s, one thread). From this many queries on the memory forces the GEMM
# path (threshold 1, which means it under both rules); below it FAISS's default is kept, as
# the SIMD loop wins there (1 query: 0.09 vs 0.40 ms at N = 10,000; even at 4; BLAS 1.6x at 16).
BLAS_MIN_QUERIES = 8


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run FAISS with ``n`` OpenMP threads (per calling thread), then restore the count.

    FAISS defaults to one thread per core, which collapses about 4x on a shared machine
    (REFERENCE.md section 6.3); the caller passes the library's choice instead.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


_blas_lock = threading.Lock()
_blas_users = 0  # batches inside gemm_path; the first saves FAISS's threshold, the last restores it
_blas_saved = 0


@contextmanager
def gemm_path(queries: int) -> Iterator[None]:
    """Let ``faiss.knn`` use its GEMM path for a batch of ``queries`` (see BLAS_MIN_QUERIES).

    The threshold is process-wide: a small batch of another memory that runs inside this
    window takes the GEMM path too, which costs it time, never correctness.
    """
    global _blas_users, _blas_saved
    if queries < BLAS_MIN_QUERIES:
        yield
        return
    import faiss

    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = faiss.cvar.distance_compute_blas_threshold
            faiss.cvar.distance_compute_blas_threshold = 1
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                faiss.cvar.distance_compute_blas_threshold = _blas_saved


def num_gpus() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def default_pq_m(dim: int) -> int:
    """Sub-quantizers for IVF-PQ: the largest divisor of ``dim`` up to ``dim / 8`` (16 for 128)."""
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


class ApproxIndex:
    """One approximate FAISS index over (key, write counter) pairs.

    ``kind``: ``"ivf"`` (``IndexIVFFlat``), ``"ivfpq"`` (``IndexIVFPQ``, ``pq_m`` codes of
    ``pq_nbits`` bits per key) or ``"hnsw"`` (``IndexHNSWFlat`` in an ``IndexIDMap``). IVF
    kinds are sharded over all GPUs FAISS sees when ``shard_gpus`` (HNSW has no GPU version).
    """

    def __init__(self, kind: str, dim: int, metric: str, params: dict[str, Any], threads: int) -> None:
        self.kind, self.dim, self.metric, self.params, self.threads = kind, dim, metric, params, threads
        self.index: Any = None
        self.built_size = 0
        self.on_gpus = 0

    # ------------------------------------------------------------------ building
    def nlist_for(self, n: int) -> int:
        return int(self.params["nlist"] or max(1, int(4 * math.sqrt(n))))

    def can_build(self, n: int) -> bool:
        """Whether ``n`` entries are enough to train this index (else the memory searches exactly)."""
        if n < MIN_ENTRIES:
            return False
        if self.kind == "hnsw":
            return True
        need = self.nlist_for(n)
        if self.kind == "ivfpq":
            need = max(need, 2 ** self.params["pq_nbits"])
        return n >= _TRAIN_PER_CENTROID * need

    def build(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """A fresh index trained on and filled with ``keys [n, D]`` (ids: their write counters)."""
        import faiss

        n = keys.shape[0]
        x = _np32(keys)
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        with faiss_threads(self.threads):
            if self.kind == "hnsw":
                inner = faiss.IndexHNSWFlat(self.dim, self.params["hnsw_m"], metric)
                inner.hnsw.efConstruction = self.params["ef_construction"]
                index = faiss.IndexIDMap(inner)
            else:
                nlist = self.nlist_for(n)
                quantizer = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
                if self.kind == "ivf":
                    index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, metric)
                else:
                    index = faiss.IndexIVFPQ(
                        quantizer, self.dim, nlist, self.params["pq_m"], self.params["pq_nbits"], metric
                    )
                    index.pq.cp.seed = 1234
                index.own_fields = True
                quantizer.this.disown()  # the index frees its quantizer
                index.cp.seed = 1234
                index.train(x)
                index = self._maybe_shard(index)
            self.index = index
            self.set_search_params()
            self.index.add_with_ids(x, _np64(ids))
        self.built_size = n

    def _maybe_shard(self, index: Any) -> Any:
        """The trained IVF index sharded over every GPU (a CPU index when there is none)."""
        if not self.params["shard_gpus"]:
            return index
        gpus = num_gpus()
        if gpus == 0:  # index_cpu_to_all_gpus would return an empty replica set (pitfall 10)
            return index
        import faiss

        options = faiss.GpuMultipleClonerOptions()
        options.shard = True  # each GPU holds 1/G of the entries; results are merged by FAISS
        sharded = faiss.index_cpu_to_all_gpus(index, co=options)
        self.on_gpus = gpus
        return sharded

    def set_search_params(self) -> None:
        """Apply ``params["nprobe"]`` (IVF kinds, at most nlist) or ``params["ef_search"]`` (HNSW)."""
        import faiss

        if self.index is None:
            return
        if self.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = self.params["ef_search"]
        elif self.on_gpus:
            faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", self.params["nprobe"])
        else:
            self.index.nprobe = min(self.params["nprobe"], self.index.nlist)

    # ------------------------------------------------------------------ use
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    def add(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        with faiss_threads(self.threads):
            self.index.add_with_ids(_np32(keys), _np64(ids))

    def search(self, q: torch.Tensor, want: int) -> torch.Tensor:
        """Ids ``[Q, want]`` (write counters, -1 where fewer were found) of the nearest entries."""
        want = min(want, self.ntotal, 2048 if self.on_gpus else self.ntotal)  # GPU k <= 2048
        with faiss_threads(self.threads):
            _, ids = self.index.search(_np32(q), want)
        return torch.from_numpy(ids)

    # ------------------------------------------------------------------ persistence and size
    def _cpu_index(self) -> Any:
        import faiss

        return faiss.index_gpu_to_cpu(self.index) if self.on_gpus else self.index

    def to_bytes(self) -> torch.Tensor:
        import faiss

        return torch.from_numpy(faiss.serialize_index(self._cpu_index()).copy())

    def load_bytes(self, data: torch.Tensor, built_size: int, total: int) -> bool:
        """Adopt a serialised index of ``total`` writes; False (nothing adopted) when it is
        another kind, which the memory then rebuilds on its first search."""
        import faiss

        fn = "EpisodicMemory.load_state_dict"
        try:
            index = faiss.deserialize_index(data.numpy())
        except RuntimeError as e:
            raise ValueError(f"{fn}: ivf is not a readable FAISS index ({str(e).splitlines()[0]})") from None
        if _kind_of(index) != self.kind:
            return False
        if index.d != self.dim or index.ntotal > total:
            raise ValueError(
                f"{fn}: the saved index holds {index.ntotal} keys of dimension {index.d}; "
                f"expected dimension {self.dim} and at most total = {total} keys"
            )
        if self.kind != "hnsw":
            index = self._maybe_shard(index)
        self.index, self.built_size = index, built_size
        self.set_search_params()
        return True

    def nbytes(self) -> int:
        """Size of the index as FAISS serialises it (codes, ids, centroids or graph links)."""
        return int(self.to_bytes().numel()) if self.index is not None else 0


def _kind_of(index: Any) -> str | None:
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexIDMap) and isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat):
        return "hnsw"
    return None


def _np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.int64).contiguous().numpy()
