"""Memory-based Parameter Adaptation (Sprechmann et al., ICLR 2018).

For each query embedding ``q`` the output head is adapted on the query's ``K`` nearest memory
entries and then applied to ``q``; the adapted parameters are thrown away afterwards. See
REFERENCE.md section 6.1 for the algorithm and section 8, pitfall 11, for the bugs of public
ports that the tests here guard against (unadapted predictions, inner-product retrieval, a
deep copy of the model per query).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from adaptmem.memory.episodic import EpisodicMemory
from adaptmem.memory.mbpa_linear import NeighbourTable, adapt_linear_softmax, neighbour_table, one_step_direction
from adaptmem.utils.checks import check_choice, check_shape

Params = dict[str, torch.Tensor]


class MbPA(nn.Module):
    """Memory-based Parameter Adaptation of an output head.

    For a query ``q`` with neighbours ``(h_i, y_i)``, i = 1..K, from ``memory`` (squared L2)::

        w_i   = κ_i / Σ_j κ_j,   κ_i = 1 / (kernel_eps + ||q - h_i||²)
        L(θx) = -Σ_i w_i log p(y_i | h_i; θx) + l2 · ||θx - θ||²
        θx    ← θ, then ``steps`` times:
                θx ← (θx - lr ∇NLL(θx) + 2·lr·l2·θ) / (1 + 2·lr·l2)
        out   = log_softmax(head(q; θx))

    The update is a gradient step on the weighted NLL with the prior term taken exactly
    (a proximal step). To first order in ``lr·l2`` it is the plain gradient step on ``L``;
    unlike the plain step it stays stable for any ``l2`` and tends to θ as ``l2 → ∞``.
    The head's own parameters θ are never modified.

    Args:
        head: the output network ``g_θ``: maps ``[N, D]`` embeddings to ``[N, C]`` logits
            (classes or vocabulary).
        memory: an :class:`EpisodicMemory` with ``metric="l2"``, keys ``[D]`` = the head's
            inputs and integer class values (shape ``()``).
        k: neighbours per query (clipped to ``len(memory)``; an empty memory means no
            adaptation).
        steps: local gradient steps (0 reproduces the head).
        lr: local learning rate α.
        l2: weight of the prior ``||θx - θ||²``.
        kernel_eps: ε of the kernel.
        chunk_size: queries adapted together; peak memory is about
            ``chunk_size × (#head parameters + K × C)`` floats.
        mode: how the local steps are computed; every path gives the same result to rounding:

            - ``"linear"``: the exact closed form for a head that is a plain ``nn.Linear``
              (:mod:`adaptmem.memory.mbpa_linear`): no copy of the head, ``O(K V)`` per query for
              one step and ``O(K^2 V)`` per further step;
            - ``"vmap"``: ``torch.func`` over the queries (a copy of the head per query);
            - ``"loop"``: one query at a time with ``torch.autograd`` (any head);
            - ``"auto"``: ``"linear"`` for ``nn.Linear`` heads, else ``"vmap"`` if a probe call at
              construction can vmap the head, else ``"loop"`` (with a warning). The choice is
              made once, shown by :attr:`path` and ``print(mbpa)``, and no failing call changes it.
        cache_logits: ``"linear"`` only: keep the unadapted head's softmax (log-softmax for
            ``steps > 1``) on every memory slot, ``capacity x V`` values, recomputing a row when its
            slot's key changes and all rows when the head's parameters change (exact; see
            :class:`~adaptmem.memory.mbpa_linear.NeighbourTable`). ``False`` recomputes the rows of
            each call's distinct neighbours in one GEMM.

    Inputs: ``h [B, D]`` query embeddings.
    Outputs: ``log_probs [B, C]`` under the adapted heads (no autograd graph).

    Example::

        mbpa = MbPA(nn.Linear(64, 10), memory, k=32, steps=5, lr=0.1)
        log_p = mbpa(embeddings)          # [B, 10]
    """

    def __init__(
        self,
        head: nn.Module,
        memory: EpisodicMemory,
        *,
        k: int = 32,
        steps: int = 5,
        lr: float = 0.1,
        l2: float = 0.0,
        kernel_eps: float = 1e-3,
        chunk_size: int = 128,
        mode: str = "auto",
        cache_logits: bool = True,
    ) -> None:
        super().__init__()
        fn = "MbPA"
        if not isinstance(head, nn.Module):
            raise TypeError(f"{fn}: head must be an nn.Module, got {type(head).__name__}")
        if not isinstance(memory, EpisodicMemory):
            raise TypeError(f"{fn}: memory must be an EpisodicMemory, got {type(memory).__name__}")
        if memory.metric != "l2":
            raise ValueError(
                f"{fn}: MbPA retrieves by Euclidean distance; memory.metric must be 'l2', got {memory.metric!r}"
            )
        if memory.value_shape != () or memory.value_dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(
                f"{fn}: memory values must be integer class ids of shape (), got shape "
                f"{memory.value_shape} dtype {memory.value_dtype}"
            )
        for name, value in (("k", k), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{fn}: {name} must be a positive int, got {value!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"{fn}: steps must be an int >= 0, got {steps!r}")
        for name, value in (("lr", lr), ("l2", l2), ("kernel_eps", kernel_eps)):
            if not float(value) >= 0:
                raise ValueError(f"{fn}: {name} must be >= 0, got {value!r}")
        self.head = head
        self.memory = memory
        self.k, self.steps, self.lr, self.l2 = k, steps, float(lr), float(l2)
        self.kernel_eps, self.chunk_size = float(kernel_eps), chunk_size
        self.mode = check_choice(fn, "mode", mode, ("auto", "linear", "vmap", "loop"))
        if not isinstance(cache_logits, bool):
            raise TypeError(f"{fn}: cache_logits must be a bool, got {type(cache_logits).__name__}")
        self.cache_logits = cache_logits
        linear = _is_plain_linear(head)
        if mode == "linear" and not linear:
            raise ValueError(
                f"{fn}: mode='linear' needs a plain nn.Linear head (no subclass, no hooks), "
                f"got {type(head).__name__}; use mode='auto', 'vmap' or 'loop'"
            )
        if linear and head.in_features != memory.key_dim:
            raise ValueError(
                f"{fn}: the head takes {head.in_features} features but the memory keys have key_dim = {memory.key_dim}"
            )
        self.path, self.path_reason = self._choose_path(linear)
        self._table = NeighbourTable()

    @property
    def _param(self) -> torch.Tensor | None:
        return next(self.head.parameters(), None)

    def _choose_path(self, linear: bool) -> tuple[str, str]:
        """The implementation used by every call, decided once: (path, why)."""
        if self.mode != "auto":
            return self.mode, "chosen"
        if linear:
            return "linear", "nn.Linear head: exact closed form"
        p = self._param
        dtype, device = (p.dtype, p.device) if p is not None else (torch.float32, torch.device("cpu"))
        d = self.memory.key_dim
        probe = (
            torch.zeros(1, d, dtype=dtype, device=device),
            torch.zeros(1, 1, d, dtype=dtype, device=device),
            torch.zeros(1, 1, dtype=torch.long, device=device),
            torch.ones(1, 1, dtype=dtype, device=device),
        )
        theta = {n: p.detach() for n, p in self.head.named_parameters()}
        buffers = {n: b.detach() for n, b in self.head.named_buffers()}
        try:
            with torch.no_grad():
                vmap(self._adapt_one_func(theta, buffers, steps=1))(*probe)
        except Exception as err:  # vmap cannot trace some heads (data-dependent flow, .item())
            why = f"vmap probe failed: {type(err).__name__}: {err}"
            warnings.warn(
                f"MbPA: the head cannot be vmapped ({why}); adapting one query at a time (path='loop')", stacklevel=3
            )
            return "loop", why
        return "vmap", "vmap probe passed"

    def extra_repr(self) -> str:
        cache = f", cache_logits={self.cache_logits}" if self.path == "linear" else ""
        return (
            f"k={self.k}, steps={self.steps}, lr={self.lr}, l2={self.l2}, "
            f"kernel_eps={self.kernel_eps}, chunk_size={self.chunk_size}, mode={self.mode!r}, "
            f"path={self.path!r} ({self.path_reason}){cache}"
        )

    @torch.no_grad()
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self._check_queries("MbPA", h)
        theta = {n: p.detach() for n, p in self.head.named_parameters()}
        buffers = {n: b.detach() for n, b in self.head.named_buffers()}
        k = min(self.k, len(self.memory))
        if k == 0 or self.steps == 0:
            return F.log_softmax(functional_call(self.head, (theta, buffers), (h,)), dim=-1)
        out = []
        # One lock around search and fetch: a writer thread between them would hand back keys
        # of other entries than the neighbours found (EpisodicMemory's lock is re-entrant).
        with self.memory.lock:
            for h_c in h.split(self.chunk_size):
                labels, w, slots = self._neighbours(h_c, k)
                if self.path == "linear":
                    out.append(self._adapt_linear(h_c, labels, w, slots))
                    continue
                keys, _ = self.memory.fetch(slots)
                out.append(self._adapt_chunk(theta, buffers, h_c, keys.to(h.dtype), labels, w))
        return torch.cat(out)

    @torch.no_grad()
    def sweep_lr(self, h: torch.Tensor, lrs: Sequence[float]) -> torch.Tensor:
        """``log_probs [len(lrs), B, C]``: :meth:`forward` at each local learning rate in ``lrs``.

        On the linear path with ``steps=1`` the step's direction does not depend on the learning
        rate, so the whole sweep costs one adaptation plus one ``log_softmax`` per rate; otherwise
        it runs one adaptation per rate.
        """
        lrs = [float(lr) for lr in lrs]
        if not lrs or not all(lr >= 0 for lr in lrs):
            raise ValueError(f"MbPA.sweep_lr: lrs must be a non-empty list of numbers >= 0, got {lrs!r}")
        k = min(self.k, len(self.memory))
        if self.path != "linear" or self.steps != 1 or k == 0:
            twins = [
                MbPA(
                    self.head,
                    self.memory,
                    k=self.k,
                    steps=self.steps,
                    lr=lr,
                    l2=self.l2,
                    kernel_eps=self.kernel_eps,
                    chunk_size=self.chunk_size,
                    mode=self.path,
                    cache_logits=self.cache_logits,
                )
                for lr in lrs
            ]
            return torch.stack([m(h) for m in twins])
        self._check_queries("MbPA.sweep_lr", h)
        with self.memory.lock:
            out = [self._adapt_linear(h_c, *self._neighbours(h_c, k), lrs=lrs) for h_c in h.split(self.chunk_size)]
        return torch.cat(out, dim=1)

    def _check_queries(self, fn: str, h: object) -> None:
        h = check_shape(fn, "h", h, (None, self.memory.key_dim), "[B, D]")
        p = self._param
        if p is not None and (h.dtype != p.dtype or h.device != p.device):
            raise TypeError(
                f"{fn}: h must have the head's dtype {p.dtype} and device {p.device}, "
                f"got dtype {h.dtype} device {h.device}"
            )
        if h.device.type != "meta" and not bool(torch.isfinite(h).all()):
            raise ValueError(f"{fn}: h contains NaN or infinite entries")

    def _neighbours(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Labels ``[B, K]``, kernel weights ``[B, K]`` and slots ``[B, K]`` of the neighbours of ``q``."""
        dist, labels, slots = self.memory.search(q, k)
        kappa = 1.0 / (self.kernel_eps + dist.to(q.dtype))
        exact = torch.isinf(kappa)  # kernel_eps = 0 and a stored copy of the query
        kappa = torch.where(exact.any(-1, keepdim=True), exact.to(kappa.dtype), kappa)
        return labels.long(), kappa / kappa.sum(-1, keepdim=True), slots

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """Class ids ``[B]`` under the adapted heads."""
        return self(h).argmax(-1)

    # ------------------------------------------------------------------ internals
    def _adapt_linear(
        self,
        q: torch.Tensor,
        labels: torch.Tensor,
        w: torch.Tensor,
        slots: torch.Tensor,
        lrs: Sequence[float] | None = None,
    ) -> torch.Tensor:
        weight = self.head.weight.detach()
        bias = None if self.head.bias is None else self.head.bias.detach()
        distinct, inverse = torch.unique(slots, return_inverse=True)
        keys_u = self.memory.fetch(distinct)[0].to(q.dtype)
        kind = "probs" if self.steps == 1 else "log_probs"
        if self.cache_logits:
            table = self._table.lookup(weight, bias, distinct, keys_u, capacity=self.memory.capacity, kind=kind)
            index = slots
        else:
            table, index = neighbour_table(keys_u, weight, bias, kind), inverse
        if lrs is None:
            return adapt_linear_softmax(
                q,
                F.linear(q, weight, bias),
                keys_u[inverse],
                labels,
                w,
                table,
                index,
                table_kind=kind,
                steps=self.steps,
                lr=self.lr,
                l2=self.l2,
                bias=bias is not None,
            )
        a = torch.einsum("bkd,bd->bk", keys_u[inverse], q) + (0.0 if bias is None else 1.0)
        d = one_step_direction(a, labels, w, table, index, table_kind=kind)
        z = F.linear(q, weight, bias)
        return torch.stack([F.log_softmax(z + (lr / (1 + 2 * lr * self.l2)) * d, -1) for lr in lrs])

    def _adapt_chunk(self, theta: Params, buffers: Params, q, keys, labels, w) -> torch.Tensor:
        if self.path == "vmap":
            return vmap(self._adapt_one_func(theta, buffers))(q, keys, labels, w)
        return torch.stack([self._adapt_one_loop(theta, buffers, *a) for a in zip(q, keys, labels, w)])

    def _nll(self, buffers: Params) -> Callable[..., torch.Tensor]:
        def nll(params: Params, keys: torch.Tensor, labels: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            logp = F.log_softmax(functional_call(self.head, (params, buffers), (keys,)), dim=-1)
            return -(w * logp.gather(-1, labels[:, None])[:, 0]).sum()

        return nll

    def _step(self, theta: Params, params: Params, grads: Params) -> Params:
        a, b = self.lr, 2 * self.lr * self.l2
        return {n: (p - a * grads[n] + b * theta[n]) / (1 + b) for n, p in params.items()}

    def _predict(self, params: Params, buffers: Params, q: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(functional_call(self.head, (params, buffers), (q[None],)), dim=-1)[0]

    def _adapt_one_func(self, theta: Params, buffers: Params, steps: int | None = None):
        grad_nll = grad(self._nll(buffers))
        steps = self.steps if steps is None else steps

        def adapt(q, keys, labels, w):
            params = theta
            for _ in range(steps):
                params = self._step(theta, params, grad_nll(params, keys, labels, w))
            return self._predict(params, buffers, q)

        return adapt

    def _adapt_one_loop(self, theta: Params, buffers: Params, q, keys, labels, w) -> torch.Tensor:
        nll = self._nll(buffers)
        params = theta
        for _ in range(self.steps):
            with torch.enable_grad():
                leaves = {n: p.detach().requires_grad_() for n, p in params.items()}
                g = torch.autograd.grad(nll(leaves, keys, labels, w), list(leaves.values()), allow_unused=True)
            grads = {n: torch.zeros_like(p) if gi is None else gi for (n, p), gi in zip(leaves.items(), g)}
            params = self._step(theta, params, grads)
        return self._predict(params, buffers, q)


def _is_plain_linear(head: nn.Module) -> bool:
    """``nn.Linear`` itself (a subclass may change ``forward``), with no hooks that change its output."""
    return type(head) is nn.Linear and not head._forward_hooks and not head._forward_pre_hooks
