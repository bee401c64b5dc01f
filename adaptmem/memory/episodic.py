"""A fixed-capacity key-value episodic memory with exact (or IVF) nearest-neighbour search.

Storage is a ring buffer of keys ``[N, D]`` and values ``[N, *value_shape]``: a write of ``B``
pairs overwrites the ``B`` oldest slots in place (FIFO, O(B); nothing is ever compacted or
removed from an index, see REFERENCE.md section 8, pitfall 9). Search is brute force over the
filled slots, with FAISS (``faiss.knn``) or chunked torch matmul + ``topk``.

Every backend finds candidates with its own fast arithmetic and then re-ranks them with one
canonical formula, ``sum((q - h)^2)`` in float32, ordering by (distance, slot). Rows whose
candidate list could hide a tie (the last candidate lies within the float error bound of the
k-th distance) are searched again with a 4x longer list, at worst over every entry. So the
FAISS and torch backends return the same slots and bit-identical distances, and ties always go
to the lowest slot.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from adaptmem.utils.checks import check_choice, check_positive_int, check_tensor, fmt_shape
from adaptmem.utils.extras import install_hint
from adaptmem.utils.integrity import CorruptFileError, load_verified, save_verified

_METRICS = ("l2", "ip")
_BACKENDS = ("auto", "faiss", "torch", "ivf")
_EPS32 = float(torch.finfo(torch.float32).eps)
_CHUNK_ELEMENTS = 1 << 23  # distance-matrix entries per chunk (32 MB of float32)
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
        backend: ``"faiss"`` (exact, ``faiss.knn``; ``faiss.knn_gpu`` on CUDA), ``"torch"``
            (exact, chunked matmul + topk), ``"auto"`` (FAISS when installed, else torch) or
            ``"ivf"`` (approximate FAISS ``IndexIVFFlat``; see ``nlist``/``nprobe``).
        device: where the buffers live; queries on another device are moved and the results
            moved back.
        nlist: IVF only: number of inverted lists (default ``4 * sqrt(len)`` at build time).
        nprobe: IVF only: lists visited per query; recall grows with ``nprobe / nlist``.

    Inputs of ``write``: ``keys [B, D]`` float, ``values [B, *value_shape]`` of ``value_dtype``.
    Outputs of ``search``: a :class:`SearchResult` on the queries' device.

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
        nlist: int | None = None,
        nprobe: int = 8,
    ) -> None:
        fn = "EpisodicMemory"
        self.key_dim = check_positive_int(fn, "key_dim", key_dim)
        self.capacity = check_positive_int(fn, "capacity", capacity)
        self.metric = check_choice(fn, "metric", metric, _METRICS)
        check_choice(fn, "backend", backend, _BACKENDS)
        if not isinstance(value_dtype, torch.dtype):
            raise TypeError(f"{fn}: value_dtype must be a torch.dtype, got {value_dtype!r}")
        if backend in ("faiss", "ivf") and not faiss_available():
            raise ImportError(
                f"{fn}: backend={backend!r} needs FAISS: {install_hint('faiss')} "
                f"(or, with CUDA, {install_hint('gpu')}), or use backend='torch'"
            )
        self.backend = ("faiss" if faiss_available() else "torch") if backend == "auto" else backend
        if isinstance(value_shape, (str, bytes)) or not isinstance(value_shape, Sequence) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value_shape):
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
        self.nlist = nlist
        self.nprobe = check_positive_int(fn, "nprobe", nprobe)
        self._keys = torch.zeros(capacity, key_dim, dtype=torch.float32, device=self.device)
        self._sqnorms = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self._values = torch.zeros((capacity, *self.value_shape), dtype=value_dtype, device=self.device)
        self._size = 0
        self._total = 0  # writes ever made; the next write goes to slot _total % capacity
        self._ivf: Any = None  # faiss index with ids = write counters (IVF backend only)
        self._ivf_built_size = 0

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"EpisodicMemory(key_dim={self.key_dim}, capacity={self.capacity}, len={self._size}, "
            f"value_shape={self.value_shape}, value_dtype={self.value_dtype}, metric={self.metric!r}, "
            f"backend={self.backend!r}, device={str(self.device)!r})"
        )

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
        if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= self._size):
            raise ValueError(
                f"EpisodicMemory.fetch: slots must lie in [0, {self._size}), got range "
                f"[{int(slots.min())}, {int(slots.max())}]"
            )
        s = slots.to(self.device)
        return self._keys[s].to(slots.device), self._values[s].to(slots.device)

    def clear(self) -> None:
        """Forget every entry (the buffers are kept)."""
        self._size = 0
        self._total = 0
        self._ivf = None
        self._ivf_built_size = 0

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
        n = keys.shape[0]
        if n > self.capacity:
            keys, values = keys[-self.capacity :], values[-self.capacity :]
            self._total += n - self.capacity
            n = self.capacity
        ids = torch.arange(self._total, self._total + n, device=self.device)
        slots = ids % self.capacity
        keys = keys.to(self.device, torch.float32)
        self._keys[slots] = keys
        self._sqnorms[slots] = keys.pow(2).sum(-1)
        self._values[slots] = values.to(self.device)
        self._total += n
        self._size = min(self.capacity, self._size + n)
        if self._ivf is not None:
            self._ivf_add(keys, ids)
        return slots

    # ------------------------------------------------------------------ searching
    def search(self, queries: torch.Tensor, k: int) -> SearchResult:
        """The ``k`` nearest entries of each query ``[Q, D]``, nearest first (ties: lowest slot)."""
        fn = "EpisodicMemory.search"
        q_in = self._check_keys(fn, "queries", queries)
        k = check_positive_int(fn, "k", k)
        if self._size == 0:
            raise ValueError(f"{fn}: the memory is empty; write() some entries first")
        if k > self._size:
            raise ValueError(f"{fn}: k = {k} exceeds the number of stored entries ({self._size})")
        q = q_in.to(self.device, torch.float32).contiguous()
        m = min(self._size, k + max(16, k // 2))
        dist, slots, unsafe = self._search_once(q, k, m)
        while len(unsafe):  # rare: ties or near-ties straddle the candidate list; widen it
            m = min(self._size, 4 * m)
            d_u, s_u, again = self._search_once(q[unsafe], k, m)
            dist[unsafe], slots[unsafe] = d_u, s_u
            unsafe = unsafe[again]
        dist, slots = self._finish(dist, slots)
        dev = q_in.device
        return SearchResult(dist.to(dev), self._values[slots].to(dev), slots.to(dev))

    def _search_once(self, q: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact top-k among ``m`` candidates per row, and the rows whose result is not proven."""
        every = m == self._size  # every entry is a candidate: the result is exact
        if self.backend == "ivf" and not every:
            cand, last = self._candidates_ivf(q, m)
        elif self.backend in ("faiss", "ivf"):
            cand, last = self._candidates_faiss(q, m)
        else:
            cand, last = self._candidates_torch(q, m)
        d, slots = self._rerank_candidates(q, cand, k)
        if every:
            unsafe = torch.zeros(len(q), dtype=torch.bool, device=q.device)
        elif self.backend == "ivf":  # approximate by design; only rows that found < k live entries
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
        rows = max(1, _CHUNK_ELEMENTS // (cand.shape[1] * self.key_dim))
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

    # ------------------------------------------------------------------ IVF backend
    def _candidates_ivf(self, q: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._ivf is None or self._ivf.ntotal >= 2 * self._size or self._size >= 2 * self._ivf_built_size:
            # Rebuilt when half the index is stale or the memory has doubled since training:
            # O(N) work after >= N/2 writes, so amortised O(1) per write.
            self._build_ivf()
        if self._ivf is None:  # too few entries to train an IVF quantizer: exact search
            return self._candidates_torch(q, m)
        lo = self._total - self._size  # write ids below lo were overwritten (stale in the index)
        want = m
        while True:
            _, ids = self._ivf.search(q.cpu().numpy(), min(want, self._ivf.ntotal))  # ids: write counters
            ids = torch.from_numpy(ids).to(self.device)
            live = ids >= lo
            if bool((live.sum(1) >= m).all()) or want >= self._ivf.ntotal:
                break
            want *= 4
        slots = torch.where(live, ids % self.capacity, torch.full_like(ids, -1))
        return slots, torch.zeros(len(q), device=self.device)

    def _build_ivf(self) -> None:
        import faiss

        n = self._size
        nlist = self.nlist or max(1, int(4 * math.sqrt(n)))
        if n < 39 * nlist or n < 1024:  # FAISS wants >= 39 training points per list
            self._ivf = None
            return
        quantizer = faiss.IndexFlatL2(self.key_dim) if self.metric == "l2" else faiss.IndexFlatIP(self.key_dim)
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexIVFFlat(quantizer, self.key_dim, nlist, metric)
        index.cp.seed = 1234
        keys = self._keys[:n].cpu().numpy()
        index.train(keys)
        index.nprobe = min(self.nprobe, nlist)
        self._ivf, self._ivf_quantizer = index, quantizer
        self._ivf_built_size = n
        slots = torch.arange(n, device=self.device)
        self._ivf_add(self._keys[:n], self._slot_ids(slots))

    def _slot_ids(self, slots: torch.Tensor) -> torch.Tensor:
        """The write counter that filled each slot."""
        last = self._total - 1  # id of the newest entry, in slot last % capacity
        return last - (last - slots) % self.capacity

    def _ivf_add(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        self._ivf.add_with_ids(keys.cpu().contiguous().numpy(), ids.cpu().numpy().astype("int64"))

    # ------------------------------------------------------------------ checks
    def _check_keys(self, fn: str, name: str, t: object) -> torch.Tensor:
        t = check_tensor(fn, name, t)
        _check_not_meta(fn, name, t)
        if t.dim() != 2 or t.shape[1] != self.key_dim:
            raise ValueError(
                f"{fn}: {name} must be [B, D] with D = key_dim = {self.key_dim}, got shape {fmt_shape(t)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{fn}: {name} must be floating point, got dtype {t.dtype}")
        if t.shape[0] == 0:
            raise ValueError(f"{fn}: {name} is empty (shape {fmt_shape(t)})")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{fn}: {name} contains NaN or infinite entries")
        return t

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the memory exactly (CPU tensors)."""
        state: dict[str, Any] = {
            "config": {
                "key_dim": self.key_dim, "capacity": self.capacity, "value_shape": list(self.value_shape),
                "value_dtype": str(self.value_dtype).removeprefix("torch."), "metric": self.metric,
                "nlist": self.nlist, "nprobe": self.nprobe,
            },
            "keys": self._keys[: self._size].cpu().clone(),
            "values": self._values[: self._size].cpu().clone(),
            "total": self._total,
            "ivf": None,
        }
        if self._ivf is not None:
            import faiss

            state["ivf"] = torch.from_numpy(faiss.serialize_index(self._ivf).copy())
            state["ivf_built_size"] = self._ivf_built_size
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the configuration must match this memory's."""
        cfg = state["config"]
        mine = self.state_dict()["config"]
        for key in ("key_dim", "capacity", "value_shape", "value_dtype", "metric"):
            if cfg[key] != mine[key]:
                raise ValueError(
                    f"EpisodicMemory.load_state_dict: {key} is {cfg[key]!r} in the state but "
                    f"{mine[key]!r} in this memory"
                )
        self.clear()
        n = state["keys"].shape[0]
        self._keys[:n] = state["keys"].to(self.device)
        self._sqnorms[:n] = self._keys[:n].pow(2).sum(-1)
        self._values[:n] = state["values"].to(self.device)
        self._size, self._total = n, int(state["total"])
        if state.get("ivf") is not None and self.backend == "ivf":
            import faiss

            self._ivf = faiss.deserialize_index(state["ivf"].numpy())
            self._ivf_built_size = int(state["ivf_built_size"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the memory to ``path`` atomically, with a format header and a SHA-256 checksum
        (:func:`adaptmem.utils.integrity.save_verified`)."""
        save_verified(self.state_dict(), path, format=FILE_FORMAT, version=FILE_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike, *, backend: str = "auto",
             device: str | torch.device = "cpu", allow_legacy: bool = False) -> EpisodicMemory:
        """A memory restored from :meth:`save`; searches give bit-identical results.

        Raises ``FileNotFoundError``, or :class:`~adaptmem.utils.integrity.CorruptFileError`
        naming the path for a damaged, truncated or foreign file. ``allow_legacy=True`` also
        reads files saved before the checksum existed (plain ``torch.save``, unverified).
        """
        state = load_verified(path, format=FILE_FORMAT, versions=(FILE_VERSION,), allow_legacy=allow_legacy)
        try:
            cfg = state["config"]
            if backend == "auto" and state.get("ivf") is not None:
                backend = "ivf"
            dtype = getattr(torch, cfg["value_dtype"])
            if not isinstance(dtype, torch.dtype):
                raise TypeError(f"value_dtype {cfg['value_dtype']!r} is not a torch dtype")
            mem = cls(cfg["key_dim"], cfg["capacity"], tuple(cfg["value_shape"]), dtype, cfg["metric"], backend,
                      device, nlist=cfg["nlist"], nprobe=cfg["nprobe"])
            mem.load_state_dict(state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            raise CorruptFileError(path, f"is not a valid EpisodicMemory file ({type(e).__name__}: {e})") from e
        return mem


def _check_not_meta(fn: str, name: str, t: torch.Tensor) -> None:
    if t.is_meta:  # they would be moved to the memory's device, and meta tensors hold no data
        raise ValueError(f"{fn}: {name} is a meta tensor (no data); give it on a real device")


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
