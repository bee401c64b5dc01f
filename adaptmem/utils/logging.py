"""Metric logging to CSV (always), TensorBoard (when installed) and Weights & Biases (when asked),
plus curve plots."""

from __future__ import annotations

import csv
import io
import math
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from adaptmem.utils.atomic import atomic_write
from adaptmem.utils.extras import install_hint

WANDB_ID_FILE = "wandb-run-id"  # in log_dir: a resumed run continues the same W&B run
WANDB_HELP = (
    "also log to this Weights & Biases project (pip install wandb; "
    "WANDB_MODE=offline works without a network; default: off)"
)


def add_wandb_argument(parser: Any) -> None:
    """The examples' ``--wandb PROJECT`` flag (``args.wandb``: the project, or ``None``)."""
    parser.add_argument("--wandb", metavar="PROJECT", default=None, help=WANDB_HELP)


class MetricLogger:
    """Append metrics to ``<log_dir>/<stream>.csv`` and, optionally, TensorBoard and W&B.

    A stream's CSV header is read once, at its first row; later rows are appended without
    reading the file (a row with a new column rewrites the file once, with the union of columns).

    Args:
        log_dir: folder for the CSV files (and TensorBoard events, and W&B's offline files).
        tensorboard: also write TensorBoard events when ``tensorboard`` is installed.
        resume_step: when resuming a run, rows logged after this step are dropped, so the
            CSV matches what the resumed run will log again (W&B keeps what it was sent: the
            resumed run logs those steps a second time).
        enabled: ``False`` makes every call a no-op (e.g. on non-zero distributed ranks).
        wandb: a W&B project name to also log there (the ``wandb`` extra); each
            stream's metrics are ``<stream>/<name>`` plotted against ``<stream>/step``.
            ``WANDB_MODE=offline`` works without a network (sync later with ``wandb sync``).
        wandb_config: the run's settings, shown by W&B next to its curves.
        wandb_name: the run's display name (default: W&B's).

    Example::

        log = MetricLogger("runs/exp1", wandb="my-project")
        log.log("train", step=100, loss=1.23, lr=1e-3)
        log.close()
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        tensorboard: bool = True,
        resume_step: int | None = None,
        enabled: bool = True,
        wandb: str | None = None,
        wandb_config: dict[str, Any] | None = None,
        wandb_name: str | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self._writer = None
        self._wandb = None
        self._columns: dict[str, list[str]] = {}  # stream -> the CSV's header, once read
        self._wandb_streams: set[str] = set()  # streams whose W&B step axis is defined
        if resume_step is not None and (
            isinstance(resume_step, bool) or not isinstance(resume_step, int) or resume_step < 0
        ):
            raise ValueError(f"MetricLogger: resume_step must be an int >= 0 or None, got {resume_step!r}")
        if not enabled:
            return
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"MetricLogger: log_dir {self.log_dir} exists and is not a folder")
        if wandb is not None and (not isinstance(wandb, str) or not wandb):
            raise ValueError(f"MetricLogger: wandb must be a W&B project name or None, got {wandb!r}")
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
        if wandb is not None:
            # A resume that keeps rows continues the W&B run; resume_step=0 is a fresh start.
            self._wandb = _start_wandb(self.log_dir, wandb, wandb_config, wandb_name, resume=bool(resume_step))

    def log(self, stream: str, step: int, **metrics: float) -> None:
        """Append one row ``step, **metrics`` to ``stream``."""
        if not self.enabled:
            return
        if (
            not isinstance(stream, str)
            or not stream
            or os.sep in stream
            or stream.startswith(".")
            or (os.altsep and os.altsep in stream)
        ):
            raise ValueError(f"MetricLogger.log: stream must be a plain file name, got {stream!r}")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step != step:
            raise TypeError(f"MetricLogger.log: step must be a number, got {type(step).__name__} {step!r}")
        values = {k: _scalar(k, v) for k, v in metrics.items()}
        row = {"step": step, **values}
        path = self.log_dir / f"{stream}.csv"
        columns = self._columns.get(stream)
        if columns is None:
            columns = self._columns[stream] = _header(path)
        if columns and set(row) <= set(columns):
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writerow(row)
        else:  # a new file, or new columns: write it whole with the union of columns
            rows = _read(path) + [row]
            _write(path, rows)
            self._columns[stream] = _union(rows)
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(f"{stream}/{k}", v, step)
        if self._wandb is not None:
            if stream not in self._wandb_streams:
                self._wandb.define_metric(f"{stream}/step")
                self._wandb.define_metric(f"{stream}/*", step_metric=f"{stream}/step")
                self._wandb_streams.add(stream)
            self._wandb.log({f"{stream}/step": step, **{f"{stream}/{k}": v for k, v in values.items()}})

    def read(self, stream: str) -> list[dict[str, float]]:
        """The rows of ``stream`` so far, as floats (empty cells left out)."""
        path = self.log_dir / f"{stream}.csv"
        return [{k: float(v) for k, v in r.items() if v != ""} for r in _read(path)] if path.exists() else []

    def close(self) -> None:
        """Close the TensorBoard writer and finish the W&B run."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    @property
    def wandb_run(self) -> Any:
        """The W&B run (``None`` without ``wandb=``)."""
        return self._wandb


def _start_wandb(log_dir: Path, project: str, config: dict[str, Any] | None, name: str | None, *, resume: bool):
    try:
        import wandb
    except ImportError:
        raise ImportError(f"MetricLogger: wandb=PROJECT needs Weights & Biases: {install_hint('wandb')}") from None
    id_file = log_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.exists() else secrets.token_hex(4)
    run = wandb.init(
        project=project,
        id=run_id,
        resume="allow",
        dir=str(log_dir),
        config=config,
        name=name,
        settings=wandb.Settings(console="off"),
    )  # stdout stays the terminal's; the CSVs hold the metrics
    if not id_file.exists() or id_file.read_text().strip() != run_id:
        atomic_write(id_file, lambda f: f.write(run_id + "\n"), text=True)
    return run


def _scalar(name: str, v: Any) -> float:
    if hasattr(v, "numel") and v.numel() != 1:
        raise ValueError(f"MetricLogger.log: metric {name} must be a number, got a tensor of shape {tuple(v.shape)}")
    try:
        return float(v.item()) if hasattr(v, "item") else float(v)
    except (TypeError, ValueError) as e:
        raise TypeError(f"MetricLogger.log: metric {name} must be a number, got {type(v).__name__} {v!r}") from e


def _header(path: Path) -> list[str]:
    """The columns of a CSV file from its first line (``[]`` if there is no file or no header).
    A last row cut short by a crash is removed, so appended rows start on a line of their own."""
    if not path.exists():
        return []
    with open(path, "rb+") as f:
        first = f.readline()
        f.seek(0, io.SEEK_END)
        size = f.tell()
        if size and first.endswith(b"\n"):
            f.seek(max(0, size - 1))
            if f.read(1) != b"\n":  # torn last line: cut back to the last complete one
                f.seek(max(0, size - 65536))
                tail = f.read()
                if tail.rfind(b"\n") >= 0:
                    f.truncate(size - len(tail) + tail.rfind(b"\n") + 1)
    return next(csv.reader([first.decode()]), []) if first.endswith(b"\n") else []


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        # Rows are appended (not rewritten) for speed; a row torn by a crash in the middle of
        # an append has missing fields (None) and is skipped.
        return [r for r in csv.DictReader(f) if None not in r.values() and None not in r]


def _union(rows: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return keys


def _write(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys = _union(rows)

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
