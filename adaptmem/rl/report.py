"""What a training run shows a reader: learning curves against the random policy, and the
first-vs-last summary of the training returns.

The logged curve is ``returns.csv``'s rows: ``{"step": frames, "<game>": mean return of the
training episodes that ended in that log interval (NaN when none did)}``.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from adaptmem.utils import atomic_write, markdown_table

Curve = Sequence[Mapping[str, float]]  # returns.csv rows


def first_last(rows: Curve, game: str, fraction: float = 0.2) -> tuple[float, float]:
    """Mean of ``game``'s logged returns over the first and over the last ``fraction`` of the rows."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"first_last: fraction must lie in (0, 0.5], got {fraction}")
    n = max(1, int(len(rows) * fraction))

    def mean(part: Curve) -> float:
        values = [r[game] for r in part if game in r and not math.isnan(r[game])]
        return float(np.mean(values)) if values else float("nan")

    return mean(rows[:n]), mean(rows[-n:])


def learning_table(
    runs: Mapping[str, Curve], games: Sequence[str], random: Mapping[str, float] | None = None, fraction: float = 0.2
) -> str:
    """A markdown table: per game, the random policy's return and each run's first -> last
    ``fraction`` of its training returns (``runs = {label: returns.csv rows}``)."""
    header = ["game", *(["random policy"] if random else []), *runs]
    body = []
    for g in games:
        row = [g, *([f"{random.get(g, float('nan')):.2f}"] if random else [])]
        for rows in runs.values():
            first, last = first_last(rows, g, fraction)
            row.append(f"{first:.2f} -> {last:.2f}")
        body.append(row)
    return markdown_table(header, body)


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Centred moving average over ``window`` points that skips NaNs (NaN where a window has none)."""
    if window < 1:
        raise ValueError(f"smooth: window must be >= 1, got {window}")
    y = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(y)
    kernel = np.ones(window)
    total = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    count = np.convolve(ok.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _frames_text(x: float, _pos: object = None) -> str:
    """Axis ticks that stay short: 250k, 1.5M."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{unit}"
    return f"{x:g}"


def plot_learning_curves(
    runs: Mapping[str, Curve],
    games: Sequence[str],
    path: str | os.PathLike,
    *,
    random: Mapping[str, float] | None = None,
    title: str = "",
    smoothing: float = 0.1,
) -> Path | None:
    """One panel per game: each run's training return against frames, raw values faint and a
    centred moving average over ``smoothing`` of the run on top, the random policy's return as
    a dashed line. Written atomically as PNG; ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return None
    cols = min(3, len(games))
    nrows = math.ceil(len(games) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.4 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, game in zip(axes.flat, games):
        for i, (label, rows) in enumerate(runs.items()):
            xs = np.array([r["step"] for r in rows], dtype=np.float64)
            ys = np.array([r.get(game, float("nan")) for r in rows], dtype=np.float64)
            c = colors[i % len(colors)]
            ax.plot(xs, ys, color=c, alpha=0.25, linewidth=0.8)
            ax.plot(xs, smooth(ys, max(1, round(len(ys) * smoothing))), color=c, linewidth=2, label=label)
        if random and game in random:
            ax.axhline(random[game], color="black", linestyle="--", linewidth=1, label="random policy")
        ax.set_title(game)
        ax.xaxis.set_major_formatter(FuncFormatter(_frames_text))
        ax.set_xlabel("frames")
        ax.set_ylabel("training episode return")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(games) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    if title:  # wrapped to the figure's width (one panel is narrower than a run's description)
        fig.suptitle("\n".join(textwrap.wrap(title, width=int(11 * 4.5 * cols))), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path
