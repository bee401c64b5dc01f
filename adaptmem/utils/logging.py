"""Metric logging to CSV (always) and TensorBoard (when installed), plus curve plots."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from adaptmem.utils.atomic import atomic_write


class MetricLogger:
    """Append metrics to ``<log_dir>/<stream>.csv`` and, optionally, TensorBoard.

    Args:
        log_dir: folder for the CSV files (and TensorBoard events).
        tensorboard: also write TensorBoard events when ``tensorboard`` is installed.
        resume_step: when resuming a run, rows logged after this step are dropped, so the
            CSV matches what the resumed run will log again.

    Example::

        log = MetricLogger("runs/exp1")
        log.log("train", step=100, loss=1.23, lr=1e-3)
        log.close()
    """

    def __init__(self, log_dir: str | os.PathLike, *, tensorboard: bool = True,
                 resume_step: int | None = None, enabled: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self._writer = None
        if resume_step is not None and (isinstance(resume_step, bool) or not isinstance(resume_step, int)
                                        or resume_step < 0):
            raise ValueError(f"MetricLogger: resume_step must be an int >= 0 or None, got {resume_step!r}")
        if not enabled:
            return
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"MetricLogger: log_dir {self.log_dir} exists and is not a folder")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            for path in self.log_dir.glob("*.csv"):
                rows = [r for r in _read(path) if float(r.get("step", 0)) <= resume_step]
                _write(path, rows)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.log_dir / "tb"))
            except ImportError:  # tensorboard is optional
                self._writer = None

    def log(self, stream: str, step: int, **metrics: float) -> None:
        if not self.enabled:
            return
        if not isinstance(stream, str) or not stream or os.sep in stream or stream.startswith(".") or (
                os.altsep and os.altsep in stream):
            raise ValueError(f"MetricLogger.log: stream must be a plain file name, got {stream!r}")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step != step:
            raise TypeError(f"MetricLogger.log: step must be a number, got {type(step).__name__} {step!r}")
        row = {"step": step, **{k: _scalar(k, v) for k, v in metrics.items()}}
        path = self.log_dir / f"{stream}.csv"
        rows = _read(path) if path.exists() else []
        if rows and set(row) <= set(rows[0]):
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=list(rows[0])).writerow(row)
        else:  # new columns: rewrite with the union of keys
            _write(path, rows + [row])
        if self._writer is not None:
            for k, v in metrics.items():
                self._writer.add_scalar(f"{stream}/{k}", _scalar(k, v), step)

    def read(self, stream: str) -> list[dict[str, float]]:
        path = self.log_dir / f"{stream}.csv"
        return [{k: float(v) for k, v in r.items() if v != ""} for r in _read(path)] if path.exists() else []

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _scalar(name: str, v: Any) -> float:
    if hasattr(v, "numel") and v.numel() != 1:
        raise ValueError(f"MetricLogger.log: metric {name} must be a number, got a tensor of shape {tuple(v.shape)}")
    try:
        return float(v.item()) if hasattr(v, "item") else float(v)
    except (TypeError, ValueError) as e:
        raise TypeError(f"MetricLogger.log: metric {name} must be a number, got {type(v).__name__} {v!r}") from e


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        # Rows are appended (not rewritten) for speed; a row torn by a crash in the middle of
        # an append has missing fields (None) and is skipped.
        return [r for r in csv.DictReader(f) if None not in r.values() and None not in r]


def _write(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=keys or ["step"])
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write, text=True, newline="")


def plot_curves(
    series: dict[str, tuple[Iterable[float], Iterable[float]]],
    path: str | os.PathLike,
    *,
    xlabel: str = "step",
    ylabel: str = "",
    title: str = "",
) -> Path | None:
    """Save a line plot of ``{label: (xs, ys)}`` to ``path`` (PNG); ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (xs, ys) in series.items():
        xs, ys = list(xs), list(ys)
        keep = [i for i, y in enumerate(ys) if not math.isnan(y)]
        ax.plot([xs[i] for i in keep], [ys[i] for i in keep], label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:] or "png", dpi=100))
    plt.close(fig)
    return path


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-markdown table with padded columns; cells are printed with ``str``."""
    if isinstance(header, (str, bytes)) or not isinstance(header, Sequence):
        raise TypeError(f"markdown_table: header must be a sequence of column names, got {type(header).__name__}")
    cells = [[str(v) for v in row] for row in rows]
    head = [str(h) for h in header]
    for i, row in enumerate(cells):
        if len(row) != len(head):
            raise ValueError(f"markdown_table: rows[{i}] has {len(row)} cells, the header {len(head)}")
    widths = [max(len(h), *(len(row[j]) for row in cells)) for j, h in enumerate(head)]

    def line(vals: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"

    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])
