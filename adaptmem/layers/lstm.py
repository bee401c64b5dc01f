"""The LSTM baseline as an adaptmem layer (the same contract as the fast-weight layers)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from adaptmem.layers.base import RecurrentLayer
from adaptmem.ops._checks import check_reset
from adaptmem.utils.checks import check_float, check_positive_int


class LSTMState(NamedTuple):
    """Hidden and cell state, batch-first (``nn.LSTM`` itself keeps them layer-first, ``[1, B, H]``)."""

    h: torch.Tensor  # [B, hidden_size]
    c: torch.Tensor  # [B, hidden_size]


class LSTM(RecurrentLayer):
    r"""One LSTM layer (Hochreiter & Schmidhuber, 1997) following the adaptmem layer contract.

    .. math::
        i_t, f_t, o_t = \sigma(W_{i,f,o} x_t + U_{i,f,o} h_{t-1} + b_{i,f,o}),\quad
        g_t = \tanh(W_g x_t + U_g h_{t-1} + b_g) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t,\quad h_t = o_t \odot \tanh(c_t),\quad y_t = h_t

    A batch-first ``nn.LSTM`` (cuDNN / oneDNN's fused kernels) underneath: a call with resets
    runs it once per stretch of steps between reset steps, zeroing the reset rows' state in
    between, so a reset costs one kernel launch per distinct reset step, not one per step.
    :class:`~adaptmem.layers.FastWeightStack` (kind ``"lstm"``) stacks these layers as
    ``nn.LSTM(num_layers=L, dropout=p)`` stacks its own (same initialisation, same outputs).

    Args:
        d_model: input size.
        hidden_size: H, the state and output size (default ``d_model``).
        dropout: on the output (a stack applies it between layers only, as ``nn.LSTM`` does).

    Inputs: ``x, state=None, reset=None``
        - **x** ``[B, T, d_model]``
        - **state** :class:`LSTMState` ``(h [B, H], c [B, H])`` or ``None`` (zeros).
        - **reset** bool ``[B]`` or ``[B, T]``: zero that row's state before that step.

    Outputs: ``(y [B, T, H], LSTMState)``.

    Example::

        >>> layer = LSTM(d_model=32, hidden_size=64)
        >>> y, state = layer(torch.randn(2, 10, 32))
        >>> y2, state = layer(torch.randn(2, 5, 32), state)   # continue the sequence
    """

    state_type = LSTMState

    def __init__(self, d_model: int, hidden_size: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("LSTM", "d_model", d_model)
        hidden_size = d_model if hidden_size is None else check_positive_int("LSTM", "hidden_size", hidden_size)
        check_float("LSTM", "dropout", dropout, lo=0.0, hi=1.0)
        self.d_model, self.hidden_size = d_model, hidden_size
        self.lstm = nn.LSTM(d_model, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    @property
    def out_dim(self) -> int:
        return self.hidden_size

    def state_shapes(self, batch_size: int):
        return (batch_size, self.hidden_size), (batch_size, self.hidden_size)

    def forward(
        self, x: torch.Tensor, state: LSTMState | None = None, reset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        B, T = self.check_input(x, state)
        reset = check_reset("LSTM", reset, B, T, x.device)
        h, c = self.init_state(B, x.device, x.dtype) if state is None else (s.to(x.dtype) for s in state)
        if reset is None:
            starts = [0]
        else:  # the steps where any row resets (one host sync) start the pieces
            starts = [0] + (reset[:, 1:].any(0).nonzero().flatten() + 1).tolist()
        outs = []
        for t0, t1 in zip(starts, starts[1:] + [T]):
            if reset is not None:
                drop = reset[:, t0, None]
                h, c = h.masked_fill(drop, 0), c.masked_fill(drop, 0)
            y, (h, c) = self.lstm(x[:, t0:t1], (h[None], c[None]))
            h, c = h[0], c[0]
            outs.append(y)
        y = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return self.dropout(y), LSTMState(h, c)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden_size={self.hidden_size}"
