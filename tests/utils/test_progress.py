"""adaptmem.utils.progress: plain lines every N seconds off a terminal, a tqdm bar on one."""

import io

import pytest

from adaptmem.utils.progress import Progress, progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def plain(total=100, **kwargs):
    clock, stream = FakeClock(), io.StringIO()  # StringIO is not a TTY: plain lines
    return Progress(total=total, desc="train", file=stream, clock=clock, interval=30, **kwargs), clock, stream


def test_plain_lines_come_every_interval_with_counts_rate_elapsed_and_eta():
    bar, clock, stream = plain(unit="step")
    for _ in range(10):  # 10 steps of 2 s: 20 s, under the interval
        clock.t += 2
        bar.update(1)
    assert stream.getvalue() == ""
    for _ in range(10):  # to 40 s: one line, at 30 s
        clock.t += 2
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert lines == ["train: 15/100 (15%), 0.5 step/s, elapsed 0:00:30, ETA 0:02:50"]
    clock.t += 19
    bar.update(0)
    assert len(stream.getvalue().splitlines()) == 1  # the next one 30 s after the last line
    clock.t += 1
    bar.set_postfix(loss="1.25")
    bar.update(5)
    assert (
        stream.getvalue().splitlines()[-1]
        == "train: 25/100 (25%), 0.417 step/s, elapsed 0:01:00, ETA 0:03:00, loss=1.25"
    )


def test_close_prints_a_final_line_and_resumed_runs_count_only_new_work():
    bar, clock, stream = plain(total=50, initial=20)
    clock.t += 10
    bar.update(30)
    bar.close()
    bar.close()  # twice is once
    assert stream.getvalue().splitlines() == ["train: 50/50 (100%), 3 it/s, elapsed 0:00:10"]


def test_iterating_counts_items_and_ends_with_a_line():
    clock, stream = FakeClock(), io.StringIO()
    seen = []
    for x in progress(range(4), desc="eval", file=stream, clock=clock, interval=30):
        clock.t += 1
        seen.append(x)
    assert seen == [0, 1, 2, 3]
    assert stream.getvalue().splitlines() == ["eval: 4/4 (100%), 1 it/s, elapsed 0:00:04"]


def test_unknown_total_and_disabled_progress():
    bar, clock, stream = plain(total=None)
    clock.t += 60
    bar.update(7)
    assert stream.getvalue() == "train: 7, 0.117 it/s, elapsed 0:01:00\n"
    off, clock, stream = plain(disable=True)
    clock.t += 60
    off.update(5)
    off.close()
    assert stream.getvalue() == "" and not off.interactive


def test_a_terminal_gets_a_tqdm_bar():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    bar = Progress(total=3, desc="train", file=stream, tty=True, mininterval=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert bar.interactive and "\r" in stream.getvalue() and "3/3" in stream.getvalue()


def test_bad_interval_is_refused():
    with pytest.raises(ValueError, match="interval must be > 0 seconds, got 0"):
        Progress(total=1, interval=0, file=io.StringIO())


def test_a_time_budget_that_ends_first_sets_the_eta():
    # A run capped at 100,000 steps that stops after a 60 s budget: the ETA is the budget's.
    budget_end = 1060.0
    bar, clock, stream = plain(total=100_000, time_left=lambda: budget_end - clock.t)
    for _ in range(30):
        clock.t += 1
        bar.update(1)
    assert stream.getvalue().splitlines() == [
        "train: 30/100,000 (0%), 1 it/s, elapsed 0:00:30, ETA 0:00:30 (time budget)"
    ]
    # Steps that run out before the budget: the usual ETA.
    bar, clock, stream = plain(total=40, time_left=lambda: 1e6)
    for _ in range(30):
        clock.t += 1
        bar.update(1)
    assert stream.getvalue().splitlines() == ["train: 30/40 (75%), 1 it/s, elapsed 0:00:30, ETA 0:00:10"]
