"""A fixed-capacity key-value episodic memory with exact or approximate nearest-neighbour search.

Storage is a ring buffer of keys ``[N, D]`` and values ``[N, *value_shape]``: a write of ``B``
pairs overwrites the ``B`` oldest slots in place (FIFO, O(B); nothing is ever compacted or
removed from an index, see REFERENCE.md section 8, pitfall 9). Exact search is brute force
over the filled slots, with FAISS (``faiss.knn``) or blocked torch matmul + a running top-k;
approximate search asks a FAISS IVF-Flat, IVF-PQ or HNSW index for candidates.

Every backend finds candidates with its own fast arithmetic and then re-ranks them with one
canonical formula, ``sum((q - h)^2)`` in float32, ordering by (distance, slot). Rows whose
candidate list could hide a tie (the last candidate lies within the float error bound of the
k-th distance) are searched again with a 4x longer list, at worst over every entry. So the
FAISS and torch backends return the same slots and bit-identical distances, and ties always go
to the lowest slot.

One re-entrant lock serialises every public method, so a writer thread and searcher threads
can share a memory: each search sees the memory between two whole writes.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from adaptmem.memory import _faiss_index as fx
from adaptmem.utils.checks import check_choice, check_positive_int, check_tensor, fmt_shape
from adaptmem.utils.extras import install_hint
from adaptmem.utils.integrity import CorruptFileError, load_verified, save_verified

_METRICS = ("l2", "ip")
_BACKENDS = ("auto", "faiss", "torch", "ivf")  # "ivf" = backend "faiss" with index "ivf" (older spelling)
_INDEXES = ("flat", *fx.KINDS)
_EPS32 = float(torch.finfo(torch.float32).eps)
_CHUNK_ELEMENTS = 1 << 23  # distance-matrix entries per chunk of the dense path (32 MB of float32)
_RERANK_ELEMENTS = 1 << 21  # gathered key entries per re-ranking chunk: 8 MB, cache-sized (2x faster than 32 MB)
# Blocked exact search (CPU): keys are scanned in blocks of _BLOCK so that one [256, _BLOCK]
# float32 tile (4 MB) stays in cache between the GEMM that writes it and the pass that reads it.
# (4096, 16) beat (8192, 16), (8192, 32) and (4096, 32) by 3-8% at N = 1M, D = 128, Q = 256.
_BLOCK = 4096
_GROUP = 16  # columns summarised by one minimum; only groups that beat the threshold are kept
_QUERY_ROWS = 256  # queries per scan: enough rows for an efficient GEMM, a tile that fits L3
FILE_FORMAT, FILE_VERSION = "adaptmem.EpisodicMemory", 1  # of save(): adaptmem.utils.integrity's header


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class SearchResult(NamedTuple):
    """``distances [Q, k]`` (squared L2, or inner products for ``metric="ip"``), ``values
    [Q, k, *value_shape]`` and ``slots [Q, k]`` (int64), nearest first."""

    distances: torch.Tensor
    values: torch.Tensor
    slots: torch.Tensor


class EpisodicMemory:
    """A FIFO key-value memory searched by k nearest neighbours.

    Keys are float vectors (stored float32), values are tensors of a fixed shape and dtype
    (class labels, next tokens, regression targets). When full, each write overwrites the
    oldest entries. ``search`` returns the ``k`` entries closest to each query:

    .. math::
        d(q, h_i) = \\lVert q - h_i \\rVert^2 \\;(\\text{"l2"}) \\quad\\text{or}\\quad
        s(q, h_i) = q \\cdot h_i \\;(\\text{"ip"}, \\text{largest first})

    Args:
        key_dim: dimension ``D`` of keys and queries.
        capacity: number of slots ``N``.
        value_shape: shape of one value (``()`` for a label).
        value_dtype: dtype of the values.
        metric: ``"l2"`` (squared Euclidean, smallest first) or ``"ip"`` (inner product,
            largest first).
        backend: exact search by ``"faiss"`` (``faiss.knn``; ``faiss.knn_gpu`` on CUDA),
            ``"torch"`` (blocked matmul + running top-k) or ``"auto"`` (FAISS when installed,
            else torch). ``"ivf"`` is the older spelling of ``backend="faiss", index="ivf"``.
        device: where the buffers live; queries on another device are moved and the results
            moved back.
        index: ``"flat"`` (exact, the default), or an approximate FAISS index for memories far
            beyond brute-force range: ``"ivf"`` (``IndexIVFFlat``), ``"ivfpq"`` (``IndexIVFPQ``)
            or ``"hnsw"`` (``IndexHNSWFlat``). Candidates are re-ranked exactly, so distances
            are exact; what an approximate index loses is neighbours it did not visit.
        nlist: IVF kinds: number of inverted lists (default ``4 * sqrt(len)`` at build time).
        nprobe: IVF kinds: lists visited per query; recall grows with ``nprobe / nlist``.
        pq_m: IVF-PQ: sub-quantizers per key (must divide ``key_dim``; default ``key_dim / 8``
            or the nearest divisor below), each coded with ``pq_nbits`` bits.
        pq_nbits: IVF-PQ: bits per sub-quantizer code.
        hnsw_m: HNSW: graph neighbours per node.
        ef_search: HNSW: candidate list length of a search (raise for recall).
        ef_construction: HNSW: candidate list length while inserting.
        k_factor: approximate kinds: the index is asked for ``k_factor`` times the candidate
            list (``k + max(16, k / 2)``) and all of them are re-ranked exactly; default 1
            (IVF-Flat and HNSW find exact distances already), 8 for IVF-PQ, whose code
            distances misorder neighbours (recall@32 0.49 at 1 vs 0.9+ at 8 on clustered keys).
        threads: OpenMP threads of every FAISS call (default ``torch.get_num_threads()`` at
            call time, so :func:`adaptmem.utils.configure_threads` governs both libraries; FAISS's
            own default, one per core, collapses on a shared machine).
        shard_gpus: IVF kinds: shard the index over every GPU FAISS sees (faiss-gpu); no
            effect without GPUs.

    Inputs of ``write``: ``keys [B, D]`` float, ``values [B, *value_shape]`` of ``value_dtype``.
    Outputs of ``search``: a :class:`SearchResult` on the queries' device.

    Thread safety: every public method holds :attr:`lock` (a ``threading.RLock``), so writes,
    searches, saves and loads from several threads never interleave. To make several calls
    atomic (``search`` then ``fetch`` of the found slots), hold ``with memory.lock:`` around
    them. The ``keys``/``values`` properties are views that later writes change.

    Example::

        mem = EpisodicMemory(key_dim=64, capacity=10_000)
        mem.write(torch.randn(32, 64), torch.randint(0, 10, (32,)))
        dist, labels, slots = mem.search(torch.randn(5, 64), k=8)   # [5, 8] each
    """

    def __init__(
        self,
        key_dim: int,
        capacity: int,
        value_shape: Sequence[int] = (),
        value_dtype: torch.dtype = torch.long,
        metric: str = "l2",
        backend: str = "auto",
        device: str | torch.device = "cpu",
        *,
        index: str = "flat",
        nlist: int | None = None,
        nprobe: int = 8,
        pq_m: int | None = None,
        pq_nbits: int = 8,
        hnsw_m: int = 32,
        ef_search: int = 64,
        ef_construction: int = 40,
        k_factor: int | None = None,
        threads: int | None = None,
        shard_gpus: bool = True,
    ) -> None:
        fn = "EpisodicMemory"
        self.key_dim = check_positive_int(fn, "key_dim", key_dim)
        self.capacity = check_positive_int(fn, "capacity", capacity)
        self.metric = check_choice(fn, "metric", metric, _METRICS)
        check_choice(fn, "backend", backend, _BACKENDS)
        check_choice(fn, "index", index, _INDEXES)
        if not isinstance(value_dtype, torch.dtype):
            raise TypeError(f"{fn}: value_dtype must be a torch.dtype, got {value_dtype!r}")
        if backend == "ivf":
            if index not in ("flat", "ivf"):
                raise ValueError(f"{fn}: backend='ivf' means index='ivf', got index={index!r}")
            backend, index = "faiss", "ivf"
        if backend == "torch" and index != "flat":
            raise ValueError(f"{fn}: index={index!r} is a FAISS index; use backend='faiss' or 'auto'")
        if (backend == "faiss" or index != "flat") and not faiss_available():
            raise ImportError(
                f"{fn}: backend={backend!r}, index={index!r} needs FAISS: {install_hint('faiss')} "
                f"(or, with CUDA, {install_hint('gpu')}), or use backend='torch'"
            )
        self.backend = ("faiss" if faiss_available() else "torch") if backend == "auto" else backend
        self.index = index
        if (
            isinstance(value_shape, (str, bytes))
            or not isinstance(value_shape, Sequence)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value_shape)
        ):
            raise TypeError(f"{fn}: value_shape must be a sequence of ints >= 0, got {value_shape!r}")
        self.value_shape = tuple(value_shape)
        self.value_dtype = value_dtype
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"{fn}: device must name a torch device, got {device!r}") from e
        if self.device.type == "meta":
            raise ValueError(f"{fn}: device must hold data; 'meta' tensors have none")
        if nlist is not None:
            check_positive_int(fn, "nlist", nlist)
        pq_m = fx.default_pq_m(key_dim) if pq_m is None else check_positive_int(fn, "pq_m", pq_m)
        if key_dim % pq_m:
            raise ValueError(f"{fn}: pq_m must divide key_dim = {key_dim}, got {pq_m}")
        self.nlist = nlist
        self.nprobe = check_positive_int(fn, "nprobe", nprobe)
        self.threads = None if threads is None else check_positive_int(fn, "threads", threads)
        self.index_params: dict[str, Any] = {
            "nlist": nlist,
            "nprobe": self.nprobe,
            "pq_m": pq_m,
            "pq_nbits": check_positive_int(fn, "pq_nbits", pq_nbits),
            "hnsw_m": check_positive_int(fn, "hnsw_m", hnsw_m),
            "ef_search": check_positive_int(fn, "ef_search", ef_search),
            "ef_construction": check_positive_int(fn, "ef_construction", ef_construction),
            "shard_gpus": bool(shard_gpus),
            "k_factor": (8 if index == "ivfpq" else 1)
            if k_factor is None
            else check_positive_int(fn, "k_factor", k_factor),
        }
        self.lock = threading.RLock()
        self._keys = torch.zeros(capacity, key_dim, dtype=torch.float32, device=self.device)
        self._sqnorms = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self._values = torch.zeros((capacity, *self.value_shape), dtype=value_dtype, device=self.device)
        self._size = 0
        self._total = 0  # writes ever made; the next write goes to slot _total % capacity
        self._approx: fx.ApproxIndex | None = None  # built lazily by the first search

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"EpisodicMemory(key_dim={self.key_dim}, capacity={self.capacity}, len={self._size}, "
            f"value_shape={self.value_shape}, value_dtype={self.value_dtype}, metric={self.metric!r}, "
            f"backend={self.backend!r}, index={self.index!r}, device={str(self.device)!r})"
        )

    def __getstate__(self) -> dict[str, Any]:  # copy/pickle: a lock cannot be copied
        state = self.__dict__.copy()
        del state["lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    @property
    def keys(self) -> torch.Tensor:
        """The filled key slots ``[len, D]`` in slot order (a view; do not modify)."""
        return self._keys[: self._size]

    @property
    def values(self) -> torch.Tensor:
        """The filled value slots ``[len, *value_shape]`` in slot order (a view)."""
        return self._values[: self._size]

    def fetch(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys ``[*S, D]`` and values ``[*S, *value_shape]`` stored at ``slots [*S]``."""
        slots = check_tensor("EpisodicMemory.fetch", "slots", slots)
        _check_not_meta("EpisodicMemory.fetch", "slots", slots)
        if slots.dtype != torch.long:
            raise TypeError(f"EpisodicMemory.fetch: slots must be int64, got dtype {slots.dtype}")
        with self.lock:
            if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= self._size):
                raise ValueError(
                    f"EpisodicMemory.fetch: slots must lie in [0, {self._size}), got range "
                    f"[{int(slots.min())}, {int(slots.max())}]"
                )
            s = slots.to(self.device)
            return self._keys[s].to(slots.device), self._values[s].to(slots.device)

    def clear(self) -> None:
        """Forget every entry (the buffers are kept)."""
        with self.lock:
            self._size = 0
            self._total = 0
            self._approx = None

    def memory_usage(self) -> dict[str, int]:
        """Bytes held: ``"ring"`` (keys, their norms and values for every slot) and ``"index"``
        (the approximate index as FAISS serialises it; 0 for ``index="flat"`` or before the
        first search builds it)."""
        with self.lock:
            ring = sum(t.numel() * t.element_size() for t in (self._keys, self._sqnorms, self._values))
            return {"ring": ring, "index": self._approx.nbytes() if self._approx is not None else 0}

    def set_search_params(
        self, *, nprobe: int | None = None, ef_search: int | None = None, k_factor: int | None = None
    ) -> None:
        """Change the recall/speed trade-off of the approximate index without rebuilding it:
        ``nprobe`` (IVF kinds: lists visited per query), ``ef_search`` (HNSW), ``k_factor``
        (candidates re-ranked exactly, as a multiple of the candidate list)."""
        fn = "EpisodicMemory.set_search_params"
        with self.lock:
            if k_factor is not None:
                self.index_params["k_factor"] = check_positive_int(fn, "k_factor", k_factor)
            if nprobe is not None:
                self.nprobe = self.index_params["nprobe"] = check_positive_int(fn, "nprobe", nprobe)
            if ef_search is not None:
                self.index_params["ef_search"] = check_positive_int(fn, "ef_search", ef_search)
            if self._approx is not None:
                self._approx.set_search_params()

    def _faiss_threads(self) -> int:
        return self.threads or torch.get_num_threads()

    # ------------------------------------------------------------------ writing
    def write(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Append ``B`` pairs, overwriting the oldest when full; returns their slots ``[B]``.

        When ``B > capacity`` only the last ``capacity`` pairs are kept (the earlier ones would
        be overwritten within the same write anyway).
        """
        fn = "EpisodicMemory.write"
        keys = self._check_keys(fn, "keys", keys)
        values = check_tensor(fn, "values", values)
        _check_not_meta(fn, "values", values)
        want = (keys.shape[0], *self.value_shape)
        if tuple(values.shape) != want:
            raise ValueError(
                f"{fn}: values must have shape [B, *value_shape] = {fmt_shape(want)}, got "
                f"{fmt_shape(values)} (keys have B = {keys.shape[0]})"
            )
        if values.dtype != self.value_dtype:
            raise TypeError(f"{fn}: values must have dtype {self.value_dtype}, got {values.dtype}")
        keys = keys.to(self.device, torch.float32)
        values = values.to(self.device)
        with self.lock:
            n = keys.shape[0]
            if n > self.capacity:
                keys, values = keys[-self.capacity :], values[-self.capacity :]
                self._total += n - self.capacity
                n = self.capacity
            ids = torch.arange(self._total, self._total + n, device=self.device)
            slots = ids % self.capacity
            self._keys[slots] = keys
            self._sqnorms[slots] = keys.pow(2).sum(-1)
            self._values[slots] = values
            self._total += n
            self._size = min(self.capacity, self._size + n)
            if self._approx is not None and self._approx.index is not None:
                self._approx.add(keys, ids)
            return slots

    # ------------------------------------------------------------------ searching
    def search(self, queries: torch.Tensor, k: int) -> SearchResult:
        """The ``k`` nearest entries of each query ``[Q, D]``, nearest first (ties: lowest slot)."""
        fn = "EpisodicMemory.search"
        q_in = self._check_keys(fn, "queries", queries)
        k = check_positive_int(fn, "k", k)
        q = q_in.to(self.device, torch.float32).contiguous()
        with self.lock:
            if self._size == 0:
                raise ValueError(f"{fn}: the memory is empty; write() some entries first")
            if k > self._size:
                raise ValueError(f"{fn}: k = {k} exceeds the number of stored entries ({self._size})")
            m = min(self._size, k + max(16, k // 2))
            dist, slots, unsafe = self._search_once(q, k, m)
            while len(unsafe):  # rare: ties or near-ties straddle the candidate list; widen it
                m = min(self._size, 4 * m)
                d_u, s_u, again = self._search_once(q[unsafe], k, m)
                dist[unsafe], slots[unsafe] = d_u, s_u
                unsafe = unsafe[again]
            dist, slots = self._finish(dist, slots)
            values = self._values[slots]
        dev = q_in.device
        return SearchResult(dist.to(dev), values.to(dev), slots.to(dev))

    def _search_once(self, q: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact top-k among ``m`` candidates per row, and the rows whose result is not proven."""
        every = m == self._size  # every entry is a candidate: the result is exact
        approx = self._ready_index() if self.index != "flat" and not every else None
        if approx is not None:
            cand, last = self._candidates_approx(approx, q, m)
        elif self.backend == "faiss":
            cand, last = self._candidates_faiss(q, m)
        else:
            cand, last = self._candidates_torch(q, m)
        d, slots = self._rerank_candidates(q, cand, k)
        if every:
            unsafe = torch.zeros(len(q), dtype=torch.bool, device=q.device)
        elif approx is not None:  # approximate by design; only rows that found < k live entries
            unsafe = torch.isinf(d[:, -1])
        else:
            # An entry outside the list has an approximate value >= last; the matmul-form and the
            # canonical float32 values each err by at most ~D eps (|q|^2 + |h|^2).
            bound = q.pow(2).sum(-1) + self._sqnorms[: self._size].max()
            unsafe = last - 4 * self.key_dim * _EPS32 * bound <= d[:, -1]
        return d, slots, unsafe.nonzero().flatten()

    def _candidates_torch(self, q: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``m`` candidate slots per row by matmul-form distances, and each row's largest value."""
        keys, sq = self._keys[: self._size], self._sqnorms[: self._size]
        if q.is_cuda or self._size < 4 * _BLOCK or m > _BLOCK // 8:
            return self._candidates_dense(q, keys, sq, m)
        slots, last = zip(*(_blocked_top_m(q_c, keys, sq, m, self.metric) for q_c in q.split(_QUERY_ROWS)))
        return torch.cat(slots), torch.cat(last)

    def _candidates_dense(
        self, q: torch.Tensor, keys: torch.Tensor, sq: torch.Tensor, m: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Small memories, CUDA and long candidate lists: whole rows of distances, then topk."""
        rows = max(1, _CHUNK_ELEMENTS // self._size)
        slots, last = [], []
        for q_c in q.split(rows):
            if self.metric == "l2":
                d = torch.addmm(sq[None, :], q_c, keys.T, alpha=-2.0).add_(q_c.pow(2).sum(-1, keepdim=True))
            else:
                d = -(q_c @ keys.T)
            v, i = d.topk(m, dim=1, largest=False, sorted=False)
            slots.append(i)
            last.append(v.max(dim=1).values)
        return torch.cat(slots), torch.cat(last)

    def _candidates_faiss(self, q: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        import faiss

        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        keys = self._keys[: self._size]
        if q.is_cuda:  # faiss-gpu: brute force on the GPU, torch tensors in and out
            import faiss.contrib.torch_utils  # noqa: F401  (teaches faiss about torch tensors)

            res = _gpu_resources()
            d, i = faiss.knn_gpu(res, q, keys, m, metric=metric)
            torch.cuda.synchronize(q.device)  # FAISS runs on its own stream
        else:
            with fx.faiss_threads(self._faiss_threads()), fx.gemm_path(len(q)):
                d_np, i_np = faiss.knn(q.numpy(), keys.numpy(), m, metric=metric)
            d, i = torch.from_numpy(d_np), torch.from_numpy(i_np)
        v = d if self.metric == "l2" else -d
        return i.long(), v.max(dim=1).values

    # ------------------------------------------------------------------ exact re-ranking
    def _canonical(self, q: torch.Tensor, cand_keys: torch.Tensor) -> torch.Tensor:
        """Ordering values (smaller = nearer) of ``q [Q, D]`` against ``cand_keys [Q, M, D]``."""
        if self.metric == "l2":
            return (q[:, None, :] - cand_keys).pow(2).sum(-1)
        return -(q[:, None, :] * cand_keys).sum(-1)

    def _rerank_candidates(self, q: torch.Tensor, cand: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = max(1, _RERANK_ELEMENTS // (cand.shape[1] * self.key_dim))
        out_d, out_s = [], []
        for q_c, c_c in zip(q.split(rows), cand.split(rows)):
            missing = c_c < 0
            c_c = c_c.clamp_min(0)
            d = self._canonical(q_c, self._keys[c_c]).masked_fill(missing, math.inf)
            order = _sort_key(d, c_c.masked_fill(missing, self.capacity)).topk(k, dim=1, largest=False).indices
            out_d.append(d.gather(1, order))
            out_s.append(c_c.gather(1, order))
        return torch.cat(out_d), torch.cat(out_s)

    def _finish(self, d: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = _sort_key(d, slots).argsort(dim=1)  # keys are distinct, so this is deterministic
        d, slots = d.gather(1, order), slots.gather(1, order)
        return (d if self.metric == "l2" else -d), slots

    # ------------------------------------------------------------------ approximate indexes
    def _ready_index(self) -> fx.ApproxIndex | None:
        """The approximate index, (re)built when needed; None while too small to train one.

        FIFO eviction never touches the index (no ``remove_ids``; HNSW has none): overwritten
        entries stay in it, are dropped at search time by their write counter, and the index is
        rebuilt from the ring when half of it is stale or the memory has doubled since the last
        build: O(N) (IVF: k-means; HNSW: every insert again) after >= N/2 writes.
        """
        a = self._approx
        if a is None:
            a = self._approx = fx.ApproxIndex(
                self.index, self.key_dim, self.metric, self.index_params, self._faiss_threads()
            )
        a.threads = self._faiss_threads()
        n = self._size
        if a.index is None or a.ntotal >= 2 * n or n >= 2 * a.built_size:
            if not a.can_build(n):
                a.index, a.built_size = None, 0
                return None
            a.build(self._keys[:n], self._slot_ids(torch.arange(n, device=self.device)))
        return a

    def _candidates_approx(self, a: fx.ApproxIndex, q: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo = self._total - self._size  # write ids below lo were overwritten (stale in the index)
        want = m * self.index_params["k_factor"]
        while True:
            ids = a.search(q, want).to(self.device)  # ids: write counters, -1 = not found
            live = ids >= lo
            if bool((live.sum(1) >= m).all()) or want >= a.ntotal:
                break
            want *= 4
        slots = torch.where(live, ids % self.capacity, torch.full_like(ids, -1))
        return slots, torch.zeros(len(q), device=self.device)

    def _slot_ids(self, slots: torch.Tensor) -> torch.Tensor:
        """The write counter that filled each slot."""
        last = self._total - 1  # id of the newest entry, in slot last % capacity
        return last - (last - slots) % self.capacity

    # ------------------------------------------------------------------ checks
    def _check_keys(self, fn: str, name: str, t: object) -> torch.Tensor:
        t = check_tensor(fn, name, t)
        _check_not_meta(fn, name, t)
        if t.dim() != 2 or t.shape[1] != self.key_dim:
            raise ValueError(f"{fn}: {name} must be [B, D] with D = key_dim = {self.key_dim}, got shape {fmt_shape(t)}")
        if not t.is_floating_point():
            raise TypeError(f"{fn}: {name} must be floating point, got dtype {t.dtype}")
        if t.shape[0] == 0:
            raise ValueError(f"{fn}: {name} is empty (shape {fmt_shape(t)})")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{fn}: {name} contains NaN or infinite entries")
        return t

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return {
            "key_dim": self.key_dim,
            "capacity": self.capacity,
            "value_shape": list(self.value_shape),
            "value_dtype": str(self.value_dtype).removeprefix("torch."),
            "metric": self.metric,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "index": self.index,
            "index_params": dict(self.index_params),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the memory exactly (CPU tensors)."""
        with self.lock:
            state: dict[str, Any] = {
                "config": self._config(),
                "keys": self._keys[: self._size].cpu().clone(),
                "values": self._values[: self._size].cpu().clone(),
                "total": self._total,
                "ivf": None,  # the serialised approximate index (any kind; the key predates PQ/HNSW)
            }
            if self._approx is not None and self._approx.index is not None:
                state["ivf"] = self._approx.to_bytes()
                state["ivf_built_size"] = self._approx.built_size
            return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the configuration must match this memory's.

        The state is checked whole before anything changes (shapes, dtypes, ``total``
        against the filled slots, finite keys, the index's size); a bad state raises a
        ``ValueError`` naming the field and leaves the memory as it was.
        """
        keys, values, total, blob, built = self._check_state(state)
        approx = None
        if blob is not None and self.index != "flat":  # a saved index of another kind is rebuilt
            approx = fx.ApproxIndex(self.index, self.key_dim, self.metric, self.index_params, self._faiss_threads())
            if not approx.load_bytes(blob, built, total):
                approx = None
        with self.lock:
            n = keys.shape[0]
            self._keys[:n] = keys.to(self.device)
            self._sqnorms[:n] = self._keys[:n].pow(2).sum(-1)
            self._values[:n] = values.to(self.device)
            self._size, self._total = n, total
            self._approx = approx

    def _check_state(self, state: Any) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor | None, int]:
        fn = "EpisodicMemory.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{fn}: state must be a dict from state_dict(), got {type(state).__name__}")
        missing = [f for f in ("config", "keys", "values", "total") if f not in state]
        if missing:
            raise ValueError(f"{fn}: state lacks the field(s) {missing}")
        cfg, mine = state["config"], self._config()
        if not isinstance(cfg, dict):
            raise ValueError(f"{fn}: config must be a dict, got {type(cfg).__name__}")
        for key in ("key_dim", "capacity", "value_shape", "value_dtype", "metric"):
            if cfg.get(key) != mine[key]:
                raise ValueError(f"{fn}: {key} is {cfg.get(key)!r} in the state but {mine[key]!r} in this memory")
        keys, values, total = state["keys"], state["values"], state["total"]
        if (
            not isinstance(keys, torch.Tensor)
            or keys.dtype != torch.float32
            or keys.dim() != 2
            or keys.shape[1] != self.key_dim
            or keys.shape[0] > self.capacity
        ):
            got = (
                f"shape {fmt_shape(keys)} dtype {keys.dtype}" if isinstance(keys, torch.Tensor) else type(keys).__name__
            )
            raise ValueError(
                f"{fn}: keys must be float32 [n, {self.key_dim}] with n <= capacity = {self.capacity}, got {got}"
            )
        n = keys.shape[0]
        want = (n, *self.value_shape)
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != want or values.dtype != self.value_dtype:
            got = (
                f"shape {fmt_shape(values)} dtype {values.dtype}"
                if isinstance(values, torch.Tensor)
                else type(values).__name__
            )
            raise ValueError(f"{fn}: values must be {self.value_dtype} {fmt_shape(want)} (one per key), got {got}")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"{fn}: total (writes ever made) must be an int >= 0, got {total!r}")
        if n != min(total, self.capacity):  # the ring fills slots 0..total-1 before it wraps
            raise ValueError(
                f"{fn}: total = {total} writes into capacity {self.capacity} fill "
                f"{min(total, self.capacity)} slots, but the state holds {n} keys"
            )
        if not bool(torch.isfinite(keys).all()):
            raise ValueError(f"{fn}: keys contain NaN or infinite entries")
        blob, built = state.get("ivf"), state.get("ivf_built_size", 0)
        if blob is not None:
            if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8 or blob.dim() != 1:
                raise ValueError(f"{fn}: ivf must be None or a 1-D uint8 tensor (a serialised FAISS index)")
            if isinstance(built, bool) or not isinstance(built, int) or not 0 < built <= n:
                raise ValueError(f"{fn}: ivf_built_size must be an int in [1, {n}], got {built!r}")
        return keys, values, total, blob, built

    def save(self, path: str | os.PathLike) -> None:
        """Write the memory to ``path`` atomically, with a format header and a SHA-256 checksum
        (:func:`adaptmem.utils.integrity.save_verified`)."""
        save_verified(self.state_dict(), path, format=FILE_FORMAT, version=FILE_VERSION)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        backend: str = "auto",
        device: str | torch.device = "cpu",
        threads: int | None = None,
        allow_legacy: bool = False,
    ) -> EpisodicMemory:
        """A memory restored from :meth:`save`; searches give bit-identical results.

        Raises ``FileNotFoundError``, or :class:`~adaptmem.utils.integrity.CorruptFileError`
        naming the path for a damaged, truncated or foreign file. ``allow_legacy=True`` also
        reads files saved before the checksum existed (plain ``torch.save``, unverified).
        """
        state = load_verified(path, format=FILE_FORMAT, versions=(FILE_VERSION,), allow_legacy=allow_legacy)
        try:
            cfg = state["config"]
            # Files from before ``index`` existed: an IVF index was saved iff the backend was "ivf".
            index = cfg.get("index", "ivf" if state.get("ivf") is not None else "flat")
            params = {k: v for k, v in cfg.get("index_params", {}).items() if k not in ("nlist", "nprobe")}
            if index != "flat" and backend in ("auto", "ivf"):
                backend = "faiss"
            dtype = getattr(torch, cfg["value_dtype"])
            if not isinstance(dtype, torch.dtype):
                raise TypeError(f"value_dtype {cfg['value_dtype']!r} is not a torch dtype")
            mem = cls(
                cfg["key_dim"],
                cfg["capacity"],
                tuple(cfg["value_shape"]),
                dtype,
                cfg["metric"],
                backend,
                device,
                index=index,
                nlist=cfg["nlist"],
                nprobe=cfg["nprobe"],
                threads=threads,
                **params,
            )
            mem.load_state_dict(state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            raise CorruptFileError(path, f"is not a valid EpisodicMemory file ({type(e).__name__}: {e})") from e
        return mem


def _check_not_meta(fn: str, name: str, t: torch.Tensor) -> None:
    if t.is_meta:  # they would be moved to the memory's device, and meta tensors hold no data
        raise ValueError(f"{fn}: {name} is a meta tensor (no data); give it on a real device")


def _blocked_top_m(
    q: torch.Tensor, keys: torch.Tensor, sqnorms: torch.Tensor, m: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``m`` (unsorted) slots of ``q [Q, D]`` among ``keys [N, D]`` by matmul-form
    distances, and each row's largest kept value, without a ``[Q, N]`` matrix.

    Keys are scanned in blocks of ``_BLOCK``; one GEMM per block gives ``||h||^2 - 2 q.h`` (the
    ``||q||^2`` term is added at the end; ``-q.h`` for "ip"). Columns ``j, j + G, ...`` of a
    block (``G = _BLOCK / _GROUP``) form group ``j``, summarised by their minimum. Only groups
    whose minimum lies below the row's current m-th best are kept, and the running top-m is
    refreshed from the kept columns after blocks 1, 2, 4, ... (and whenever they pile up). An
    entry never kept is >= the threshold of its time, and thresholds only decrease, so the
    result is the exact top m of the matmul-form values: the GEMM dominates, the selection
    touches each value once (the group minimum) plus a few per cent of them again.
    """
    rows, n = q.shape[0], keys.shape[0]
    groups = _BLOCK // _GROUP
    q_mat = q * -2.0 if metric == "l2" else -q  # exact scalings: the GEMM gives the whole value
    tile = q.new_empty(rows, _BLOCK)
    member = torch.arange(_GROUP, device=q.device) * groups  # column offsets within a group
    best_v, best_i = _block_values(q_mat, keys, sqnorms, 0, tile, metric).topk(m, dim=1, largest=False, sorted=False)
    threshold = best_v.amax(1, keepdim=True)
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    kept_size, block, next_merge = 0, 1, 2
    for start in range(_BLOCK, n, _BLOCK):
        d = _block_values(q_mat, keys, sqnorms, start, tile, metric).view(rows, _GROUP, groups)
        row, grp = (d.amin(1) < threshold).nonzero(as_tuple=True)
        if len(row):
            kept.append((row, d[row, :, grp], start + grp[:, None] + member))
            kept_size += len(row)
        block += 1
        if kept and (block == next_merge or kept_size > 4 * groups * rows or start + _BLOCK >= n):
            best_v, best_i = _merge_kept(best_v, best_i, kept)
            threshold = best_v.amax(1, keepdim=True)
            kept, kept_size = [], 0
            next_merge = 2 * block if block == next_merge else next_merge
    last = best_v.amax(1)
    if metric == "l2":
        last = last + q.pow(2).sum(-1)
    return best_i, last


def _block_values(
    q_mat: torch.Tensor, keys: torch.Tensor, sqnorms: torch.Tensor, start: int, tile: torch.Tensor, metric: str
) -> torch.Tensor:
    """Matmul-form values ``[Q, _BLOCK]`` of keys ``start .. start + _BLOCK`` into ``tile``;
    columns past the last key are +inf."""
    stop = min(start + _BLOCK, keys.shape[0])
    out = tile if stop - start == _BLOCK else tile[:, : stop - start]
    if metric == "l2":
        torch.addmm(sqnorms[start:stop], q_mat, keys[start:stop].T, out=out)
    else:
        torch.mm(q_mat, keys[start:stop].T, out=out)
    if stop - start < _BLOCK:
        tile[:, stop - start :] = math.inf
    return tile


def _merge_kept(
    best_v: torch.Tensor, best_i: torch.Tensor, kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-m of each row's current best and its kept groups (rows, values, slots)."""
    rows, m = best_v.shape
    row = torch.cat([r for r, _, _ in kept])
    vals = torch.cat([v for _, v, _ in kept])
    slots = torch.cat([s for _, _, s in kept])
    order = row.argsort(stable=True)
    row, vals, slots = row[order], vals[order], slots[order]
    count = torch.bincount(row, minlength=rows)
    pos = torch.arange(len(row), device=row.device) - (count.cumsum(0) - count)[row]
    width = int(count.max())
    v = vals.new_full((rows, width, _GROUP), math.inf)  # rows with fewer groups pad with +inf
    s = slots.new_zeros((rows, width, _GROUP))
    v[row, pos], s[row, pos] = vals, slots
    v, s = torch.cat([best_v, v.view(rows, -1)], 1), torch.cat([best_i, s.view(rows, -1)], 1)
    best_v, j = v.topk(m, dim=1, largest=False, sorted=False)
    return best_v, s.gather(1, j)


def _sort_key(d: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Distinct int64 keys ordered like (d, slot): float bits made monotone, slot in the low bits."""
    bits = d.contiguous().view(torch.int32)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats sort reversed
    return (bits.long() << 32) | slots


_GPU_RES: dict[int, Any] = {}


def _gpu_resources() -> Any:
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        raise RuntimeError(
            f"EpisodicMemory.search: CUDA tensors need faiss-gpu ({install_hint('gpu')}, after "
            "pip uninstall faiss-cpu); faiss-cpu is installed. Use backend='torch' or a CPU memory"
        )
    dev = torch.cuda.current_device()
    if dev not in _GPU_RES:
        _GPU_RES[dev] = faiss.StandardGpuResources()
    return _GPU_RES[dev]
