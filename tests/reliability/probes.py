"""The bad-input probe table shared by the ``test_bad_inputs_*`` modules.

A :class:`Probe` is one call with one bad argument. It passes when the call raises one of
``raises`` (``ValueError``/``TypeError`` by default; files may give ``FileNotFoundError`` or
:class:`~adaptmem.utils.CorruptFileError`) and the message names the argument (``names``, a
regular expression). Any other exception (a raw ``RuntimeError``, ``IndexError``, ...) or no
exception at all (a silently accepted bad value) fails it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

USER_ERRORS = (ValueError, TypeError)


@dataclass(frozen=True)
class Probe:
    id: str
    call: Callable[[], Any]
    names: str  # regex: the argument (or path) the message must name
    raises: tuple[type[BaseException], ...] = USER_ERRORS

    def check(self) -> None:
        try:
            self.call()
        except self.raises as e:
            assert re.search(self.names, str(e)), f"{self.id}: the message does not name {self.names!r}: {e}"
            return
        except Exception as e:  # noqa: BLE001 - reporting which raw exception escaped is the point
            pytest.fail(f"{self.id}: raw {type(e).__name__} instead of {[c.__name__ for c in self.raises]}: {e}")
        pytest.fail(f"{self.id}: the bad input was accepted silently")


def params(probes: list[Probe]):
    """``pytest.mark.parametrize`` arguments for a list of probes, with readable ids."""
    return pytest.mark.parametrize("probe", probes, ids=[p.id for p in probes])


def tensor_variants(
    good: torch.Tensor, *, optional: bool = False, empty: tuple[int, ...] = ()
) -> Iterator[tuple[str, Any]]:
    """Bad versions of a good tensor argument: rank, size, dtype, device, type, empty dims."""
    yield "rank", good[0] if good.dim() > 1 else good[None, None]
    yield "size", torch.cat([good, good[..., :1]], dim=-1)
    yield "int", good.long() if good.is_floating_point() else good.float()
    yield "meta", good.to("meta")
    yield "list", good.tolist()
    if not optional:
        yield "None", None
    for d in empty:
        yield f"empty{d}", good.narrow(d, 0, 0)


def call_with(fn: Callable[..., Any], args: dict[str, Any], **change: Any) -> Callable[[], Any]:
    """A thunk calling ``fn(**args)`` with some arguments changed."""
    merged = {**args, **change}
    return lambda: fn(**merged)
