"""Stop a long loop cleanly on Ctrl-C (or ``kill``): finish the current step, save, report.

    with GracefulStop() as stop:
        while not done and not stop:
            step()
    if stop:
        save_and_report()
        raise SystemExit(stop.exit_code)   # 130 after Ctrl-C, 143 after SIGTERM

The first SIGINT/SIGTERM only sets the flag (and prints a line saying so); the handlers in place
before are put back at once, so a second signal aborts as it normally would. ``torchrun`` sends
SIGTERM to its workers when it is interrupted itself, hence both signals.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """A flag set by the first SIGINT or SIGTERM while the ``with`` block runs (truthy once set).

    Signal handlers can only be installed from the main thread; elsewhere the flag stays unset
    and signals behave as before. ``exit_code`` is the shell's convention, ``128 + signal``.
    """

    def __init__(self, message: str = "stopping after the current step (again to abort at once)") -> None:
        self.message = message
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()
        print(f"\n{signal.Signals(signum).name}: {self.message}", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._restore()
