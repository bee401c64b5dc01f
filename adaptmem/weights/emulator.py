"""The emulator: an LSTM that imitates a zoo network given only its code z.

Training an encoder means training it jointly with an emulator to reproduce each zoo
network's output distributions on the network's stored rollouts; the emulator is then
discarded and z is what remains.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptmem.utils.checks import check_choice, check_floating, check_positive_int, fmt_shape

LOSSES = ("tv", "reverse_kl")


class Emulator(nn.Module):
    """An LSTM conditioned on z at the first (BOS) position.

    ``e_t = Linear(x_t) + [t = 0] Linear_z(z)``; ``h = LSTM(e)``; ``logits_t = Linear(h_t)``.
    With the defaults (256 units, 2 layers) it has about 1.06M parameters for the
    formal-language zoo.

    Args:
        in_features: input size of the emulated networks.
        out_features: number of output classes.
        z_dim: size of the code.
        hidden, num_layers: the LSTM.

    Inputs: ``inputs [N, T, in_features]`` (position 0 is the BOS input) and ``z [N, z_dim]``.
    Outputs: ``logits [N, T, out_features]``.

    Example::

        >>> emu = Emulator(6, 6)
        >>> logits = emu(torch.zeros(4, 27, 6), torch.randn(4, 16))   # [4, 27, 6]
    """

    def __init__(
        self, in_features: int, out_features: int, z_dim: int = 16, *, hidden: int = 256, num_layers: int = 2
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("z_dim", z_dim),
            ("hidden", hidden),
            ("num_layers", num_layers),
        ):
            check_positive_int("Emulator", name, v)
        self.inp = nn.Linear(in_features, hidden)
        self.cond = nn.Linear(z_dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers, batch_first=True)
        self.out = nn.Linear(hidden, out_features)
        self.in_features, self.z_dim = in_features, z_dim

    def forward(self, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        check_floating("Emulator", "inputs", inputs)
        check_floating("Emulator", "z", z)
        if inputs.dim() != 3 or inputs.shape[-1] != self.in_features or z.shape != (inputs.shape[0], self.z_dim):
            raise ValueError(
                f"Emulator: inputs must be [N, T, {self.in_features}] and z [N, {self.z_dim}], "
                f"got {fmt_shape(inputs)} and {fmt_shape(z)}"
            )
        e = self.inp(inputs)
        e = torch.cat([e[:, :1] + self.cond(z).unsqueeze(1), e[:, 1:]], dim=1)
        return self.out(self.lstm(e)[0])


def emulation_loss(
    logits: torch.Tensor, target_log_probs: torch.Tensor, kind: str = "tv", reduction: str = "mean"
) -> torch.Tensor:
    """Divergence between the emulator's and the target network's distributions, per position.

    ``kind="tv"``: total variation ``1/2 sum_v |q_v - p_v|`` (in [0, 1]);
    ``kind="reverse_kl"``: ``KL(q || p) = sum_v q_v (log q_v - log p_v)`` with ``q`` the
    emulator. ``reduction``: ``"mean"`` over all positions, or ``"none"`` for ``[N, T]``.
    """
    check_choice("emulation_loss", "kind", kind, LOSSES)
    check_choice("emulation_loss", "reduction", reduction, ("mean", "none"))
    if logits.shape != target_log_probs.shape:
        raise ValueError(
            f"emulation_loss: logits and target_log_probs must have one shape, "
            f"got {fmt_shape(logits)} and {fmt_shape(target_log_probs)}"
        )
    log_q = torch.log_softmax(logits, -1)
    if kind == "tv":
        d = 0.5 * (log_q.exp() - target_log_probs.exp()).abs().sum(-1)
    else:
        d = (log_q.exp() * (log_q - target_log_probs)).sum(-1)
    return d.mean() if reduction == "mean" else d
