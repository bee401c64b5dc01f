"""Probing encoders: represent a network by how it answers learned input sequences.

Both encoders only *run* the target network (through :class:`BatchedRNN`), so z depends on
the network's input-output function alone: it is invariant to hidden-unit permutations,
sign flips and bias shifts. Gradients reach the probes through the target network.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptmem.utils.checks import check_choice
from adaptmem.weights.encoders.base import WeightEncoder, mlp
from adaptmem.weights.functional import BatchedRNN
from adaptmem.weights.spec import WeightSpec

INPUT_KINDS = ("categorical", "continuous")
OUTPUT_KINDS = ("softmax", "identity")


class ResidualLSTMReader(nn.Module):
    """``num_layers`` residual ``LSTMCell`` s reading a sequence step by step.

    ``u_0 = Linear(x_t)``; ``u_l = u_{l-1} + LSTMCell_l(u_{l-1}, state_l)``; the output is
    ``u_L`` (``[N, hidden]``). :meth:`step` is one step; :meth:`forward` a whole sequence.
    """

    def __init__(self, in_features: int, hidden: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(in_features, hidden)
        self.cells = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(num_layers))
        self.hidden = hidden

    def initial_state(self, n: int, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        z = like.new_zeros(n, self.hidden)
        return [(z, z) for _ in self.cells]

    def step(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]]):
        u = self.inp(x)
        new = []
        for cell, s in zip(self.cells, state):
            h, c = cell(u, s)
            new.append((h, c))
            u = u + h
        return u, new

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq [N, T, in] -> u_L`` after the last step, ``[N, hidden]``."""
        state = self.initial_state(seq.shape[0], seq)
        u = seq.new_zeros(seq.shape[0], self.hidden)
        for x in seq.unbind(1):
            u, state = self.step(x, state)
        return u


class _ProbingBase(WeightEncoder):
    permutation_invariant = True
    function_invariant = True

    def __init__(self, spec: WeightSpec, z_dim: int, input_kind: str, output_kind: str) -> None:
        super().__init__(spec, z_dim)
        self.input_kind = check_choice(type(self).__name__, "input_kind", input_kind, INPUT_KINDS)
        self.output_kind = check_choice(type(self).__name__, "output_kind", output_kind, OUTPUT_KINDS)

    def _to_input(self, logits: torch.Tensor) -> torch.Tensor:
        # categorical inputs (tokens) are relaxed to distributions over the vocabulary
        return torch.softmax(logits, -1) if self.input_kind == "categorical" else logits

    def _read_output(self, y: torch.Tensor) -> torch.Tensor:
        return torch.softmax(y, -1) if self.output_kind == "softmax" else y


class ProbingEncoder(_ProbingBase):
    """Non-interactive probing: ``num_probes`` learned input sequences, read through the target.

    Every network answers the same learned probes ``X_m [probe_len, in]`` (softmax-relaxed
    for categorical inputs); at step t the reader sees all M answers ``softmax(y_{m,t})``
    concatenated; ``z = normalise(MLP(reader state after the last step))``.

    Args:
        spec: the encoded networks' layout.
        z_dim: size of z.
        num_probes: M, the number of probe sequences.
        probe_len: steps per probe (paper: 22 for formal languages, 50 for sequential MNIST).
        hidden, num_layers: the residual LSTMCell reader (paper: 256 x 2).
        input_kind: ``"categorical"`` (probes are softmax distributions) or ``"continuous"``.
        output_kind: ``"softmax"`` (outputs are logits) or ``"identity"``.

    Inputs: ``vectors [N, P]``. Outputs: ``z [N, z_dim]`` with unit norm.

    Example::

        >>> enc = ProbingEncoder(WeightSpec("lstm", 6, 32, 2, 6), num_probes=4, hidden=64)
        >>> z = enc(torch.randn(8, 13766))   # [8, 16]
    """

    def __init__(
        self,
        spec: WeightSpec,
        z_dim: int = 16,
        *,
        num_probes: int = 8,
        probe_len: int = 22,
        hidden: int = 256,
        num_layers: int = 2,
        input_kind: str = "categorical",
        output_kind: str = "softmax",
    ) -> None:
        super().__init__(spec, z_dim, input_kind, output_kind)
        self.probes = nn.Parameter(torch.randn(num_probes, probe_len, spec.input_size))
        self.reader = ResidualLSTMReader(num_probes * spec.out_features, hidden, num_layers)
        self.head = mlp(hidden, hidden, z_dim, 1)

    def answers(self, vectors: torch.Tensor) -> torch.Tensor:
        """The targets' (transformed) outputs on the probes, ``[N, M, probe_len, out]``."""
        x = self._to_input(self.probes).unsqueeze(0).expand(len(vectors), -1, -1, -1)
        return self._read_output(BatchedRNN(self.spec, vectors)(x.to(vectors.dtype))[0])

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        y = self.answers(vectors)  # [N, M, T, out]
        return self.head(self.reader(y.transpose(1, 2).flatten(2)))


class InteractiveProbingEncoder(_ProbingBase):
    """Interactive probing: each next probe is decoded from the reader's state.

    The reader starts from a learned state; at step t it emits ``x_t = softmax(Linear(u_{t-1}))``
    (or the raw Linear for continuous inputs), every target network consumes ``x_t`` and
    answers ``y_t``, and the reader reads ``softmax(y_t)``. So the questions adapt to each
    network's previous answers; gradients flow through the target network into the probe
    generator. ``z = normalise(MLP(u_T))``.

    Args:
        spec: the encoded networks' layout.
        z_dim: size of z.
        num_probes: parallel interactive probe streams (paper: 1).
        probe_len: steps (paper: 22 for formal languages, 50 for sequential MNIST).
        hidden, num_layers: the residual LSTMCell reader (paper: 256 x 2).
        input_kind, output_kind: as for :class:`ProbingEncoder`.

    Inputs: ``vectors [N, P]``. Outputs: ``z [N, z_dim]`` with unit norm.

    Example::

        >>> enc = InteractiveProbingEncoder(WeightSpec("lstm", 6, 32, 2, 6), hidden=64)
        >>> z = enc(torch.randn(8, 13766))   # [8, 16]
    """

    def __init__(
        self,
        spec: WeightSpec,
        z_dim: int = 16,
        *,
        num_probes: int = 1,
        probe_len: int = 22,
        hidden: int = 256,
        num_layers: int = 2,
        input_kind: str = "categorical",
        output_kind: str = "softmax",
    ) -> None:
        super().__init__(spec, z_dim, input_kind, output_kind)
        self.num_probes, self.probe_len = num_probes, probe_len
        self.reader = ResidualLSTMReader(num_probes * spec.out_features, hidden, num_layers)
        self.start = nn.Parameter(torch.zeros(hidden))
        self.ask = nn.Linear(hidden, num_probes * spec.input_size)
        self.head = mlp(hidden, hidden, z_dim, 1)

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        N, M = len(vectors), self.num_probes
        nets = BatchedRNN(self.spec, vectors)
        u = self.start.to(vectors.dtype).expand(N, -1)
        state, net_state = self.reader.initial_state(N, vectors), None
        for _ in range(self.probe_len):
            x = self._to_input(self.ask(u).view(N, M, -1))
            y, net_state = nets.step(x, net_state)
            u, state = self.reader.step(self._read_output(y).flatten(1), state)
        return self.head(u)


__all__ = ["ProbingEncoder", "InteractiveProbingEncoder", "ResidualLSTMReader"]
