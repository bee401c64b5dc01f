"""Language models over token streams: fast-weight LMs, a softmax-Transformer baseline, and the
truncated-BPTT training, evaluation and generation helpers they share.

Both model classes speak one recurrent protocol::

    logits, state = model(idx [B, T], state)        # state=None: a fresh start

- :class:`FastWeightLM`: the state is every layer's fast weights, O(1) in the context length,
  so training carries it from segment to segment (truncated BPTT: detached at the boundary)
  and the model sees the whole stream; generation costs the same for every token.
- :class:`TransformerLM`: the state is the last ``max_len - 1`` tokens, recomputed on every
  call (no KV cache), so the cost of a token grows with its context up to ``max_len``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adaptmem.layers import FastWeightStack, FeedForward, detach_state, layer_kinds
from adaptmem.utils.checks import (
    check_bool,
    check_choice,
    check_float,
    check_floating,
    check_positive_int,
    check_tensor,
    fmt_shape,
)
from adaptmem.utils.parameters import count_parameters

# The LM is a stack of residual blocks, so it takes the fast-weight kinds (blocks=True): an LSTM
# has no feed-forward width for match_d_ff to size. Snapshots at import; the checks use the registry.
FAST_KINDS = layer_kinds(blocks=True)
KINDS = FAST_KINDS + ("transformer",)
# Layer settings for short training segments (T ~ 64): the fastest on CPU in benchmarks/bench_lm.py
# (SRWM's backward recomputes spans of checkpoint_every steps; DeltaNet's chunks are C x C solves).
SEGMENT_DEFAULTS = {"srwm": {"checkpoint_every": 16}, "deltanet": {"chunk_size": 16}, "linear": {"chunk_size": 16}}
NO_TOKEN = -1  # a forgotten position in a TransformerLM context (masked out of attention)


def _check_tokens(fn: str, idx: Any, vocab_size: int) -> torch.Tensor:
    idx = check_tensor(fn, "idx", idx)
    if idx.dim() != 2 or idx.shape[1] == 0 or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"{fn}: idx must be [B, T] int64 (or int32) token ids with T > 0, got shape "
            f"{fmt_shape(idx)} dtype {idx.dtype}"
        )
    if idx.is_meta:
        raise ValueError(f"{fn}: idx is a meta tensor; token ids must hold data")
    if idx.numel() == 0:  # B = 0: nothing to check
        return idx
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{fn}: idx must hold token ids in [0, {vocab_size}), got values in [{lo}, {hi}]")
    return idx


class FastWeightLM(nn.Module):
    r"""Token embedding -> :class:`~adaptmem.layers.FastWeightStack` -> LayerNorm -> softmax.

    .. math::
        h^0_t = \mathrm{Dropout}(\mathrm{LN}(E[x_t])),\quad (h^L_t, S_t) = \mathrm{Stack}(h^0_t, S_{t-1}),\quad
        p(x_{t+1} \mid x_{\le t}) = \mathrm{softmax}(\mathrm{LN}(h^L_t)\, E_{out}^\top)

    No positional encoding: the fast-weight recurrence orders the tokens.

    Args:
        vocab_size: number of tokens.
        kind: a fast-weight kind, ``adaptmem.layers.layer_kinds(blocks=True)`` (``"srwm"``,
            ``"deltanet"``, ``"linear"``, ``"recurrent_deltanet"``).
        num_layers, d_model, num_heads: sizes of the stack.
        d_ff: feed-forward width (default ``4 * d_model``).
        dropout: on the embedding and inside every block.
        tie_weights: share the embedding with the output layer (Press & Wolf, 2017).
        **layer_kwargs: passed to every fast-weight layer (e.g. ``head_dim``, ``beta_init``).

    Inputs: ``idx, state=None, reset=None``
        - **idx** ``[B, T]`` int64 token ids.
        - **state** the list of per-layer states from the previous call (``None``: fresh).
        - **reset** bool ``[B]`` or ``[B, T]``: restart those rows' state before that step.

    Outputs: ``(logits [B, T, vocab_size], new_state)``; the state is not detached.

    Example::

        >>> lm = FastWeightLM(vocab_size=65, kind="srwm", num_layers=2, d_model=64, num_heads=4)
        >>> logits, state = lm(torch.randint(65, (8, 32)))
        >>> logits, state = lm(torch.randint(65, (8, 32)), detach_state(state))  # continue
    """

    def __init__(
        self,
        vocab_size: int,
        kind: str = "srwm",
        num_layers: int = 4,
        d_model: int = 128,
        num_heads: int = 8,
        d_ff: int | None = None,
        dropout: float = 0.0,
        tie_weights: bool = True,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        check_positive_int("FastWeightLM", "vocab_size", vocab_size)
        check_choice("FastWeightLM", "kind", kind, layer_kinds(blocks=True))
        check_bool("FastWeightLM", "tie_weights", tie_weights)
        self.vocab_size, self.kind = vocab_size, kind
        self.embed = nn.Embedding(vocab_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.stack = FastWeightStack(
            kind, num_layers, d_model, num_heads, d_ff, dropout, final_norm=True, **layer_kwargs
        )
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)  # GPT-2's initialisation
        if not tie_weights:
            nn.init.normal_(self.head.weight, std=0.02)
        # SRWM reads the raw residual stream; at GPT-2's embedding scale (0.02) its softmax keys and
        # queries would start uniform, i.e. without fast-weight updates. Normalise the input instead.
        self.embed_norm = nn.LayerNorm(d_model)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> list:
        """The fresh state for ``batch_size`` rows."""
        return self.stack.init_state(batch_size, device or self.embed.weight.device)

    def forward(
        self, idx: torch.Tensor, state: list | None = None, reset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list]:
        idx = _check_tokens("FastWeightLM", idx, self.vocab_size)
        h, state = self.stack(self.drop(self.embed_norm(self.embed(idx))), state, reset)
        return self.head(h), state

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, kind={self.kind!r}"


class CausalSelfAttention(nn.Module):
    """Multi-head causal softmax attention over the whole input (pre-LN residual block)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"CausalSelfAttention: d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.dropout = num_heads, dropout
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, C]``; ``valid [B, L]`` bool marks the positions that may be attended to."""
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if valid is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:  # causal and valid keys; every position also sees itself, so no row is empty
            eye = torch.eye(T, dtype=torch.bool, device=x.device)
            mask = (torch.ones(T, T, dtype=torch.bool, device=x.device).tril() & valid[:, None, None, :]) | eye
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return x + self.drop(self.out(o.transpose(1, 2).reshape(B, T, C)))


class TransformerLM(nn.Module):
    r"""A standard causal softmax-attention Transformer LM (pre-LN, learned positions, GPT-2 style),
    the baseline for :class:`FastWeightLM`: the same embedding, feed-forward blocks and head, with
    self-attention in place of the fast-weight layer.

    The recurrent interface is kept by carrying *tokens*: the state is the last ``max_len - 1``
    tokens, and each call attends over ``[state, idx]`` (at most ``max_len`` positions),
    recomputing the whole window. There is deliberately no KV cache, so generating a token costs
    O(context) and the window is a hard limit on the context.

    Args:
        vocab_size: number of tokens.
        num_layers, d_model, num_heads, d_ff, dropout, tie_weights: as for :class:`FastWeightLM`.
        max_len: the attention window (and number of learned positions).

    Inputs: ``idx [B, T]`` (any T: longer inputs are processed in windows), ``state`` (token ids
    ``[B, S]`` or ``None``), ``reset`` (bool ``[B]``: forget those rows' context; their context
    positions are masked out of attention and its positions restart, so it continues exactly as a
    fresh row would, while the batch keeps one window length).

    Outputs: ``(logits [B, T, vocab_size], new_state [B, min(S + T, max_len - 1)])``.

    Example::

        >>> lm = TransformerLM(vocab_size=65, num_layers=2, d_model=64, num_heads=4, max_len=64)
        >>> logits, context = lm(torch.randint(65, (8, 32)))
    """

    def __init__(
        self,
        vocab_size: int,
        num_layers: int = 4,
        d_model: int = 128,
        num_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        tie_weights: bool = True,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        check_positive_int("TransformerLM", "vocab_size", vocab_size)
        check_positive_int("TransformerLM", "num_layers", num_layers)
        check_positive_int("TransformerLM", "max_len", max_len)
        check_bool("TransformerLM", "tie_weights", tie_weights)
        check_positive_int("TransformerLM", "d_model", d_model)
        check_float("TransformerLM", "dropout", dropout, lo=0.0, hi=1.0)
        if d_ff is not None:
            check_positive_int("TransformerLM", "d_ff", d_ff)  # 0 is an error, not "the default"
        self.vocab_size, self.max_len, self.kind = vocab_size, max_len, "transformer"
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "attn": CausalSelfAttention(d_model, num_heads, dropout),
                    "ff": FeedForward(d_model, 4 * d_model if d_ff is None else d_ff, dropout),
                }
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.embed.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith(("attn.out.weight", "net.4.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * num_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """An empty context ``[batch_size, 0]``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"TransformerLM.init_state: batch_size must be an int >= 0, got {batch_size!r}")
        return torch.zeros(batch_size, 0, dtype=torch.int64, device=device or self.embed.weight.device)

    def forward(
        self, idx: torch.Tensor, state: torch.Tensor | None = None, reset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = _check_tokens("TransformerLM", idx, self.vocab_size)
        B = idx.shape[0]
        context = self.init_state(B) if state is None else state
        if not isinstance(context, torch.Tensor):
            raise TypeError(
                f"TransformerLM: state must be the previous tokens [B={B}, S] (a tensor), got {type(context).__name__}"
            )
        if context.dim() != 2 or context.shape[0] != B or context.dtype != idx.dtype:
            raise ValueError(
                f"TransformerLM: state must be the previous tokens [B={B}, S] {idx.dtype}, "
                f"got shape {fmt_shape(context)} dtype {context.dtype}"
            )
        if reset is not None:
            if (
                not isinstance(reset, torch.Tensor)
                or reset.dim() != 1
                or reset.shape[0] != B
                or reset.dtype != torch.bool
            ):
                raise ValueError(
                    f"TransformerLM: reset must be bool [B={B}] (a whole row's context), "
                    f"got {fmt_shape(reset) if isinstance(reset, torch.Tensor) else type(reset).__name__}"
                )
            context = torch.where(reset[:, None], NO_TOKEN, context)
        logits = []
        for chunk in idx.split(self.max_len, dim=1):
            out, context = self._window(chunk, context)
            logits.append(out)
        return torch.cat(logits, dim=1) if len(logits) > 1 else logits[0], context

    def _window(self, idx: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = idx.shape[1]
        window = torch.cat((context[:, max(0, context.shape[1] - (self.max_len - T)) :], idx), dim=1)
        valid = window != NO_TOKEN
        if bool(valid.all()):
            valid, pos = None, self.pos.weight[: window.shape[1]]
        else:  # a reset row's positions count from its first remembered token, as in a fresh row
            pos = self.pos((valid.long().cumsum(1) - 1).clamp(min=0))
        h = self.drop(self.embed(window.clamp(min=0)) + pos)
        for block in self.blocks:
            h = block["ff"](block["attn"](h, valid))
        logits = self.head(self.norm(h[:, -T:]))
        return logits, window[:, max(0, window.shape[1] - (self.max_len - 1)) :]

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, max_len={self.max_len}"


def build_lm(
    kind: str,
    vocab_size: int,
    *,
    num_layers: int = 4,
    d_model: int = 128,
    num_heads: int = 8,
    d_ff: int | None = None,
    dropout: float = 0.0,
    tie_weights: bool = True,
    max_len: int = 256,
    **layer_kwargs: Any,
) -> FastWeightLM | TransformerLM:
    """A :class:`TransformerLM` for ``kind="transformer"``, else a :class:`FastWeightLM`.
    ``max_len`` only applies to the Transformer, ``layer_kwargs`` only to fast-weight layers
    (on top of :data:`SEGMENT_DEFAULTS`)."""
    check_choice("build_lm", "kind", kind, (*layer_kinds(blocks=True), "transformer"))
    if kind == "transformer":
        return TransformerLM(vocab_size, num_layers, d_model, num_heads, d_ff, dropout, tie_weights, max_len)
    layer_kwargs = {**SEGMENT_DEFAULTS.get(kind, {}), **layer_kwargs}
    return FastWeightLM(vocab_size, kind, num_layers, d_model, num_heads, d_ff, dropout, tie_weights, **layer_kwargs)


def match_d_ff(target: int, build: Callable[[int], nn.Module], *, multiple: int = 8) -> int:
    """The feed-forward width (a multiple of ``multiple``) whose ``build(d_ff)`` has the parameter
    count closest to ``target``: sizes different sequence mixers to equal parameters."""
    check_positive_int("match_d_ff", "target", target)
    check_positive_int("match_d_ff", "multiple", multiple)
    if not callable(build):
        raise TypeError(f"match_d_ff: build must be callable, got {type(build).__name__}")
    lo = count_parameters(build(multiple))
    per_unit = (count_parameters(build(2 * multiple)) - lo) / multiple  # the count is linear in d_ff
    d_ff = multiple + round((target - lo) / per_unit / multiple) * multiple
    return max(multiple, d_ff)


# --------------------------------------------------------------------- truncated-BPTT streams
class TokenStreams:
    """Training segments for truncated BPTT, as a pure function of the step (so resuming is exact).

    Epoch ``e`` drops a random prefix of fewer than ``seq_len`` tokens (seeded by ``seed`` and
    ``e``, so segment boundaries move between epochs), cuts the rest into
    ``batch_size * world_size`` contiguous streams (as :func:`adaptmem.data.text.batchify`), and
    this rank reads rows ``[rank * batch_size, (rank + 1) * batch_size)`` in ``seq_len`` steps.

    Args:
        tokens: the training corpus ``[N]`` int64.
        batch_size: streams per rank.
        seq_len: segment length T.
        reset_every: if given (a multiple of ``seq_len``), each stream's state is also reset
            every ``reset_every`` tokens, staggered over the streams (see :func:`stream_resets`),
            which bounds the context a model must carry.
        seed, rank, world_size: as named.

    ``batch(step) -> (x [B, T], y [B, T], reset)``: ``reset`` is a bool ``[B]`` of the rows whose
    state must start afresh before this segment (all of them at the start of an epoch) or
    ``None``; pass it to the model.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        batch_size: int,
        seq_len: int,
        *,
        reset_every: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        tokens = check_tensor("TokenStreams", "tokens", tokens)
        if tokens.dim() != 1 or tokens.is_floating_point():
            raise ValueError(
                f"TokenStreams: tokens must be 1-D int64 ids, got shape {fmt_shape(tokens)} dtype {tokens.dtype}"
            )
        self.batch_size = check_positive_int("TokenStreams", "batch_size", batch_size)
        self.seq_len = check_positive_int("TokenStreams", "seq_len", seq_len)
        self.period = _reset_period("TokenStreams", reset_every, seq_len)
        _check_rank("TokenStreams", rank, world_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"TokenStreams: seed must be an int, got {type(seed).__name__}")
        self.tokens, self.seed, self.rank, self.world_size = tokens, seed, rank, world_size
        rows = batch_size * world_size
        usable = (tokens.numel() - seq_len) // rows  # stream length after the largest prefix drop
        if usable < 2:
            raise ValueError(
                f"TokenStreams: {tokens.numel()} tokens are too few for {rows} streams "
                f"(batch_size {batch_size} x world_size {world_size}) of >= 2 tokens"
            )
        self.segments_per_epoch = -(-(usable - 1) // seq_len)
        self._usable, self._epoch, self._streams = usable, -1, None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"TokenStreams.batch: step must be an int >= 0, got {step!r}")
        epoch, i = divmod(step, self.segments_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            offset = int(torch.randint(self.seq_len, (1,), generator=g))
            rows = self.batch_size * self.world_size
            streams = self.tokens[offset : offset + rows * self._usable].view(rows, self._usable)
            self._streams = streams[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            self._epoch = epoch
        t0 = i * self.seq_len
        t1 = min(t0 + self.seq_len, self._usable - 1)
        first_row = self.rank * self.batch_size
        reset = stream_resets(i, self.batch_size, self.period, first_row)
        return self._streams[:, t0:t1], self._streams[:, t0 + 1 : t1 + 1], reset


def _check_rank(fn: str, rank: object, world_size: object) -> None:
    check_positive_int(fn, "world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"{fn}: rank must be an int in [0, world_size={world_size}), got {rank!r}")


def _reset_period(fn: str, reset_every: int | None, seq_len: int) -> int | None:
    if reset_every is None:
        return None
    check_positive_int(fn, "reset_every", reset_every)
    if reset_every % seq_len:
        raise ValueError(f"{fn}: reset_every ({reset_every}) must be a multiple of seq_len ({seq_len})")
    return reset_every // seq_len


def stream_resets(segment: int, batch_size: int, period: int | None, first_row: int = 0) -> torch.Tensor | None:
    """Which of ``batch_size`` streams start afresh at ``segment``: all at segment 0, and stream
    ``r`` (numbered from ``first_row``) whenever ``(segment + r) % period == 0``. Staggering keeps
    every batch a mix of short and long contexts. ``None`` when no stream resets."""
    if segment == 0:
        return torch.ones(batch_size, dtype=torch.bool)
    if period is None:
        return None
    rows = torch.arange(first_row, first_row + batch_size)
    reset = (segment + rows) % period == 0
    return reset if bool(reset.any()) else None


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    state: Any,
    optimizer: torch.optim.Optimizer,
    *,
    reset: torch.Tensor | None = None,
    grad_clip: float | None = 1.0,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: str | None = None,
) -> tuple[float, Any]:
    """One truncated-BPTT update: forward from ``state`` (rows in ``reset`` start afresh),
    backward through this segment only, clip, step; returns ``(loss, state detached for the next
    segment)``.

    ``amp_dtype`` (``"bf16"``/``"fp16"``) enables autocast on CUDA (see
    :mod:`adaptmem.utils.amp`); ``scaler`` is needed for fp16.
    """
    from adaptmem.utils.amp import autocast

    check_choice(
        "train_step",
        "amp_dtype",
        amp_dtype,
        (None, "bf16", "fp16", "fp32", torch.bfloat16, torch.float16, torch.float32),
    )
    if grad_clip is not None:
        check_float("train_step", "grad_clip", grad_clip, lo=0.0)
    with autocast(x.device, amp_dtype):
        logits, state = model(x, state, reset=None if reset is None else reset.to(x.device))
        loss = lm_loss(logits, y)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), detach_state(state)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats, computed in fp32."""
    check_floating("lm_loss", "logits", logits)
    check_tensor("lm_loss", "targets", targets)
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"lm_loss: logits must be [B, T, V] and targets [B, T], got shapes {fmt_shape(logits)} "
            f"and {fmt_shape(targets)}"
        )
    if targets.dtype not in (torch.int64, torch.int32) or (
        targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[-1])
    ):
        raise ValueError(
            f"lm_loss: targets must be int64 token ids in [0, {logits.shape[-1]}), got dtype "
            f"{targets.dtype}"
            + (
                f" values in [{int(targets.min())}, {int(targets.max())}]"
                if targets.numel() and not targets.is_floating_point()
                else ""
            )
        )
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    batch_size: int,
    seq_len: int,
    reset_every: int | None = None,
    max_tokens: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> float:
    """Mean loss (nats/token) on ``tokens`` read as ``batch_size`` contiguous streams in
    ``seq_len`` segments, carrying the state through each whole stream (the same truncated-BPTT
    protocol as training, including the staggered resets of ``reset_every``; see
    :class:`TokenStreams`). With ``world_size > 1`` each rank reads its share of the streams and
    the result is averaged over ranks (call it on every rank). ``max_tokens`` caps the prefix of
    each stream read (for cheap evaluations during training)."""
    from adaptmem.data.text import batchify, bptt_batches

    check_positive_int("evaluate", "batch_size", batch_size)
    check_positive_int("evaluate", "seq_len", seq_len)
    if max_tokens is not None:
        check_positive_int("evaluate", "max_tokens", max_tokens)
    _check_rank("evaluate", rank, world_size)
    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    streams = batchify(tokens, batch_size)
    if max_tokens is not None:
        streams = streams[:, : max(2, max_tokens // batch_size + 1)]
    period = _reset_period("evaluate", reset_every, seq_len)
    rows = torch.arange(batch_size)[rank::world_size]
    streams = streams[rows].to(net.head.weight.device)
    total = torch.zeros(2, dtype=torch.float64, device=streams.device)
    state = None
    for i, (x, y) in enumerate(bptt_batches(streams, seq_len)):
        reset = stream_resets(i, batch_size, period)
        reset = reset[rows].to(x.device) if reset is not None and i > 0 else None
        logits, state = net(x, state, reset=reset)
        total[0] += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
        total[1] += y.numel()
    net.train(was_training)
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(total)
    return float(total[0] / total[1])


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample ``max_new_tokens`` tokens after ``prompt`` (``[T0]`` or ``[B, T0]`` int64), one per
    step through the recurrent state: the prompt is read once, then each call sees only the new
    token (a :class:`TransformerLM` recomputes its window inside; fast-weight models do not).

    ``temperature`` 0 picks the arg-max. Returns the new tokens, ``[B, max_new_tokens]`` (``[N]``
    for a 1-D prompt).
    """
    net = getattr(model, "module", model)
    check_tensor("generate", "prompt", prompt)
    squeeze = prompt.dim() == 1
    idx = prompt.unsqueeze(0) if squeeze else prompt
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(
            f"generate: prompt must be [T0] or [B, T0] token ids with T0 > 0, got shape {fmt_shape(prompt)}"
        )
    check_positive_int("generate", "max_new_tokens", max_new_tokens)
    check_float("generate", "temperature", temperature, lo=0.0)
    if top_k is not None:
        check_positive_int("generate", "top_k", top_k)
    was_training = net.training
    net.eval()
    logits, state = net(idx.to(net.head.weight.device), None)
    out = []
    for _ in range(max_new_tokens):
        last = logits[:, -1].float()
        if temperature == 0:
            nxt = last.argmax(-1, keepdim=True)
        else:
            last = last / temperature
            if top_k is not None:
                kth = last.topk(min(top_k, last.shape[-1]), dim=-1).values[:, -1:]
                last = last.masked_fill(last < kth, float("-inf"))
            probs = last.softmax(-1)
            nxt = torch.multinomial(probs.cpu() if generator is not None else probs, 1, generator=generator)
            nxt = nxt.to(idx.device)
        out.append(nxt)
        logits, state = net(nxt, state)
    net.train(was_training)
    new = torch.cat(out, dim=1)
    return new[0] if squeeze else new


__all__ = [
    "FAST_KINDS",
    "KINDS",
    "CausalSelfAttention",
    "FastWeightLM",
    "TokenStreams",
    "TransformerLM",
    "build_lm",
    "count_parameters",
    "evaluate",
    "generate",
    "lm_loss",
    "match_d_ff",
    "stream_resets",
    "train_step",
]
