"""Atomic, verified checkpoints that resume exactly.

A checkpoint is written with :func:`adaptmem.utils.integrity.save_verified`: atomically (a
temporary file in the target's directory, fsynced, then renamed over the target, so a crash
leaves the old or the new file, never a torn one), with a header that names the format and
holds the SHA-256 of the payload. :func:`load_checkpoint` checks both before it unpickles
anything, loads with ``weights_only=True`` (no code runs from the file), and validates the
structure. Together with :func:`adaptmem.utils.seed.get_rng_state` it makes a resumed run
continue bit for bit; :func:`resolve_resume_args` decides which command-line flags a resumed
run may change.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

import torch

from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.integrity import CorruptFileError, load_verified, save_verified
from adaptmem.utils.seed import get_rng_state, set_rng_state

CHECKPOINT_FORMAT = "adaptmem.checkpoint"
CHECKPOINT_VERSION = 1
_KEYS = ("model", "optimizer", "scheduler", "scaler", "step", "rng", "extra")


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`adaptmem.utils.atomic.atomic_write` (no header;
    the library's own files use :func:`adaptmem.utils.integrity.save_verified`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    step: int = 0,
    **extra: Any,
) -> None:
    """Save model/optimizer/scheduler/scaler state, the step, all RNG states and ``extra``.

    ``extra`` values must be tensors, numbers, strings, ``None``, NumPy arrays, adaptmem
    states, or lists, tuples and dicts of those (a ``TypeError`` names any other entry).
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"save_checkpoint: step must be an int >= 0, got {step!r}")
    _check_targets("save_checkpoint", model, optimizer, scheduler, scaler)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step,
        "rng": get_rng_state(),
        "extra": extra,
    }
    save_verified(state, path, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION)


def read_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", allow_legacy: bool = False
) -> dict[str, Any]:
    """The verified contents of a checkpoint: ``{"model", "optimizer", "scheduler", "scaler",
    "step", "rng", "extra"}``, without restoring anything.

    ``allow_legacy=True`` also reads checkpoints written before the header existed (plain
    ``torch.save``; no checksum, so only for files you trust; NumPy arrays and adaptmem states
    are the only objects unpickled). Raises ``FileNotFoundError`` or
    :class:`~adaptmem.utils.integrity.CorruptFileError`.
    """
    state = load_verified(
        path,
        format=CHECKPOINT_FORMAT,
        versions=(CHECKPOINT_VERSION,),
        map_location=map_location,
        allow_legacy=allow_legacy,
    )
    _check_structure(path, state)
    return state


def _check_structure(path, state: Any) -> None:
    def bad(why: str):
        raise CorruptFileError(path, f"is not a valid checkpoint: {why}")

    if not isinstance(state, Mapping):
        bad(f"holds a {type(state).__name__}, not a dict")
    missing = [k for k in _KEYS if k not in state]
    if missing:
        bad(f"missing {missing}")
    if not isinstance(state["model"], Mapping) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        bad("'model' is not a state dict of tensors")
    for key in ("optimizer", "scheduler", "scaler"):
        if state[key] is not None and not isinstance(state[key], Mapping):
            bad(f"{key!r} is a {type(state[key]).__name__}, not a state dict")
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or state["step"] < 0:
        bad(f"'step' is {state['step']!r}, not an int >= 0")
    if not isinstance(state["rng"], Mapping) or not {"python", "numpy", "torch"} <= set(state["rng"]):
        bad("'rng' lacks the python/numpy/torch states")
    if not isinstance(state["extra"], Mapping):
        bad(f"'extra' is a {type(state['extra']).__name__}, not a dict")


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
    allow_legacy: bool = False,
) -> dict[str, Any]:
    """Load what :func:`save_checkpoint` wrote; returns ``{"step": ..., **extra}``.

    Raises ``FileNotFoundError``, :class:`~adaptmem.utils.integrity.CorruptFileError` (a damaged,
    truncated or foreign file) or ``ValueError`` (a whole checkpoint that does not fit
    ``model``/``optimizer``/...), each naming the path. ``allow_legacy``: see :func:`read_checkpoint`.
    """
    _check_targets("load_checkpoint", model, optimizer, scheduler, scaler)
    state = read_checkpoint(path, map_location=map_location, allow_legacy=allow_legacy)
    targets = [(getattr(model, "module", model), "model")]
    targets += [
        (obj, key)
        for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler"))
        if obj is not None and state[key] is not None
    ]
    for obj, key in targets:
        try:
            obj.load_state_dict(state[key])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(
                f"load_checkpoint: the {key} state in {path} does not fit this {type(obj).__name__} "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})"
            ) from e
    if restore_rng:
        set_rng_state(state["rng"])
    return {"step": state["step"], **state["extra"]}


def _check_targets(fn: str, model, optimizer, scheduler, scaler) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{fn}: model must be an nn.Module, got {type(model).__name__}")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(f"{fn}: {name} must have state_dict/load_state_dict (or be None), got {type(obj).__name__}")


def resolve_resume_args(
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    mutable: Collection[str],
    fixed: Collection[str],
    explicit: Collection[str] | None = None,
    where: str = "--resume",
) -> tuple[dict[str, Any], list[str]]:
    """The arguments of a resumed run: the saved ones, with the changes the user may make.

    Args:
        saved: the arguments the checkpoint was written with.
        given: this run's arguments.
        mutable: names that may change on resume (step counts, budgets, eval settings): the
            new value is taken, and reported.
        fixed: names that define what was trained (architecture, data): a changed value
            raises ``ValueError`` naming each one with both values.
        explicit: the names set on this command line (``None``: every name in ``given``), e.g.
            from :func:`adaptmem.utils.cli.given_flags` (a mapping to each flag's spelling, used in messages).
            Others keep the saved value, so defaults never override a checkpoint.
        where: how the message names the resume (e.g. the flag or the path).

    Names in neither list take the given value silently (e.g. ``--resume`` itself, output
    paths). Returns ``(arguments, notes)``: ``notes`` says each change taken, for printing.
    """
    for name, value in (("saved", saved), ("given", given)):
        if not isinstance(value, Mapping):
            raise TypeError(
                f"resolve_resume_args: {name} must be a mapping of argument names, got {type(value).__name__}"
            )
    unknown = set(mutable) & set(fixed)
    if unknown:
        raise ValueError(f"resolve_resume_args: {sorted(unknown)} are both mutable and fixed")
    explicit = set(given) if explicit is None else explicit
    out, notes, clashes = dict(given), [], []
    for name in (*mutable, *fixed):
        if name not in saved:
            continue
        old, new = saved[name], given.get(name, saved[name])
        if name not in explicit or new == old:
            out[name] = old
        elif name in fixed:
            clashes.append(f"{_flag(name, explicit)} {_show(new)} (the checkpoint has {_show(old)})")
        else:
            notes.append(f"{_flag(name, explicit)}: {_show(old)} -> {_show(new)}")
    if clashes:
        raise ValueError(
            f"{where}: these settings cannot change when resuming: "
            + "; ".join(clashes)
            + ". Resume with the checkpoint's values, or start a new run"
        )
    return out, notes


def _flag(name: str, spelled: Collection[str]) -> str:
    return spelled[name] if isinstance(spelled, Mapping) else "--" + name.replace("_", "-")


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)
