"""Learning curves and the first-vs-last summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptmem.rl.report import first_last, learning_table, plot_learning_curves, smooth


def test_smooth_is_a_centred_mean_that_skips_nans():
    y = [1.0, float("nan"), 3.0, 5.0, float("nan"), float("nan"), float("nan")]
    got = smooth(y, 3)
    expected = []
    for i in range(len(y)):  # direct: the finite values among y[i-1], y[i], y[i+1]
        window = [v for v in y[max(0, i - 1) : i + 2] if not math.isnan(v)]
        expected.append(np.mean(window) if window else np.nan)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(smooth([2.0, 4.0], 1), [2.0, 4.0])


def test_first_and_last_fifth_of_the_logged_returns():
    rows = [{"step": 10 * i, "g": float(i)} for i in range(10)] + [{"step": 100, "g": float("nan")}]
    assert first_last(rows, "g") == (0.5, 9.0)  # 2 rows of 11 at each end; the NaN row is skipped
    table = learning_table({"seed 0": rows}, ["g"], {"g": 0.25})
    assert "| g    | 0.25          | 0.50 -> 9.00 |" in table
    with pytest.raises(ValueError, match="fraction"):
        first_last(rows, "g", 0.7)


def test_plot_learning_curves_writes_one_figure_with_a_panel_per_game(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"step": i, "a": np.sin(i / 5), "b": float("nan") if i % 3 else i / 10} for i in range(50)]
    path = plot_learning_curves(
        {"srwm": rows, "lstm": rows[::-1]},
        ["a", "b"],
        tmp_path / "curves.png",
        random={"a": 0.0, "b": 1.0},
        title="test",
    )
    assert path == tmp_path / "curves.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
