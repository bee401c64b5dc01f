"""IQM and the stratified bootstrap against direct computations and known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from adaptmem.rl.stats import Interval, bootstrap_ci, iqm


def trimmed_mean_by_removal(values: list[float]) -> float:
    """Reference: repeatedly remove the current minimum and maximum, n // 4 times each."""
    rest = list(values)
    for _ in range(len(values) // 4):
        rest.remove(min(rest))
        rest.remove(max(rest))
    return sum(rest) / len(rest)


def test_iqm_by_hand_and_against_removing_extremes_one_by_one():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([0, 0, 0, 1000]) == pytest.approx(0.0)  # one outlier is dropped
    assert iqm([2.0, 4.0]) == pytest.approx(3.0)  # fewer than 4 values: the mean
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 5, 7, 10, 33):
        x = rng.standard_cauchy(n)
        assert iqm(x) == pytest.approx(trimmed_mean_by_removal(x.tolist()), rel=1e-12), n
    scores = rng.normal(size=(5, 6))  # flattened over runs x games
    assert iqm(scores) == pytest.approx(trimmed_mean_by_removal(scores.ravel().tolist()), rel=1e-12)
    rows = iqm(scores, axis=-1)
    assert rows == pytest.approx([trimmed_mean_by_removal(r.tolist()) for r in scores], rel=1e-12)
    with pytest.raises(ValueError, match="at least one value"):
        iqm([])


def test_iqm_equals_scipys_25_percent_trimmed_mean():
    trim_mean = pytest.importorskip("scipy.stats").trim_mean
    rng = np.random.default_rng(3)
    for n in (3, 4, 7, 10, 33, 100):  # scipy trims int(0.25 * n) values from each end, as iqm does
        x = rng.lognormal(size=n)
        assert iqm(x) == pytest.approx(trim_mean(x, 0.25), rel=1e-12), n
    scores = rng.normal(size=(4, 8))
    assert iqm(scores, axis=-1) == pytest.approx(trim_mean(scores, 0.25, axis=-1), rel=1e-12)


def test_bootstrap_interval_of_a_mean_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    trials, hits = 300, 0
    for t in range(trials):
        sample = rng.exponential(2.0, size=60)  # skewed on purpose; true mean 2
        ci = bootstrap_ci([[sample]], np.mean, reps=1000, seed=t)
        assert ci.low <= ci.value <= ci.high and ci.value == pytest.approx(sample.mean())
        hits += ci.low <= 2.0 <= ci.high
    assert 0.88 <= hits / trials <= 0.99  # percentile intervals undercover slightly at n = 60


def test_bootstrap_is_stratified_by_game():
    # every game's scores are constant: resampling within a game changes nothing, across games it would
    runs = [[np.zeros(5), np.ones(7), np.full(3, 4.0)] for _ in range(3)]
    ci = bootstrap_ci(runs, iqm, reps=500)
    # cells 0 0 0 1 1 1 4 4 4; the IQM drops two at each end: mean(0, 1, 1, 1, 4) = 1.4
    assert tuple(ci) == pytest.approx((1.4, 1.4, 1.4))


def test_bootstrap_counts_seed_to_seed_variation():
    rng = np.random.default_rng(2)
    # the same episodes' noise; seeds differ by an offset: the interval must widen with it
    noise = [rng.normal(0, 0.1, 20) for _ in range(5)]
    same = bootstrap_ci([[n] for n in noise], np.mean)
    spread = bootstrap_ci([[n + off] for n, off in zip(noise, (-2, -1, 0, 1, 2))], np.mean)
    assert spread.high - spread.low > 5 * (same.high - same.low)
    assert spread.map(lambda v: 2 * v + 1) == Interval(2 * spread.value + 1, 2 * spread.low + 1, 2 * spread.high + 1)


def test_bootstrap_validates_its_inputs():
    with pytest.raises(ValueError, match="every run must have 2 games"):
        bootstrap_ci([[[1.0], [2.0]], [[1.0]]])
    with pytest.raises(ValueError, match="run 0, game 1 must hold at least one finite score"):
        bootstrap_ci([[[1.0], []]])
    with pytest.raises(ValueError, match="confidence must lie in"):
        bootstrap_ci([[[1.0]]], confidence=95)
