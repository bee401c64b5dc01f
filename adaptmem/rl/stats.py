"""Scores worth citing: interquartile mean and bootstrap confidence intervals.

Following Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice"
(NeurIPS 2021): aggregate normalised scores over games and seeds with the interquartile mean
(IQM, the mean of the middle 50%: robust to one outlying game or seed, less noisy than the
median) and report a 95% percentile-bootstrap interval whose resampling is stratified by game
(a game's scores are only ever resampled among themselves).

The ``rliable`` package implements the same but pulls in ``arch``, ``scipy``, ``seaborn`` and
``pandas``; the few lines here need NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np


class Interval(NamedTuple):
    """A point estimate with its confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float

    def map(self, fn: Callable[[float], float]) -> Interval:
        """The interval under an increasing function (e.g. a score normalisation)."""
        return Interval(fn(self.value), fn(self.low), fn(self.high))


def iqm(x: np.ndarray | Sequence[float], axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: drop ``floor(n / 4)`` values at each end, average the rest.

    The same as ``scipy.stats.trim_mean(x, 0.25, axis)`` (and rliable's IQM). ``axis=None``
    flattens; fewer than 4 values are simply averaged.
    """
    x = np.asarray(x, dtype=np.float64)
    if axis is None:
        x, axis = x.reshape(-1), 0
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm: needs at least one value, got an empty array")
    cut = n // 4
    return np.sort(x, axis=axis).take(np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def _check_scores(fn: str, scores: Sequence[Sequence[np.ndarray | Sequence[float]]]) -> list[list[np.ndarray]]:
    runs = [[np.asarray(s, dtype=np.float64).reshape(-1) for s in run] for run in scores]
    if not runs or not runs[0]:
        raise ValueError(f"{fn}: scores must be [runs][games] arrays of episode scores, got {len(runs)} runs")
    games = len(runs[0])
    for r, run in enumerate(runs):
        if len(run) != games:
            raise ValueError(f"{fn}: every run must have {games} games (as run 0), run {r} has {len(run)}")
        for g, s in enumerate(run):
            if s.size == 0 or not np.all(np.isfinite(s)):
                raise ValueError(f"{fn}: run {r}, game {g} must hold at least one finite score, got {s}")
    return runs


def bootstrap_ci(
    scores: Sequence[Sequence[np.ndarray | Sequence[float]]],
    statistic: Callable = iqm,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """``statistic`` of the per-(run, game) mean scores, with a stratified bootstrap interval.

    Args:
        scores: ``scores[run][game]``: the episode scores (e.g. normalised returns) of one run
            (seed) on one game; runs and games as many as there are, episodes per cell may differ.
        statistic: maps an array ``[..., cells]`` to ``[...]`` along its last axis (``iqm`` or
            ``np.mean`` both accept ``axis=-1``); it aggregates the ``runs x games`` cell means.
        reps: bootstrap resamples.
        confidence: the interval's coverage (0.95: the 2.5% and 97.5% percentiles).
        seed: the resampling generator's seed (the interval is reproducible).

    Each resample draws, separately for every game, as many runs as there are with replacement,
    and within every drawn (run, game) cell as many episodes as it has with replacement (a
    two-stage bootstrap: both seed-to-seed and episode-to-episode variation count; with one run
    only the episodes vary). Games are never mixed: the stratification of rliable's
    ``get_interval_estimates``.
    """
    fn = "bootstrap_ci"
    if not 0 < confidence < 1:
        raise ValueError(f"{fn}: confidence must lie in (0, 1), got {confidence}")
    if reps < 1:
        raise ValueError(f"{fn}: reps must be >= 1, got {reps}")
    runs = _check_scores(fn, scores)
    R, G = len(runs), len(runs[0])
    rng = np.random.default_rng(seed)
    point = float(statistic(np.array([[s.mean() for s in run] for run in runs]).reshape(-1), axis=-1))
    # stage 2 first: every cell's episode-resampled means, [R, G, reps]
    means = np.empty((R, G, reps))
    for r, run in enumerate(runs):
        for g, s in enumerate(run):
            means[r, g] = s[rng.integers(0, s.size, (reps, s.size))].mean(axis=1)
    # stage 1: per game, R runs drawn with replacement -> cells [reps, R, G]
    pick = rng.integers(0, R, (reps, R, G))
    cells = means[pick, np.arange(G)[None, None, :], np.arange(reps)[:, None, None]]
    stats = statistic(cells.reshape(reps, R * G), axis=-1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return Interval(point, float(low), float(high))
