"""Evaluate N recurrent networks with N different weight vectors at once.

Every network n runs its own inputs through its own weights; the N networks are batched as
the leading dimension of ``bmm``/``baddbmm``. For an LSTM layer with gate pre-activations
``a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh = [a_i, a_f, a_g, a_o]``::

    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g;                           h_t = o * tanh(c_t)

GRU (``r, z, n``) and plain RNN (tanh or relu) cells follow PyTorch's equations exactly.
The input projections of a whole sequence are one ``bmm`` per layer; only the recurrent
product runs step by step. Gradients flow to both the weight vectors and the inputs.

Two forms of that step loop: ``"batched"`` runs it as torch ops (``baddbmm`` + fused gate
math, ~7 ops per step and layer), ``"numba"`` runs an LSTM layer's whole loop, forward and
backward, as one compiled call (:mod:`adaptmem.weights._lstm_numba`); see :func:`functional_rnn`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from adaptmem.ops._fused_cpu import LANES, fused_cpu_available, run_in_threads
from adaptmem.utils.checks import check_choice, check_floating, check_same_device, fmt_shape
from adaptmem.utils.extras import install_hint
from adaptmem.weights.spec import WeightSpec, check_spec, unflatten

BACKENDS = ("auto", "numba", "batched", "reference")

State = Any  # LSTM: (h, c), each [num_layers, N, B, H]; GRU/RNN: h [num_layers, N, B, H]


class BatchedRNN:
    """N networks of one :class:`WeightSpec`, with weights ``vectors [N, P]``.

    Use :meth:`forward` (or call the object) for whole sequences and :meth:`step` for one
    step at a time (e.g. when the next input depends on the last output).

    Args:
        spec, vectors: the networks' layout and their flat weights ``[N, P]``.
        backend: how the step loop runs: ``"numba"``, ``"batched"`` or ``"auto"``, as in
            :func:`functional_rnn`; the attribute ``backend`` holds the form chosen.

    Inputs:
        x: ``[N, B, T, input_size]`` (``B`` sequences per network) or ``[N, T, input_size]``.
        state: optional, as returned by a previous call; zeros when ``None``.
    Outputs:
        ``(y, state)``: ``y`` is ``[N, B, T, out_features]`` (or ``[N, T, out_features]``),
        the Linear's outputs when the spec has one, the last layer's hidden states otherwise.

    Example::

        >>> spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
        >>> nets = BatchedRNN(spec, spec.init_vectors(64))
        >>> y, state = nets(torch.randn(64, 10, 22, 6))   # 10 sequences per network
    """

    def __init__(self, spec: WeightSpec, vectors: torch.Tensor, backend: str = "auto") -> None:
        check_spec("BatchedRNN", spec)
        check_floating("BatchedRNN", "vectors", vectors)
        if vectors.dim() != 2 or vectors.shape[1] != spec.num_params:
            raise ValueError(
                f"BatchedRNN: vectors must be [N, P] = (*, {spec.num_params}), got shape {fmt_shape(vectors)}"
            )
        self.backend = resolve_backend("BatchedRNN", spec, vectors, backend)
        self.spec = spec
        self.n = vectors.shape[0]
        p = unflatten(vectors, spec)
        L = spec.num_layers
        w_ih = [p[f"weight_ih_l{k}"] for k in range(L)]  # [N, GH, in]
        w_hh = [p[f"weight_hh_l{k}"] for k in range(L)]  # [N, GH, H]
        if spec.bias:
            b_ih = [p[f"bias_ih_l{k}"].unsqueeze(1) for k in range(L)]  # [N, 1, GH]
            b_hh = [p[f"bias_hh_l{k}"].unsqueeze(1) for k in range(L)]
        else:
            b_ih = b_hh = [None] * L
        if spec.cell == "gru":  # the n-gate's b_hh sits inside r * (...), so it stays separate
            self.b_x, self.b_h = b_ih, b_hh
        else:
            self.b_x = [None if a is None else a + b for a, b in zip(b_ih, b_hh)]
            self.b_h = [None] * L
        # w_ih is used once per sequence: a transposed view is enough. w_hh is used at every
        # step, and bmm with more than one row per network would copy a transposed view each time.
        self.w_ih_t = [w.transpose(1, 2) for w in w_ih]  # [N, in, GH]
        self.w_hh_t = [w.transpose(1, 2) for w in w_hh]  # [N, H, GH]
        if spec.cell == "lstm":
            # gate order i, f, o, g (for the torch ops and the numba kernel alike): one sigmoid over
            # 3H, one tanh over H. One cat of the transposed views reorders and makes them
            # contiguous in one copy (measured as fast as .contiguous(); index_select, then
            # .contiguous(), was 1.7x slower)
            H = spec.hidden_size

            def ifog(t: torch.Tensor) -> torch.Tensor:
                return torch.cat([t[..., : 2 * H], t[..., 3 * H :], t[..., 2 * H : 3 * H]], dim=-1)

            self.w_ih_t, self.w_hh_t = [ifog(w) for w in self.w_ih_t], [ifog(w) for w in self.w_hh_t]
            self.b_x = [None if b is None else ifog(b) for b in self.b_x]
        else:
            self.w_hh_t = [w.contiguous() for w in self.w_hh_t]
        if spec.output_size is not None:
            self.w_out_t = p["linear.weight"].transpose(1, 2)  # [N, H, out]
            self.b_out = p["linear.bias"].unsqueeze(1)  # [N, 1, out]

    # ---- state ---------------------------------------------------------------------------
    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ValueError(f"BatchedRNN.initial_state: batch must be an int >= 0, got {batch!r}")
        h = like.new_zeros(self.spec.num_layers, self.n, batch, self.spec.hidden_size)
        return (h, h.clone()) if self.spec.cell == "lstm" else h

    def _check_state(self, state: State, batch: int, like: torch.Tensor) -> State:
        if state is None:
            return self.initial_state(batch, like)
        want = (self.spec.num_layers, self.n, batch, self.spec.hidden_size)
        parts = state if self.spec.cell == "lstm" else (state,)
        if self.spec.cell == "lstm" and not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError("BatchedRNN: an LSTM state must be a tuple (h, c)")
        for t in parts:
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                got = fmt_shape(t) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"BatchedRNN: state tensors must be [num_layers, N, B, H] = {want}, got {got}")
            if t.device != like.device or t.dtype != like.dtype:
                raise ValueError(
                    f"BatchedRNN: state tensors must be {like.dtype} on {like.device} like x, "
                    f"got {t.dtype} on {t.device}"
                )
        return state

    # ---- one cell ------------------------------------------------------------------------
    def _cell(self, k: int, gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        """One step of layer k; ``gx = x W_ih^T + b`` is precomputed. Returns (h, c)."""
        cell, H = self.spec.cell, self.spec.hidden_size
        # split() rather than slicing: its backward is one cat instead of a zero-fill per slice
        if cell == "lstm":
            sig, g = torch.baddbmm(gx, h, self.w_hh_t[k]).split([3 * H, H], dim=-1)
            i, f, o = torch.sigmoid(sig).split(H, dim=-1)
            c = torch.addcmul(f * c, i, torch.tanh(g))
            return o * torch.tanh(c), c
        if cell == "gru":
            gh = torch.bmm(h, self.w_hh_t[k]) if self.b_h[k] is None else torch.baddbmm(self.b_h[k], h, self.w_hh_t[k])
            xr, xz, xn = gx.split(H, dim=-1)
            hr, hz, hn = gh.split(H, dim=-1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            return n + z * (h - n), None  # = (1 - z) * n + z * h
        a = torch.baddbmm(gx, h, self.w_hh_t[k])
        return (torch.tanh(a) if cell == "rnn_tanh" else torch.relu(a)), None

    def _project(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """``x [N, M, in] -> x W_ih^T + b [N, M, GH]``."""
        b = self.b_x[k]
        gx = torch.bmm(x, self.w_ih_t[k])
        # bmm + add_ rather than baddbmm: baddbmm first materialises the broadcast bias [N, M, GH]
        return gx if b is None else gx.add_(b)

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        if self.spec.output_size is None:
            return h
        return torch.baddbmm(self.b_out, h, self.w_out_t)

    # ---- public API ----------------------------------------------------------------------
    def step(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """One time step: ``x [N, B, input_size] -> (y [N, B, out_features], state)``."""
        check_floating("BatchedRNN.step", "x", x)
        if x.dim() != 3 or x.shape[0] != self.n or x.shape[2] != self.spec.input_size:
            raise ValueError(
                f"BatchedRNN.step: x must be [N, B, input_size] = ({self.n}, *, "
                f"{self.spec.input_size}), got shape {fmt_shape(x)}"
            )
        # one step runs as torch ops also where whole sequences run the numba kernel (same weights,
        # same gate order): a kernel call per step measured 1.3x (no grad) to 2x (with grad) slower
        # at one sequence per network
        state = self._check_state(state, x.shape[1], x)
        lstm = self.spec.cell == "lstm"
        hs, cs = state if lstm else (state, None)
        new_h, new_c = [], []
        for k in range(self.spec.num_layers):
            h, c = self._cell(k, self._project(k, x), hs[k], cs[k] if lstm else None)
            new_h.append(h)
            new_c.append(c)
            x = h
        h = torch.stack(new_h)
        return self._readout(x), ((h, torch.stack(new_c)) if lstm else h)

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        check_floating("BatchedRNN", "x", x)
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[0] != self.n or x.shape[3] != self.spec.input_size or x.shape[2] == 0:
            raise ValueError(
                f"BatchedRNN: x must be [N, B, T, input_size] or [N, T, input_size] with "
                f"N={self.n}, input_size={self.spec.input_size}, T > 0, got shape {fmt_shape(x)}"
            )
        N, B, T, _ = x.shape
        state = self._check_state(state, B, x)
        lstm = self.spec.cell == "lstm"
        hs, cs = state if lstm else (state, None)
        # time-major inside: [N, T, B, *] so that step t is a contiguous [N, B, *] block
        seq = x.transpose(1, 2).reshape(N, T * B, x.shape[3])  # sizes spelled out: -1 is ambiguous when B = 0
        last_h, last_c = [], []
        for k in range(self.spec.num_layers):
            gx = self._project(k, seq)
            gx = gx.view(N, T, B, gx.shape[-1])
            h, c = hs[k], (cs[k] if lstm else None)
            if self.backend == "numba":
                out, c = _numba_lstm(gx, self.w_hh_t[k], h, c)
                h = out[:, -1]
            else:
                # unbind() rather than gx[:, t]: the backward of T selects would zero-fill T copies of gx
                outs = []
                for gxt in gx.unbind(1):
                    h, c = self._cell(k, gxt, h, c)
                    outs.append(h)
                out = torch.stack(outs, dim=1)
            last_h.append(h)
            last_c.append(c)
            seq = out.reshape(N, T * B, out.shape[-1])
        y = self._readout(seq)
        y = y.view(N, T, B, y.shape[-1]).transpose(1, 2)
        h = torch.stack(last_h)
        new_state = (h, torch.stack(last_c)) if lstm else h
        return (y.squeeze(1) if squeeze else y), new_state

    __call__ = forward


def functional_rnn(
    spec: WeightSpec,
    vectors: torch.Tensor,
    inputs: torch.Tensor,
    state: State = None,
    *,
    return_state: bool = False,
    backend: str = "auto",
):
    """Run N networks, network n with weights ``vectors[n]`` on ``inputs[n]``.

    Args:
        spec: the networks' layout.
        vectors: ``[N, P]`` flat weights (see :class:`WeightSpec`).
        inputs: ``[N, T, input_size]``, or ``[N, B, T, input_size]`` for B sequences per network.
        state: optional initial state; LSTM ``(h, c)``, others ``h``, each ``[num_layers, N, B, H]``
            (``B = 1`` for 3-d inputs).
        return_state: also return the final state.
        backend: ``"numba"`` (LSTMs on the CPU in float32/float64, numba installed: each layer's
            step loop, forward and backward, as one compiled call; the input projections and
            the weight gradients stay batched torch GEMMs), ``"batched"`` (bmm over the N
            networks, a few torch ops per step), ``"reference"`` (a Python loop of
            ``torch.func.functional_call`` on one PyTorch module; the specification), or
            ``"auto"`` (``"numba"`` where it can run, else ``"batched"``). ``"numba"`` gives no
            second derivatives; use ``"batched"`` for double backward.

    Returns:
        outputs ``[N, (B,) T, out_features]``, or ``(outputs, state)`` with ``return_state``.

    Example::

        >>> spec = WeightSpec("lstm", 6, 32, num_layers=2, output_size=6)
        >>> y = functional_rnn(spec, spec.init_vectors(64), torch.randn(64, 41, 6))  # [64, 41, 6]
    """
    check_spec("functional_rnn", spec)
    check_choice("functional_rnn", "backend", backend, BACKENDS)
    check_floating("functional_rnn", "vectors", vectors)
    check_floating("functional_rnn", "inputs", inputs)
    check_same_device("functional_rnn", vectors=vectors, inputs=inputs)
    if vectors.dim() != 2 or vectors.shape[1] != spec.num_params:
        raise ValueError(
            f"functional_rnn: vectors must be [N, P] = (*, {spec.num_params}), got shape {fmt_shape(vectors)}"
        )
    if (
        inputs.dim() not in (3, 4)
        or inputs.shape[0] != vectors.shape[0]
        or inputs.shape[-1] != spec.input_size
        or inputs.shape[-2] == 0
    ):
        raise ValueError(
            f"functional_rnn: inputs must be [N, T, input_size] or [N, B, T, input_size] with "
            f"N={vectors.shape[0]}, input_size={spec.input_size} and T > 0, got shape {fmt_shape(inputs)}"
        )
    if inputs.dtype != vectors.dtype:
        raise TypeError(
            f"functional_rnn: inputs and vectors must share a dtype, got {inputs.dtype} and {vectors.dtype}"
        )
    if backend == "reference":
        y, new_state = _reference(spec, vectors, inputs, state)
    else:
        nets = BatchedRNN(spec, vectors, resolve_backend("functional_rnn", spec, vectors, backend))
        y, new_state = nets(inputs, state)
    return (y, new_state) if return_state else y


def numba_unavailable(spec: WeightSpec, vectors: torch.Tensor) -> str | None:
    """Why ``backend="numba"`` cannot run these networks (``None`` when it can)."""
    blocker = _numba_blocker(spec, vectors)
    return None if blocker is None else blocker[0]


def _numba_blocker(spec: WeightSpec, vectors: torch.Tensor) -> tuple[str, type[Exception]] | None:
    """The first reason the numba kernel cannot run, with the error an explicit request raises:
    ``ValueError`` for the networks or tensors, ``ImportError`` only when numba alone is missing."""
    if spec.cell != "lstm":
        return f"the numba kernel runs LSTMs, got cell {spec.cell!r}", ValueError
    if spec.hidden_size % LANES:
        return (
            f"the numba kernel runs hidden sizes that are multiples of {LANES}, got hidden_size {spec.hidden_size}",
            ValueError,
        )
    if vectors.device.type != "cpu":
        return f"the numba kernel runs on CPU tensors, got device {vectors.device}", ValueError
    if vectors.dtype not in (torch.float32, torch.float64):
        return f"the numba kernel runs float32 and float64, got dtype {vectors.dtype}", ValueError
    if not fused_cpu_available():
        return f"numba is not installed: {install_hint('numba')}", ImportError
    return None


def resolve_backend(fn: str, spec: WeightSpec, vectors: torch.Tensor, backend: str) -> str:
    """The step-loop form that runs: ``"auto"`` is ``"numba"`` where it can run, else ``"batched"``;
    an explicit ``"numba"`` that cannot run raises ``ValueError`` (``ImportError`` when only numba
    is missing)."""
    check_choice(fn, "backend", backend, ("auto", "numba", "batched"))
    if backend == "batched":
        return backend
    blocker = _numba_blocker(spec, vectors)
    if blocker is None or backend == "auto":
        return "batched" if blocker else "numba"
    why, error = blocker
    raise error(f"{fn}: backend='numba' cannot run: {why}")


def _numba_lstm(gx: torch.Tensor, w_hh_t: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
    """One LSTM layer of N networks by the compiled loop: ``(gx [N, T, B, 4H], w_hh_t [N, H, 4H],
    h0, c0 [N, B, H]) -> (hs [N, T, B, H], c_T [N, B, H])``, gates in the order ``i, f, o, g``.
    Without a gradient to take, the loop keeps only the last two steps' gates (no [N, T, B, 4H]
    buffer)."""
    h0, c0 = h0.contiguous(), c0.contiguous()  # a state may be any view; the kernels read C order
    if torch.is_grad_enabled() and any(t.requires_grad for t in (gx, w_hh_t, h0, c0)):
        return _NumbaLSTM.apply(gx, w_hh_t, h0, c0)
    hs, cs, _ = _numba_forward(gx.detach(), w_hh_t.detach(), h0.detach(), c0.detach(), slots=2)
    return hs, cs[:, (gx.shape[1] - 1) % 2]


def _numba_forward(
    gx: torch.Tensor, w_hh_t: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, slots: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``_lstm_numba.lstm_forward``; returns ``hs [N, T, B, H]`` and the saved ``cs``, ``acts``
    (``slots`` steps of them, all T when ``None``)."""
    from adaptmem.weights import _lstm_numba

    N, T, B, G = gx.shape
    S = T if slots is None else min(slots, T)
    gx = gx.contiguous()
    hs = gx.new_empty(N, T, B, G // 4)
    cs, acts = gx.new_empty(N, S, B, G // 4), gx.new_empty(N, S, B, G)
    run_in_threads(_lstm_numba.lstm_forward, N, T, *_numpy(gx, w_hh_t, h0.unsqueeze(1), c0.unsqueeze(1), hs, cs, acts))
    return hs, cs, acts


def _numpy(*tensors: torch.Tensor) -> list:
    """The C-ordered numpy views the kernels take: no copy for the contiguous tensors, which every
    tensor the kernels write into is (a copy there would lose the results)."""
    return [t.detach().contiguous().numpy() for t in tensors]


class _NumbaLSTM(torch.autograd.Function):
    """:func:`_numba_lstm` with a gradient.

    The backward loop gives the gate gradients ``da`` (which are ``gx``'s gradient); the
    recurrent weights' gradient ``sum_t h_{t-1}^T da_t`` is then one batched GEMM over all steps.
    """

    @staticmethod
    def forward(ctx, gx, w_hh_t, h0, c0):
        hs, cs, acts = _numba_forward(gx, w_hh_t, h0, c0)
        ctx.save_for_backward(w_hh_t, h0, c0, hs, cs, acts)
        return hs, cs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs, dcT):
        from adaptmem.weights import _lstm_numba

        w_hh_t, h0, c0, hs, cs, acts = ctx.saved_tensors
        N, T, B, H = hs.shape
        da, dh0, dc0 = (torch.empty(t.shape, dtype=t.dtype) for t in (acts, h0, c0))  # C order: written by the kernel
        # the kernel's dh_{t-1} = da W_hh reads W_hh untransposed: a row-vector product, like the forward's
        run_in_threads(
            _lstm_numba.lstm_backward,
            N,
            T,
            *_numpy(
                dhs,
                dcT.unsqueeze(1),
                w_hh_t.transpose(1, 2),
                c0.unsqueeze(1),
                cs,
                acts,
                da,
                dh0.unsqueeze(1),
                dc0.unsqueeze(1),
            ),
        )
        dw = None
        if ctx.needs_input_grad[1]:
            h_prev = torch.cat([h0.unsqueeze(1), hs[:, :-1]], dim=1).view(N, T * B, H)
            dw = torch.bmm(h_prev.transpose(1, 2), da.view(N, T * B, 4 * H))
        return da, dw, dh0, dc0


def _reference(spec: WeightSpec, vectors: torch.Tensor, inputs: torch.Tensor, state: State):
    """One ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (+ Linear) call per network, via functional_call."""
    from torch.func import functional_call

    squeeze = inputs.dim() == 3
    x = inputs.unsqueeze(1) if squeeze else inputs
    module = spec.build().to(device=vectors.device, dtype=vectors.dtype)
    names = {e.name: ("rnn." + e.name if not e.name.startswith("linear.") else e.name) for e in spec.entries}
    ys, hs, cs = [], [], []
    lstm = spec.cell == "lstm"
    for n in range(vectors.shape[0]):
        params = {names[k]: v for k, v in unflatten(vectors[n], spec).items()}
        s = None
        if state is not None:
            s = (state[0][:, n], state[1][:, n]) if lstm else state[:, n]
        y, s = functional_call(module, params, (x[n], s))
        ys.append(y)
        hs.append(s[0] if lstm else s)
        if lstm:
            cs.append(s[1])
    y = torch.stack(ys)
    h = torch.stack(hs, dim=1)
    return (y.squeeze(1) if squeeze else y), ((h, torch.stack(cs, dim=1)) if lstm else h)


def as_module(spec: WeightSpec, vector: torch.Tensor) -> nn.Module:
    """A fresh :class:`RNNModel` holding a copy of ``vector [P]``."""
    from adaptmem.weights.spec import load_into

    return load_into(vector.detach(), spec.build().to(vector.device, vector.dtype))
