"""Triton kernels of the fast-weight ops (imported lazily: importing this package imports Triton).

Nothing in :mod:`adaptmem.ops` imports these modules at import time; the public ops import them
inside the function that launches a kernel, so a CPU-only install never needs Triton.

- :mod:`adaptmem.ops.triton.srwm_kernels`: the SRWM forward and backward (one program per
  (batch, head), fast weights held on chip, checkpoints every C steps).
- :mod:`adaptmem.ops.triton.recurrent_kernels`: the delta rule and linear attention as fused
  recurrent kernels (one program per (batch, head, value tile)).
"""
