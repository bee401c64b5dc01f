"""Learning representations of recurrent networks' weights.

Herrmann, Faccio & Schmidhuber, "Learning Useful Representations of Recurrent Neural Network
Weight Matrices", ICML 2024 (re-implemented from the paper's description).

- :class:`WeightSpec`, :func:`flatten`, :func:`unflatten`, :func:`load_into`: flat layouts
  of ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (+ ``nn.Linear``).
- :func:`functional_rnn`, :class:`BatchedRNN`: N networks with N weight vectors at once.
- :mod:`~adaptmem.weights.symmetries`: permutations, sign flips, bias merging, canonical form.
- :mod:`~adaptmem.weights.zoo`: model zoos on disk and their task-split datasets.
- :mod:`~adaptmem.weights.encoders`: six encoders to unit-norm codes z.
- :class:`Emulator`, :func:`emulation_loss`, :func:`train_emulation`: the training objective.
- :class:`DownstreamProbe`: probes on frozen z.
"""

from adaptmem.weights.downstream import DownstreamProbe, downstream_targets, pca, plot_pca
from adaptmem.weights.emulator import Emulator, emulation_loss
from adaptmem.weights.encoders import ENCODERS, WeightEncoder, build_encoder
from adaptmem.weights.functional import BatchedRNN, functional_rnn
from adaptmem.weights.spec import RNNModel, WeightSpec, flatten, load_into, unflatten
from adaptmem.weights.symmetries import (
    canonicalize,
    flip_sign,
    merge_biases,
    permute_hidden,
    random_permutations,
    shift_biases,
)
from adaptmem.weights.training import EmulationConfig, encode, evaluate_emulation, train_emulation

__all__ = [
    "BatchedRNN",
    "DownstreamProbe",
    "ENCODERS",
    "EmulationConfig",
    "Emulator",
    "RNNModel",
    "WeightEncoder",
    "WeightSpec",
    "build_encoder",
    "canonicalize",
    "downstream_targets",
    "emulation_loss",
    "encode",
    "evaluate_emulation",
    "flatten",
    "flip_sign",
    "functional_rnn",
    "load_into",
    "merge_biases",
    "pca",
    "permute_hidden",
    "plot_pca",
    "random_permutations",
    "shift_biases",
    "train_emulation",
    "unflatten",
]
