"""Every input check of the ops, in one place.

The public functions call these once per call and hand checked inputs to their forms, which
trust them. Each message names the function, the argument, what was expected and what arrived.
"""

from __future__ import annotations

import torch

from adaptmem.utils.checks import check_floating, check_same_device, check_shape, fmt_shape

_SRWM_NAMES = ("W_y", "W_q", "W_k", "w_b")


def check_sequence(fn: str, name: str, t, layout: str) -> tuple[int, int, int, int]:
    """``t`` is a floating-point ``[B, T, H, D]`` tensor with at least one step; returns its shape."""
    check_floating(fn, name, t)
    if t.dim() != 4:
        raise ValueError(f"{fn}: {name} must be {layout}, got shape {fmt_shape(t)}")
    if t.shape[1] == 0:
        raise ValueError(f"{fn}: {name} must have at least one time step, got shape {fmt_shape(t)}")
    return tuple(t.shape)


def check_reset(fn: str, reset: torch.Tensor | None, B: int, T: int, device: torch.device) -> torch.Tensor | None:
    """Validate ``reset`` ([B] or [B, T] bool) and return it as [B, T] bool (or ``None``).

    ``reset[b, t]`` set means: the state of row ``b`` is reset before step ``t`` is processed.
    A [B] mask resets before step 0 only.
    """
    if reset is None:
        return None
    if not isinstance(reset, torch.Tensor):
        raise TypeError(f"{fn}: reset must be a bool tensor [B] or [B, T], got {type(reset).__name__}")
    if reset.dtype != torch.bool:
        raise TypeError(f"{fn}: reset must be a bool tensor [B] or [B, T], got dtype {reset.dtype}")
    if reset.device != device:
        raise ValueError(f"{fn}: reset is on {reset.device} but the inputs are on {device}")
    if reset.shape == (B,):
        full = torch.zeros(B, T, dtype=torch.bool, device=device)
        full[:, 0] = reset
        return full
    if reset.shape != (B, T):
        raise ValueError(f"{fn}: reset must be [B] = ({B},) or [B, T] = ({B}, {T}), got shape {fmt_shape(reset)}")
    return reset


def check_qkv(fn: str, q, k, v, beta=False, initial_state=None) -> tuple[int, int, int, int, int]:
    """q, k ``[B, T, H, Dk]``, v ``[B, T, H, Dv]``, beta ``[B, T, H]``, state ``[B, H, Dk, Dv]``.

    ``beta=False``: the op has no beta (linear attention); ``None`` is then a missing beta.
    Returns ``(B, T, H, Dk, Dv)``.
    """
    B, T, H, Dk = check_sequence(fn, "q", q, "[B, T, H, Dk]")
    check_shape(fn, "k", k, (B, T, H, Dk), "[B, T, H, Dk] like q")
    check_floating(fn, "v", v)
    if v.dim() != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"{fn}: v must be [B, T, H, Dv] = ({B}, {T}, {H}, *), got shape {fmt_shape(v)}")
    Dv = v.shape[-1]
    if beta is not False:
        check_shape(fn, "beta", beta, (B, T, H), "[B, T, H]")
    if initial_state is not None:
        check_shape(fn, "initial_state", initial_state, (B, H, Dk, Dv), "[B, H, Dk, Dv]")
    check_same_device(fn, q=q, k=k, v=v, beta=None if beta is False else beta, initial_state=initial_state)
    return B, T, H, Dk, Dv


def check_linear_state(fn: str, state, normalize: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Linear attention's ``initial_state``: ``S`` without normalisation, ``(S, z)`` with it.

    Returns ``(S, z)`` (``z`` is ``None`` without normalisation; both ``None`` for no state).
    """
    if not isinstance(normalize, bool):
        raise TypeError(f"{fn}: normalize must be a bool, got {type(normalize).__name__}")
    if state is None:
        return None, None
    if normalize:
        if not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError(
                f"{fn}: with normalize=True, initial_state must be a tuple (S, z), got {type(state).__name__}"
            )
        S, z = state
        check_floating(fn, "initial_state S", S)
        check_floating(fn, "initial_state z", z)
        if z.shape != S.shape[:-1]:
            raise ValueError(
                f"{fn}: initial_state z must be [B, H, Dk] matching S [B, H, Dk, Dv], got "
                f"shapes {fmt_shape(z)} and {fmt_shape(S)}"
            )
        check_same_device(fn, **{"initial_state S": S, "initial_state z": z})
        return S, z
    if isinstance(state, (tuple, list)):
        raise TypeError(f"{fn}: with normalize=False, initial_state must be a tensor S [B, H, Dk, Dv], got a tuple")
    return state, None


def check_srwm_inputs(fn: str, x, weights, reset_to=None) -> tuple[int, int, int, int]:
    """Validate ``x`` [B, T, H, D] and the weights; returns ``(B, T, H, D)``."""
    B, T, H, D = check_sequence(fn, "x", x, "[B, T, H, D]")
    groups = [("", weights)] + ([("reset_to.", reset_to)] if reset_to is not None else [])
    for prefix, ws in groups:
        if len(ws) != 4:
            raise ValueError(f"{fn}: {prefix or 'weights'} must hold 4 tensors (W_y, W_q, W_k, w_b), got {len(ws)}")
        for name, w in zip(_SRWM_NAMES, ws):
            name = prefix + name
            check_floating(fn, name, w)
            is_rate = name.endswith("w_b")
            last, sym = (4, "4") if is_rate else (D, "D")
            if w.shape[-3:] != (H, D, last) or w.dim() not in (3, 4) or (w.dim() == 4 and w.shape[0] != B):
                raise ValueError(
                    f"{fn}: {name} must be [H, D, {sym}] = ({H}, {D}, {last}) or [B, H, D, {sym}] = "
                    f"({B}, {H}, {D}, {last}) for x of shape {fmt_shape(x)}, got shape {fmt_shape(w)}"
                )
    named = {"x": x, **dict(zip(_SRWM_NAMES, weights))}
    if reset_to is not None:
        named.update({"reset_to." + n: w for n, w in zip(_SRWM_NAMES, reset_to)})
    check_same_device(fn, **named)
    return B, T, H, D


def check_recurrent_delta_inputs(
    fn: str, q, k, v, beta, R_q, R_k, R_v, r_b, initial_state
) -> tuple[int, int, int, int]:
    """q, k, v ``[B, T, H, D]``, beta ``[B, T, H]``, R_* ``[H, D, D]``, r_b ``[H, D]``, state ``(S, y)``."""
    B, T, H, D = check_sequence(fn, "q", q, "[B, T, H, D]")
    for name, t in (("k", k), ("v", v)):
        check_shape(fn, name, t, (B, T, H, D), "[B, T, H, D] like q")
    check_shape(fn, "beta", beta, (B, T, H), "[B, T, H]")
    for name, t in (("R_q", R_q), ("R_k", R_k), ("R_v", R_v)):
        check_shape(fn, name, t, (H, D, D), "[H, D, D]")
    check_shape(fn, "r_b", r_b, (H, D), "[H, D]")
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
            got = (
                f"length {len(initial_state)}"
                if isinstance(initial_state, (tuple, list))
                else type(initial_state).__name__
            )
            raise TypeError(f"{fn}: initial_state must be a RecurrentDeltaState (S, y) or a pair of tensors, got {got}")
        check_shape(fn, "initial_state.S", initial_state[0], (B, H, D, D), "[B, H, D, D]")
        check_shape(fn, "initial_state.y", initial_state[1], (B, H, D), "[B, H, D]")
    S, y = (None, None) if initial_state is None else initial_state
    check_same_device(
        fn, q=q, k=k, v=v, beta=beta, R_q=R_q, R_k=R_k, R_v=R_v, r_b=r_b, **{"initial_state.S": S, "initial_state.y": y}
    )
    return B, T, H, D
