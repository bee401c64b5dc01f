"""Mixed precision in one place: bf16/fp16 autocast on CUDA, plain fp32 elsewhere."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device | str, dtype: str | torch.dtype | None = "bf16"):
    """``torch.autocast`` on CUDA with ``dtype`` (``"bf16"``/``"fp16"``); a no-op on CPU or when
    ``dtype`` is ``None``/``"fp32"``. The library's ops compute their recurrences in fp32 anyway."""
    device = torch.device(device)
    if device.type != "cuda" or dtype in (None, "fp32", torch.float32):
        return contextlib.nullcontext()
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, dtype)  # type: ignore[arg-type]
    return torch.autocast("cuda", dtype=dt)


def grad_scaler(device: torch.device | str, dtype: str | torch.dtype | None = "bf16") -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 on CUDA (bf16 and fp32 need none)."""
    enabled = torch.device(device).type == "cuda" and dtype in ("fp16", torch.float16)
    return torch.amp.GradScaler("cuda", enabled=enabled)
