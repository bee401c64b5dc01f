"""Progress of long loops: a tqdm bar on a terminal, a plain line every N seconds otherwise.

A bar redrawn into a log file is noise (tens of KB of carriage returns); a log needs a line now
and then that says how far the job is and when it will end::

    train: 1,200/5,000 (24%), 9.8 it/s, elapsed 0:02:03, ETA 0:06:28, loss=1.234

Torch-free; tqdm loads only when a bar is shown.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO

DEFAULT_INTERVAL = 30.0  # seconds between plain lines


def _clock_text(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts work done towards ``total``; shows it as a tqdm bar or as periodic plain lines.

    Args:
        iterable: iterate over this, counting one per item (or call :meth:`update`).
        total: the amount of work (default ``len(iterable)`` when it has one).
        initial: work already done (a resumed run).
        desc: prefix of the bar / line.
        unit: what is counted (``"it"``, ``"frame"``, ...).
        disable: show nothing.
        tty: ``True`` a bar, ``False`` plain lines; default: a bar when ``file`` is a terminal.
        interval: seconds between plain lines (plain mode).
        file: the stream (default ``sys.stderr``).
        clock: seconds as a float (tests pass a fake one).
        time_left: seconds until a time budget ends (a run that stops at its budget, not at
            ``total``); the ETA is then the sooner of the two.
        **tqdm_kwargs: passed to tqdm (bar mode), e.g. ``leave=False``.

    The interface is tqdm's subset the examples use: iteration, ``update``, ``set_postfix``,
    ``write``, ``close``, the context manager, and ``disable``. ``interactive`` says whether a
    bar is shown.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        tty: bool | None = None,
        interval: float = DEFAULT_INTERVAL,
        file: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        time_left: Callable[[], float] | None = None,
        **tqdm_kwargs: Any,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"Progress: interval must be > 0 seconds, got {interval}")
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)
        self.iterable, self.total, self.n, self.initial = iterable, total, initial, initial
        self.desc, self.unit, self.disable, self.interval = desc, unit, disable, interval
        self.file = file if file is not None else sys.stderr
        self.clock, self.time_left = clock, time_left
        self.postfix: dict[str, str] = {}
        self.start = self.last_line = clock()
        self.closed = False
        if tty is None:
            isatty = getattr(self.file, "isatty", None)
            tty = bool(isatty and isatty())
        self.interactive = tty and not disable
        self._bar = None
        if self.interactive:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                iterable,
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                file=self.file,
                dynamic_ncols=True,
                **tqdm_kwargs,
            )

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("Progress: iteration needs an iterable; call update() instead")
        if self._bar is not None:
            yield from self._bar
            return
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()  # as tqdm does at the end of the iterable

    def __len__(self) -> int:
        return (self.total or 0) - self.initial

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; in plain mode print a line when ``interval`` seconds have passed."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif not self.disable and self.clock() - self.last_line >= self.interval:
            self._line()

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Values shown after the counts (e.g. ``loss="1.23"``), as in tqdm."""
        self.postfix = {k: str(v) for k, v in {**(ordered_dict or {}), **kwargs}.items()}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix)

    def write(self, message: str) -> None:
        """Print a line of text without breaking the bar (to stdout, as ``tqdm.write``)."""
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        """End the bar; in plain mode print a final line when work was done since the last one."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif not self.disable and self.n > self.initial and self.clock() > self.last_line:
            self._line()

    def line(self) -> str:
        """The plain progress line: done / total (pct), rate, elapsed, ETA, postfix."""
        elapsed = self.clock() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        parts = [
            f"{self.n:,}/{self.total:,} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n:,}",
            f"{rate:.3g} {self.unit}/s",
            f"elapsed {_clock_text(elapsed)}",
        ]
        eta = (self.total - self.n) / rate if self.total and rate > 0 and self.n < self.total else None
        if self.time_left is not None:
            left = max(0.0, self.time_left())
            if eta is None or left < eta:
                parts.append(f"ETA {_clock_text(left)} (time budget)")
                eta = None
        if eta is not None:
            parts.append(f"ETA {_clock_text(eta)}")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def _line(self) -> None:
        self.last_line = self.clock()
        print(self.line(), file=self.file, flush=True)


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    disable: bool | None = None,
    **kwargs: Any,
) -> Progress:
    """A :class:`Progress` (``disable=None`` means shown; kept for tqdm-style call sites)."""
    return Progress(iterable, total=total, desc=desc, disable=bool(disable), **kwargs)
