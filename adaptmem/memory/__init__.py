"""Episodic key-value memory, Memory-based Parameter Adaptation and the neural cache.

- :class:`EpisodicMemory`: FIFO ring buffer of (key, value) pairs with exact kNN search
  (FAISS or torch backends, identical results) and an optional approximate IVF backend.
- :class:`MbPA`: Memory-based Parameter Adaptation of an output head (Sprechmann et al., 2018).
- :class:`NeuralCache` and :func:`mix_log_probs`: the continuous cache of Grave et al. (2017)
  and the log-space interpolation of model, cache and MbPA distributions.
"""

from adaptmem.memory.cache import NeuralCache, mix_log_probs
from adaptmem.memory.episodic import EpisodicMemory, SearchResult, faiss_available
from adaptmem.memory.mbpa import MbPA

__all__ = ["EpisodicMemory", "MbPA", "NeuralCache", "SearchResult", "faiss_available", "mix_log_probs"]
