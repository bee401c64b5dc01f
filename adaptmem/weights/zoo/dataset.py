"""A zoo on disk as a PyTorch dataset, split by task into train / valid / ood."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adaptmem.utils.checks import check_choice
from adaptmem.utils.integrity import CorruptFileError, check_sealed_json, file_sha256, read_json
from adaptmem.weights.spec import WeightSpec
from adaptmem.weights.zoo import formal_language as fl

SPLITS = ("train", "valid", "ood", "all")


def split_runs(
    kind: str, run_arrays: dict[str, np.ndarray], *, valid_frac: float = 0.15, ood_frac: float = 0.15, seed: int = 0
) -> np.ndarray:
    """The split (``"train"``, ``"valid"`` or ``"ood"``) of every run, decided by its task.

    Formal languages: of all 216 tasks, the ``ceil(ood_frac * 216)`` most balanced ones (highest
    :func:`~adaptmem.weights.zoo.formal_language.task_entropy`) are OOD and a random
    ``round(valid_frac * 216)`` of the rest are validation (151 / 32 / 33 tasks at 15%/15%).
    Sequential MNIST (every run is its own task): runs with the largest angles,
    ``angle >= 360 * (1 - ood_frac)``, are OOD and a random ``valid_frac`` of all runs,
    drawn from the others, are validation. Every checkpoint of a run shares the run's split.
    """
    if not (0 <= valid_frac < 1 and 0 <= ood_frac < 1 and valid_frac + ood_frac < 1):
        raise ValueError(
            f"split_runs: valid_frac and ood_frac must be in [0, 1) with a sum < 1, got {valid_frac} and {ood_frac}"
        )
    check_choice("split_runs", "kind", kind, ("formal_language", "smnist"))
    need = "task_id" if kind == "formal_language" else "angle"
    if not isinstance(run_arrays, dict) or need not in run_arrays:
        raise ValueError(
            f"split_runs: run_arrays must hold {need!r} for a {kind} zoo, got "
            f"{sorted(run_arrays) if isinstance(run_arrays, dict) else type(run_arrays).__name__}"
        )
    rng = np.random.default_rng(seed)
    if kind == "formal_language":
        n = fl.num_tasks()
        ent = fl.task_entropy(list(range(n))).numpy()
        order = np.lexsort((np.arange(n), -ent))  # most balanced first, ties by task id
        n_ood = math.ceil(ood_frac * n)
        task_split = np.full(n, "train", dtype=object)
        task_split[order[:n_ood]] = "ood"
        rest = rng.permutation(order[n_ood:])
        task_split[rest[: int(round(valid_frac * n))]] = "valid"
        return task_split[run_arrays["task_id"]].astype(str)
    angle = run_arrays["angle"]
    out = np.full(len(angle), "train", dtype=object)
    ood = angle >= 360.0 * (1.0 - ood_frac)
    out[ood] = "ood"
    rest = rng.permutation(np.nonzero(~ood)[0])
    out[rest[: int(round(valid_frac * len(angle)))]] = "valid"
    return out.astype(str)


_REQUIRED = ("weights", "log_probs", "run", "step", "checkpoint")


def _read_meta(path: Path) -> dict:
    """``meta.json``, its checksum and the fields every reader relies on checked."""
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise CorruptFileError(path, f"holds a JSON {type(meta).__name__}, not an object")
    version = meta.get("format_version")
    if version == 1:
        warnings.warn(
            f"{path}: a zoo of format 1 has no checksums; only shapes and dtypes are checked "
            f"(rebuild it with generate_zoo to add them)",
            UserWarning,
            stacklevel=3,
        )
    elif version == 2:
        check_sealed_json(path, meta)
    else:
        raise CorruptFileError(path, f"has zoo format_version {version!r}; this adaptmem reads 1 and 2")
    arrays = meta.get("arrays")
    problems = [k for k in ("kind", "spec", "num_runs", "num_entries") if k not in meta]
    if not isinstance(arrays, dict):
        problems.append("arrays")
    else:
        problems += [f"arrays.{name}" for name in _REQUIRED if name not in arrays]
        for name, info in arrays.items():
            if not (
                isinstance(info, dict)
                and info.get("axis") in ("entry", "run")
                and isinstance(info.get("shape"), list)
                and isinstance(info.get("dtype"), str)
            ):
                problems.append(f"arrays.{name} (axis, shape, dtype)")
    if meta.get("kind") not in ("formal_language", "smnist"):
        problems.append(f"kind {meta.get('kind')!r}")
    if problems:
        raise CorruptFileError(path, f"is not a valid zoo meta.json: missing or malformed {problems}")
    return meta


def _open_arrays(root: Path, meta: dict, spec: WeightSpec, *, verify: bool) -> dict[str, np.ndarray]:
    """Memory-map every array, after checking it against ``meta.json`` (and its hash with ``verify``)."""
    counts = {"entry": meta["num_entries"], "run": meta["num_runs"]}
    out = {}
    for name, info in meta["arrays"].items():
        path = root / f"{name}.npy"
        if not path.exists():
            raise FileNotFoundError(f"ZooDataset: {path} not found (listed in {root / 'meta.json'})")
        if verify and "sha256" in info and file_sha256(path) != info["sha256"]:
            raise CorruptFileError(path, "fails its SHA-256 checksum in meta.json: the array changed after writing")
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as e:
            raise CorruptFileError(path, f"is not a readable .npy array ({type(e).__name__}: {e})") from e
        want_shape = tuple(info["shape"])
        if arr.shape != want_shape or str(arr.dtype) != info["dtype"]:
            raise CorruptFileError(
                path,
                f"holds shape {arr.shape} dtype {arr.dtype}, but meta.json says "
                f"shape {want_shape} dtype {info['dtype']}",
            )
        if not want_shape or want_shape[0] != counts[info["axis"]]:
            raise CorruptFileError(
                path, f"has {want_shape[:1]} rows, but the zoo has {counts[info['axis']]} {info['axis']}s (meta.json)"
            )
        out[name] = arr
    if out["weights"].ndim != 2 or out["weights"].shape[1] != spec.num_params:
        raise CorruptFileError(
            root / "weights.npy",
            f"holds shape {out['weights'].shape}, but the spec in meta.json has {spec.num_params} parameters",
        )
    return out


class ZooDataset(torch.utils.data.Dataset):
    """The checkpoints ("entries") of one split of a zoo made by :func:`generate_zoo`.

    Arrays stay memory-mapped; only what an item or batch needs is read.

    Args:
        root: the zoo folder (with ``meta.json``).
        split: ``"train"``, ``"valid"``, ``"ood"`` or ``"all"``.
        valid_frac, ood_frac, seed: the task split (see :func:`split_runs`).
        steps: keep only checkpoints taken at these training steps (default: all).
        verify: check every array file against the SHA-256 in ``meta.json`` (reads each file
            once; ``False`` checks only shapes, dtypes and counts, which is always done).

    Raises ``FileNotFoundError`` for a missing ``meta.json`` or array, and
    :class:`~adaptmem.utils.integrity.CorruptFileError` naming the file when ``meta.json`` or
    an array is damaged or disagrees with the other (zoos of format 1, before checksums, load
    with a warning and the structural checks only).

    Items (``dataset[i]``) are dicts with ``weights [P]``, ``inputs [R, T, in]``,
    ``log_probs [R, T, out]`` and the entry's labels (``accuracy``, ``step``, ``checkpoint``,
    ``run`` and the task: ``task`` ``[3]`` for formal languages, ``angle``/``weight_decay`` for
    sequential MNIST). :meth:`batch` and :meth:`sample` pick one rollout per entry, as the
    emulator is trained.

    Example::

        >>> train = ZooDataset("zoo/", "train")
        >>> b = train.sample(64, torch.Generator().manual_seed(0))
        >>> b["weights"].shape, b["inputs"].shape, b["log_probs"].shape
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        valid_frac: float = 0.15,
        ood_frac: float = 0.15,
        seed: int = 0,
        steps: list[int] | None = None,
        verify: bool = True,
    ) -> None:
        check_choice("ZooDataset", "split", split, SPLITS)
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"ZooDataset: {meta_path} not found; build the zoo with "
                f"adaptmem.weights.zoo.generate_zoo (a partial zoo has no meta.json)"
            )
        self.meta = _read_meta(meta_path)
        self.kind: str = self.meta["kind"]
        try:
            self.spec = WeightSpec.from_dict(self.meta["spec"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptFileError(meta_path, f"holds an invalid weight spec ({type(e).__name__}: {e})") from e
        self.split = split
        self.arrays = _open_arrays(self.root, self.meta, self.spec, verify=verify)
        self._axis = {name: info["axis"] for name, info in self.meta["arrays"].items()}
        runs = {k: np.asarray(v) for k, v in self.arrays.items() if self._axis[k] == "run" and k != "inputs"}
        self.run_split = split_runs(self.kind, runs, valid_frac=valid_frac, ood_frac=ood_frac, seed=seed)
        run_of = np.asarray(self.arrays["run"])
        keep = np.ones(len(run_of), dtype=bool) if split == "all" else self.run_split[run_of] == split
        if steps is not None:
            keep &= np.isin(np.asarray(self.arrays["step"]), np.asarray(steps))
        self.entries = np.nonzero(keep)[0]
        if len(self.entries) == 0:
            raise ValueError(
                f"ZooDataset: split {split!r} of {self.root} is empty (runs per split: "
                f"{ {s: int((self.run_split == s).sum()) for s in ('train', 'valid', 'ood')} }); "
                f"build a zoo with more runs"
            )

    # ---- sizes ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_rollouts(self) -> int:
        return self.arrays["log_probs"].shape[1]

    @property
    def seq_len(self) -> int:
        return self.arrays["log_probs"].shape[2]

    @property
    def in_features(self) -> int:
        return self.spec.input_size

    @property
    def out_features(self) -> int:
        return self.spec.out_features

    # ---- reading ----------------------------------------------------------------------------
    def _inputs(self, entries: np.ndarray, rollouts: np.ndarray | slice) -> torch.Tensor:
        if self.kind == "formal_language":
            tok = torch.from_numpy(np.asarray(self.arrays["tokens"][entries, rollouts], dtype=np.int64))
            return F.one_hot(tok[..., : self.seq_len], fl.VOCAB).float()
        runs = np.asarray(self.arrays["run"][entries])
        return torch.from_numpy(np.asarray(self.arrays["inputs"][runs, rollouts], dtype=np.float32))

    def labels(self, entries: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per-entry labels for downstream probes (all entries of the split by default)."""
        e = self.entries if entries is None else entries
        run = np.asarray(self.arrays["run"][e])
        out = {}
        for name, arr in self.arrays.items():
            if name in ("weights", "log_probs", "tokens", "inputs"):
                continue
            out[name] = np.asarray(arr[run] if self._axis[name] == "run" else arr[e])
        if "train_accuracy" in out:
            out["generalisation_gap"] = out["train_accuracy"] - out["accuracy"]
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e = self.entries[i]
        item = {
            "weights": torch.from_numpy(np.array(self.arrays["weights"][e])),
            "inputs": self._inputs(np.array([e]), slice(None))[0],
            "log_probs": torch.from_numpy(np.array(self.arrays["log_probs"][e])),
        }
        item.update({k: torch.as_tensor(v[0]) for k, v in self.labels(np.array([e])).items()})
        return item

    def batch(
        self, items: np.ndarray | torch.Tensor, rollouts: np.ndarray | torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Entries ``items`` (positions in this split) with one rollout each (default: rollout 0):
        ``weights [B, P]``, ``inputs [B, T, in]``, ``log_probs [B, T, out]``."""
        items = np.asarray(items, dtype=np.int64)
        rollouts = np.zeros(len(items), dtype=np.int64) if rollouts is None else np.asarray(rollouts, dtype=np.int64)
        e = self.entries[items]
        order = np.argsort(e, kind="stable")  # memory maps read faster in order
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        es, rs = e[order], rollouts[order]
        return {
            "weights": torch.from_numpy(np.asarray(self.arrays["weights"][es], dtype=np.float32))[inv],
            "inputs": self._inputs(es, rs)[inv],
            "log_probs": torch.from_numpy(np.asarray(self.arrays["log_probs"][es, rs], dtype=np.float32))[inv],
        }

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``batch_size`` random entries, each with one random rollout."""
        items = torch.randint(len(self), (batch_size,), generator=generator).numpy()
        rollouts = torch.randint(self.num_rollouts, (batch_size,), generator=generator).numpy()
        return self.batch(items, rollouts)

    def weights(self) -> torch.Tensor:
        """All weights of the split, ``[len, P]`` (read into memory)."""
        return torch.from_numpy(np.asarray(self.arrays["weights"][self.entries], dtype=np.float32))
