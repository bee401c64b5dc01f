"""Evaluation tables with bootstrap intervals, and the random-policy baseline."""

from __future__ import annotations

import numpy as np
import pytest

from adaptmem.rl import MultiTaskEnv, RecallEnv, format_table, random_returns, score_rows
from adaptmem.rl.stats import iqm


def test_random_policy_scores_one_over_the_alphabet_on_the_recall_task():
    env = RecallEnv(200, num_symbols=3, seed=0)
    returns = random_returns(env, episodes_per_env=4, seed=0)
    assert list(returns) == [0] and returns[0].shape == (800,)
    assert returns[0].mean() == pytest.approx(env.memoryless_return, abs=0.03)  # 1/3 in expectation
    again = random_returns(RecallEnv(200, num_symbols=3, seed=0), episodes_per_env=4, seed=0)
    np.testing.assert_array_equal(returns[0], again[0])  # seeded
    two = random_returns(MultiTaskEnv([RecallEnv(3, seed=0), RecallEnv(5, max_delay=1, seed=1)]), 2)
    assert two[0].shape == (6,) and two[1].shape == (10,)  # grouped by task, 2 episodes per row


def norm(game: str, score: float) -> float:
    return {"a": lambda s: s / 10, "b": lambda s: (s + 1) / 2}[game](score)


def test_score_rows_give_means_intervals_and_the_iqm_over_games_and_runs():
    rng = np.random.default_rng(0)
    runs = [
        {
            "train": {0: rng.normal(5 + r, 1, 30), 1: rng.normal(0, 0.5, 30)},
            "test": {0: rng.normal(3, 1, 30), 1: rng.normal(-1, 0.5, 30)},
        }
        for r in range(3)
    ]
    rows = score_rows(runs, ["a", "b"], norm, reps=500)
    assert [r["game"] for r in rows] == ["a", "b", "IQM (2 games x 3 runs)"]
    value, low, high = (float(v.strip("[],")) for v in rows[0]["train return"].split())
    assert value == pytest.approx(np.mean([r["train"][0].mean() for r in runs]), abs=5e-3)
    assert low < value < high
    assert float(rows[0]["train norm."].split()[0]) == pytest.approx(value / 10, abs=5e-3)
    cells = [norm(g, run["test"][t].mean()) for run in runs for t, g in enumerate("ab")]  # linear normalisers
    assert float(rows[2]["test norm."].split()[0]) == pytest.approx(iqm(cells), abs=5e-3)
    table = format_table(rows)
    assert "| IQM (2 games x 3 runs)" in table and "train norm." in table


def test_score_rows_of_one_run_without_normaliser_and_with_a_game_that_never_finished():
    rows = score_rows({"train": {0: np.array([1.0, 2.0, 3.0]), 1: np.array([])}}, ["a", "b"])
    assert len(rows) == 2 and rows[0]["train return"].startswith("2.00 [")
    assert np.isnan(rows[1]["train return"])
    assert "| b    | -" in format_table(rows)
