"""GracefulStop: the first signal sets a flag, the second one acts as before; handlers come back."""

from __future__ import annotations

import signal
import threading

import pytest

from adaptmem.utils.interrupt import GracefulStop


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_sets_the_flag_and_gives_the_old_handler_back(signum, code, capsys):
    seen = []

    def old_handler(s, f):
        seen.append(s)

    before = signal.signal(signum, old_handler)
    try:
        with GracefulStop() as stop:
            assert not stop
            signal.raise_signal(signum)
            assert stop and stop.exit_code == code and seen == []  # caught by GracefulStop
            signal.raise_signal(signum)  # the second one reaches the handler that was there before
            assert seen == [signum]
        assert signal.getsignal(signum) is old_handler
        assert signal.Signals(signum).name in capsys.readouterr().err
    finally:
        signal.signal(signum, before)


def test_handlers_are_restored_when_no_signal_came():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with GracefulStop():
        assert signal.getsignal(signal.SIGINT) != before[signal.SIGINT]
    assert {s: signal.getsignal(s) for s in before} == before


def test_outside_the_main_thread_it_installs_nothing():
    result = []

    def run():
        with GracefulStop() as stop:
            result.append(bool(stop))

    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert result == [False] and signal.getsignal(signal.SIGINT) == before
