"""Lake et al.'s 20-way within-alphabet one-shot classification runs (Science 2015).

Layout (``all_runs`` in Lake's repository)::

    <root>/runNN/training/classKK.png    one image per class (20)
    <root>/runNN/test/itemMM.png         the items to classify (20)
    <root>/runNN/class_labels.txt        lines "runNN/test/itemMM.png runNN/training/classKK.png"

The benchmark reports the error rate (%) of each run and their mean.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adaptmem.data.fewshot._images import decode_image

Classifier = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LakeRun:
    """One run: ``support_x [20, 1, S, S]`` (label i = i-th sorted class file), ``query_x``, ``query_y``."""

    name: str
    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


@dataclass(frozen=True)
class LakeResult:
    errors: dict[str, float]  # run name -> error rate in %

    @property
    def mean_error(self) -> float:
        return float(np.mean(list(self.errors.values())))

    def table(self) -> str:
        rows = [f"| {k} | {v:.1f} |" for k, v in self.errors.items()]
        return "\n".join(["| run | error % |", "|---|---|", *rows, f"| mean | {self.mean_error:.2f} |"])


def _load(path: Path, image_size: int) -> torch.Tensor:
    return torch.from_numpy(255 - decode_image(path, image_size, "L")).float().div_(255.0)


def read_lake_runs(root: str | os.PathLike, *, image_size: int = 28) -> list[LakeRun]:
    """Every ``runNN`` folder under ``root``, preprocessed like :func:`read_omniglot_set`."""
    fn = "read_lake_runs"
    root = Path(root)
    run_dirs = (
        sorted(p for p in root.iterdir() if p.is_dir() and (p / "class_labels.txt").is_file()) if root.is_dir() else []
    )
    if not run_dirs:
        raise FileNotFoundError(f"{fn}: no runNN/class_labels.txt folders in {root}")
    runs = []
    for run in run_dirs:
        pairs = []
        for line in (run / "class_labels.txt").read_text().splitlines():
            if line.strip():
                parts = line.split()
                if len(parts) != 2:
                    raise ValueError(
                        f"{fn}: {run / 'class_labels.txt'}: expected 'test/item.png training/class.png', got {line!r}"
                    )
                pairs.append(parts)

        def resolve(rel: str) -> Path:  # paths are relative to the folder holding the runs
            for cand in (root / rel, run / rel, run / Path(rel).relative_to(Path(rel).parts[0])):
                if cand.is_file():
                    return cand
            raise FileNotFoundError(f"{fn}: {rel} listed in {run / 'class_labels.txt'} does not exist")

        class_files = sorted((run / "training").glob("*.png"))
        if not class_files:
            raise FileNotFoundError(f"{fn}: no training/*.png in {run}")
        index = {p.resolve(): i for i, p in enumerate(class_files)}
        query_files, labels = [], []
        for item, cls in pairs:
            query_files.append(resolve(item))
            target = resolve(cls).resolve()
            if target not in index:
                raise ValueError(f"{fn}: {cls} in {run / 'class_labels.txt'} is not one of {run / 'training'}/*.png")
            labels.append(index[target])
        runs.append(
            LakeRun(
                run.name,
                torch.stack([_load(p, image_size) for p in class_files]),
                torch.arange(len(class_files)),
                torch.stack([_load(p, image_size) for p in query_files]),
                torch.tensor(labels),
            )
        )
    return runs


def evaluate_lake_runs(
    root: str | os.PathLike | list[LakeRun], classify: Classifier, *, image_size: int = 28
) -> LakeResult:
    """Error rate (%) per run of ``classify(support_x, support_y, query_x) -> predicted labels``.

    ``classify`` gets one run at a time: ``support_x [n, 1, S, S]`` with labels ``arange(n)``
    (n = 20 in Lake's runs) and ``query_x [m, 1, S, S]``, and returns ``int [m]``.
    """
    if not callable(classify):
        raise TypeError(f"evaluate_lake_runs: classify must be callable, got {type(classify).__name__}")
    runs = root if isinstance(root, list) else read_lake_runs(root, image_size=image_size)
    if not runs:
        raise ValueError("evaluate_lake_runs: root holds no runs")
    errors = {}
    for run in runs:
        pred = torch.as_tensor(classify(run.support_x, run.support_y, run.query_x)).view(-1).cpu()
        if pred.shape != run.query_y.shape:
            raise ValueError(
                f"evaluate_lake_runs: classify returned {tuple(pred.shape)} predictions for "
                f"{len(run.query_y)} items in {run.name}"
            )
        errors[run.name] = 100.0 * int((pred != run.query_y).sum()) / len(run.query_y)
    return LakeResult(errors)
