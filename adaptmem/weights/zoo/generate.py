"""Train model zoos of small LSTMs, resumably and in parallel, and store them on disk.

A zoo of ``num_runs`` training runs is cut into work units of ``group_size`` runs. One unit
trains its networks *together*: their weights are the rows of one ``[K, P]`` tensor run by
:class:`~adaptmem.weights.functional.BatchedRNN`, and the loss is the sum of the per-network
mean losses, so every network gets exactly the gradients (and, with Adam being elementwise,
the updates) it would get if trained alone. Decoupled weight decay is applied per network
(``w <- w (1 - lr * wd_k)``, then the Adam step), which is AdamW.

Crash safety: each unit saves an atomic checkpoint (weights, optimiser, RNG, records) every
``save_every`` steps and an atomic shard when done; a restarted :func:`generate_zoo` skips
finished units and resumes unfinished ones from their last checkpoint, bit for bit. Units run
single-threaded in a process pool, so the zoo does not depend on ``workers``.

On-disk layout (``root/``): ``meta.json`` (written last; its presence marks a complete zoo;
it holds every array's shape, dtype and SHA-256, and a checksum of itself, all checked by
:class:`ZooDataset`) and one ``.npy`` file per array, opened memory-mapped by :class:`ZooDataset`:

* per checkpoint ("entry", ``E = num_runs * checkpoints``, entry ``e = run * C + c``):
  ``weights [E, P]``, ``log_probs [E, R, T, V]`` (the network's output log-distribution at
  every position of its R stored rollouts), ``accuracy [E]``, ``valid_loss [E]``, ``step [E]``,
  ``run [E]``; formal languages add ``tokens [E, R, T + 1]`` (the sampled rollouts, BOS first),
  sequential MNIST adds ``train_accuracy [E]``.
* per run: formal languages ``task_id [runs]``, ``task [runs, 3]``; sequential MNIST
  ``angle [runs]``, ``weight_decay [runs]``, ``inputs [runs, R, 50, 16]`` (the rollout inputs).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from adaptmem.utils.atomic import atomic_write, atomic_write_text
from adaptmem.utils.checks import check_choice, check_float, check_positive_int
from adaptmem.utils.integrity import file_sha256, load_verified, save_verified, seal_json
from adaptmem.utils.progress import progress
from adaptmem.utils.schedules import piecewise_linear
from adaptmem.weights.functional import BatchedRNN
from adaptmem.weights.spec import WeightSpec
from adaptmem.weights.zoo import formal_language as fl
from adaptmem.weights.zoo import smnist as sm

KINDS = ("formal_language", "smnist")
FORMAT = "adaptmem.zoo"
FORMAT_VERSION = 2  # 2: meta.json holds every array's SHA-256 and its own checksum (1: neither)
_UNIT_CKPT, _SHARD = "adaptmem.zoo.unit-checkpoint", "adaptmem.zoo.shard"  # work files, verified too
EVAL_CHUNK = 250  # digits per evaluation forward pass (every chunk counts)


@dataclass(frozen=True)
class ZooConfig:
    """What to train. The defaults make a laptop-sized formal-language zoo (minutes on 2 cores);
    :meth:`paper` gives the paper's set-up (1,000 runs x 20,000 steps, 9 checkpoints).

    Args:
        kind: ``"formal_language"`` or ``"smnist"``.
        num_runs: training runs (networks); each contributes ``checkpoints`` entries.
        steps: optimiser steps per run; the last checkpoint is taken after them.
        checkpoints: entries per run on the geometric (1-2-5) schedule from 0 to ``steps``.
        group_size: runs trained together in one batched work unit.
        batch_size: sequences per network per step.
        lr: peak learning rate; piecewise-linear to 0.3*lr at steps/2 and 0.03*lr at the end.
        weight_decay: AdamW decay of formal-language runs.
        weight_decays: sequential-MNIST runs draw their decay from these (the task variable).
        hidden_size, num_layers: the LSTM (plus a Linear to the output classes).
        rollouts: stored rollouts per checkpoint (the emulator's training signal).
        accept_samples: strings sampled per checkpoint to measure grammar acceptance.
        max_n: largest n of a^n b^(n+m_b)...; sets the sequence length 4*max_n+7.
        data_dir: MNIST folder (default: :func:`adaptmem.utils.paths.default_data_root`/mnist).
        mnist_split: which MNIST file pair to read (``"test"`` is enough for small zoos); it
            is split 80/20 into training and held-out digits.
        eval_images: held-out (and training) digits used for the accuracy entries (0 = all).
        seed: everything (tasks, initialisations, data order) derives from it.
        save_every: steps between a unit's crash-safety checkpoints.
    """

    kind: str = "formal_language"
    num_runs: int = 64
    steps: int = 1000
    checkpoints: int = 9
    group_size: int = 16
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 1e-4
    weight_decays: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1)
    hidden_size: int = 32
    num_layers: int = 2
    rollouts: int = 20
    accept_samples: int = 200
    max_n: int = 5
    data_dir: str | None = None
    mnist_split: str = "test"
    eval_images: int = 500
    seed: int = 0
    save_every: int = 250

    def __post_init__(self) -> None:
        check_choice("ZooConfig", "kind", self.kind, KINDS)
        for name in (
            "num_runs",
            "steps",
            "group_size",
            "batch_size",
            "hidden_size",
            "num_layers",
            "rollouts",
            "accept_samples",
            "save_every",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"ZooConfig: {name} must be a positive int, got {v!r}")
        if not isinstance(self.checkpoints, int) or self.checkpoints < 2:
            raise ValueError(
                f"ZooConfig: checkpoints must be an int >= 2 (step 0 and the last), got {self.checkpoints!r}"
            )
        if self.kind == "formal_language":
            fl.valid_max_n(self.max_n)
        check_choice("ZooConfig", "mnist_split", self.mnist_split, ("train", "test"))
        for name in ("lr", "weight_decay"):
            check_float("ZooConfig", name, getattr(self, name), lo=0.0, lo_open=name == "lr")
        if not isinstance(self.weight_decays, (tuple, list)) or not self.weight_decays:
            raise ValueError(
                f"ZooConfig: weight_decays must be a non-empty tuple of numbers, got {self.weight_decays!r}"
            )
        for i, w in enumerate(self.weight_decays):
            check_float("ZooConfig", f"weight_decays[{i}]", w, lo=0.0)
        object.__setattr__(self, "weight_decays", tuple(float(w) for w in self.weight_decays))

    @classmethod
    def paper(cls, kind: str = "formal_language", **overrides: Any) -> ZooConfig:
        """The paper's zoo: 1,000 runs, 20,000 steps, checkpoints 0,100,200,500,...,20k,
        100 rollouts, 1,000 acceptance samples, n <= 9, the full MNIST training file."""
        base = dict(
            kind=kind,
            num_runs=1000,
            steps=20000,
            rollouts=100,
            accept_samples=1000,
            max_n=9,
            mnist_split="train",
            eval_images=0,
            save_every=1000,
        )
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weight_decays"] = list(self.weight_decays)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "weight_decays" else v) for k, v in d.items() if k in known})

    @classmethod
    def parse_overrides(cls, text: str) -> dict[str, Any]:
        """``"hidden_size=16,rollouts=10"`` -> ``{"hidden_size": 16, "rollouts": 10}``, typed like the fields."""
        types = {f.name: f.type for f in fields(cls)}
        out: dict[str, Any] = {}
        for item in filter(None, (t.strip() for t in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in types:
                raise ValueError(
                    f"ZooConfig.parse_overrides: expected key=value with a key in {sorted(types)}, got {item!r}"
                )
            kind = types[key]
            out[key] = int(value) if kind == "int" else float(value) if kind == "float" else value
        return out

    def short_hash(self) -> str:
        """8 hex digits identifying the config (for folder names)."""
        import hashlib

        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    @property
    def spec(self) -> WeightSpec:
        if self.kind == "formal_language":
            return WeightSpec("lstm", fl.VOCAB, self.hidden_size, self.num_layers, fl.VOCAB)
        return WeightSpec("lstm", sm.IN_FEATURES, self.hidden_size, self.num_layers, sm.CLASSES)

    @property
    def checkpoint_steps(self) -> list[int]:
        return geometric_checkpoints(self.steps, self.checkpoints)

    @property
    def num_checkpoints(self) -> int:
        """Entries per run (fewer than ``checkpoints`` when ``steps`` is too small for them)."""
        return len(self.checkpoint_steps)

    @property
    def num_units(self) -> int:
        return math.ceil(self.num_runs / self.group_size)

    def lr_at(self, step: int) -> float:
        half = max(1, self.steps // 2)
        knots = [(0, self.lr), (half, 0.3 * self.lr), (max(half + 1, self.steps), 0.03 * self.lr)]
        return piecewise_linear(knots)(step)


def geometric_checkpoints(last: int, count: int = 9) -> list[int]:
    """0, the largest ``count - 2`` numbers of the 1-2-5 series below ``last``, and ``last``
    (fewer when the series has fewer below ``last``: ``geometric_checkpoints(2)`` is ``[0, 1, 2]``).

    ``geometric_checkpoints(20000)`` is ``[0, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]``.
    """
    check_positive_int("geometric_checkpoints", "last", last)
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise ValueError(f"geometric_checkpoints: count must be an int >= 2 (step 0 and last), got {count!r}")
    series = sorted({m * 10**e for e in range(12) for m in (1, 2, 5) if m * 10**e < last})
    middle = series[-(count - 2) :] if count > 2 else []
    return [0, *middle, last]


# ---- planning -------------------------------------------------------------------------------
def plan_runs(cfg: ZooConfig) -> dict[str, np.ndarray]:
    """The task of every run, drawn from ``cfg.seed`` (formal languages: each task once
    before any repeats)."""
    rng = np.random.default_rng(cfg.seed)
    if cfg.kind == "formal_language":
        reps = math.ceil(cfg.num_runs / fl.num_tasks())
        ids = np.concatenate([rng.permutation(fl.num_tasks()) for _ in range(reps)])[: cfg.num_runs]
        return {"task_id": ids.astype(np.int64), "task": np.asarray(fl.TASKS, dtype=np.int64)[ids]}
    angle = rng.uniform(0.0, 360.0, cfg.num_runs)
    wd = rng.choice(np.asarray(cfg.weight_decays, dtype=np.float64), cfg.num_runs)
    return {"angle": angle.astype(np.float32), "weight_decay": wd.astype(np.float32)}


def _unit_runs(cfg: ZooConfig, unit: int) -> np.ndarray:
    return np.arange(unit * cfg.group_size, min(cfg.num_runs, (unit + 1) * cfg.group_size))


# ---- the two problems -----------------------------------------------------------------------
class _FormalLanguage:
    def __init__(self, cfg: ZooConfig, plan: dict[str, np.ndarray], gen: torch.Generator, eval_gen: torch.Generator):
        self.cfg, self.gen, self.spec = cfg, gen, cfg.spec
        self.m = torch.as_tensor(plan["task"], dtype=torch.int64)
        self.wd = torch.full((len(self.m), 1), cfg.weight_decay)
        self.valid = fl.sample_strings(self.m, 128, cfg.max_n, eval_gen)
        self.length = fl.seq_len(cfg.max_n)

    def _nll(self, vectors: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = F.one_hot(tokens[..., :-1], fl.VOCAB).float()
        y = BatchedRNN(self.spec, vectors)(x)[0]
        ce = F.cross_entropy(y.flatten(0, 2), tokens[..., 1:].flatten(), reduction="none")
        return ce.view(len(vectors), -1).mean(1)  # [K]

    def loss(self, vectors: torch.Tensor) -> torch.Tensor:
        return self._nll(vectors, fl.sample_strings(self.m, self.cfg.batch_size, self.cfg.max_n, self.gen)).sum()

    def sample(self, nets: BatchedRNN, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` rollouts per network: tokens ``[K, count, T+1]`` and log-probs ``[K, count, T, V]``."""
        K = nets.n
        tok = torch.full((K, count), fl.BOS, dtype=torch.int64)
        tokens, logps, state = [tok], [], None
        for _ in range(self.length):
            y, state = nets.step(F.one_hot(tok, fl.VOCAB).float(), state)
            logp = torch.log_softmax(y, -1)
            tok = torch.multinomial(logp.exp().view(-1, fl.VOCAB), 1, generator=self.gen).view(K, count)
            tokens.append(tok)
            logps.append(logp)
        return torch.stack(tokens, -1), torch.stack(logps, -2)

    @torch.no_grad()
    def record(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        nets = BatchedRNN(self.spec, vectors)
        tokens, logp = self.sample(nets, self.cfg.rollouts)
        samples, _ = self.sample(nets, self.cfg.accept_samples)
        acc = fl.accepts(samples[..., 1:], self.m.unsqueeze(1), self.cfg.max_n).float().mean(1)
        return {
            "weights": vectors.clone(),
            "tokens": tokens.to(torch.uint8),
            "log_probs": logp,
            "accuracy": acc,
            "valid_loss": self._nll(vectors, self.valid),
        }

    def run_arrays(self) -> dict[str, torch.Tensor]:
        return {}


class _SequentialMNIST:
    def __init__(self, cfg: ZooConfig, plan: dict[str, np.ndarray], gen: torch.Generator, eval_gen: torch.Generator):
        from adaptmem.utils.paths import default_data_root

        self.cfg, self.gen, self.spec = cfg, gen, cfg.spec
        data_dir = cfg.data_dir or str(default_data_root() / "mnist")
        self.tr_x, self.tr_y, ho_x, ho_y = sm.mnist_pools(str(data_dir), cfg.mnist_split, cfg.seed)
        self.angle = torch.as_tensor(plan["angle"], dtype=torch.float32)
        self.wd = torch.as_tensor(plan["weight_decay"], dtype=torch.float32).unsqueeze(1)
        K = len(self.angle)
        n_eval = cfg.eval_images or len(ho_x)
        self.eval_x, self.eval_y = ho_x[:n_eval], ho_y[:n_eval]
        self.tr_eval_x, self.tr_eval_y = self.tr_x[:n_eval], self.tr_y[:n_eval]
        idx = torch.randint(len(ho_x), (K, cfg.rollouts), generator=eval_gen)
        self.inputs = sm.rotated_tiles(ho_x[idx], self.angle)  # [K, R, 50, 16]

    def loss(self, vectors: torch.Tensor) -> torch.Tensor:
        K = len(vectors)
        idx = torch.randint(len(self.tr_x), (K, self.cfg.batch_size), generator=self.gen)
        y = BatchedRNN(self.spec, vectors)(sm.rotated_tiles(self.tr_x[idx], self.angle))[0]  # [K, B, 50, 10]
        labels = self.tr_y[idx].unsqueeze(-1).expand(-1, -1, sm.SEQ_LEN)
        ce = F.cross_entropy(y.flatten(0, 2), labels.flatten(), reduction="none")
        return ce.view(K, -1).mean(1).sum()

    def _evaluate(
        self, nets: BatchedRNN, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        K, correct, ce, chunk = nets.n, 0, 0, EVAL_CHUNK
        for s in range(0, len(images), chunk):
            x = images[s : s + chunk].unsqueeze(0).expand(K, -1, -1, -1)
            y = nets(sm.rotated_tiles(x, self.angle))[0]
            lab = labels[s : s + chunk]
            correct = correct + (y[:, :, -1].argmax(-1) == lab).float().sum(1)
            full = lab.view(1, -1, 1).expand(K, -1, sm.SEQ_LEN)
            ce = ce + F.cross_entropy(y.flatten(0, 2), full.flatten(), reduction="none").view(K, -1).mean(1) * len(lab)
        return correct / len(images), ce / len(images)

    @torch.no_grad()
    def record(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        nets = BatchedRNN(self.spec, vectors)
        acc, vloss = self._evaluate(nets, self.eval_x, self.eval_y)
        tr_acc, _ = self._evaluate(nets, self.tr_eval_x, self.tr_eval_y)
        return {
            "weights": vectors.clone(),
            "log_probs": torch.log_softmax(nets(self.inputs)[0], -1),
            "accuracy": acc,
            "valid_loss": vloss,
            "train_accuracy": tr_acc,
        }

    def run_arrays(self) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs}


class ZooInterrupted(RuntimeError):
    """Raised by the test hook that simulates a crash in the middle of a unit."""


def train_unit(cfg: ZooConfig, unit: int, root: str | os.PathLike, *, interrupt_at: int | None = None) -> Path:
    """Train one work unit (resuming from its checkpoint) and write its shard; returns the shard path.

    ``interrupt_at``: raise :class:`ZooInterrupted` when reaching that step (a simulated crash
    that loses the work since the last checkpoint); for tests.
    """
    if not isinstance(cfg, ZooConfig):
        raise TypeError(f"train_unit: cfg must be a ZooConfig, got {type(cfg).__name__}")
    if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < cfg.num_units:
        raise ValueError(f"train_unit: unit must be an int in [0, num_units={cfg.num_units}), got {unit!r}")
    root = Path(root)
    shard = root / "shards" / f"unit_{unit:05d}.pt"
    if shard.exists():
        return shard
    plan_all = plan_runs(cfg)
    runs = _unit_runs(cfg, unit)
    plan = {k: v[runs] for k, v in plan_all.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # results must not depend on how many units share the machine
    try:
        seed = (cfg.seed * 1_000_003 + unit) % 2**63
        gen = torch.Generator().manual_seed(seed)
        eval_gen = torch.Generator().manual_seed(seed + 7_919)
        problem = (_FormalLanguage if cfg.kind == "formal_language" else _SequentialMNIST)(cfg, plan, gen, eval_gen)
        spec = cfg.spec
        vectors = spec.init_vectors(len(runs), gen).requires_grad_()
        opt = torch.optim.Adam([vectors], lr=cfg.lr)
        records: list[dict[str, torch.Tensor]] = []
        start = 0
        ckpt = root / "work" / f"unit_{unit:05d}.ckpt"
        if ckpt.exists():
            state = load_verified(ckpt, format=_UNIT_CKPT)
            with torch.no_grad():
                vectors.copy_(state["vectors"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            start, records = state["step"], state["records"]
        marks = set(cfg.checkpoint_steps)
        for step in range(start, cfg.steps + 1):
            if step > start and step % cfg.save_every == 0:
                save_verified(
                    {
                        "vectors": vectors.detach().clone(),
                        "optimizer": opt.state_dict(),
                        "generator": gen.get_state(),
                        "step": step,
                        "records": records,
                    },
                    ckpt,
                    format=_UNIT_CKPT,
                )
            if interrupt_at is not None and step == interrupt_at:
                raise ZooInterrupted(f"simulated crash of unit {unit} at step {step}")
            if step in marks:
                records.append(problem.record(vectors.detach()))
            if step == cfg.steps:
                break
            lr = cfg.lr_at(step)
            opt.param_groups[0]["lr"] = lr
            loss = problem.loss(vectors)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                vectors.mul_(1.0 - lr * problem.wd)  # AdamW's decoupled decay, per network
            opt.step()
        out = {k: torch.stack([r[k] for r in records], dim=1) for k in records[0]}  # [K, C, ...]
        out.update({f"run:{k}": v for k, v in problem.run_arrays().items()})
        save_verified(out, shard, format=_SHARD)
        ckpt.unlink(missing_ok=True)
        return shard
    finally:
        torch.set_num_threads(threads)


def _unit_job(cfg_dict: dict[str, Any], unit: int, root: str) -> int:
    train_unit(ZooConfig.from_dict(cfg_dict), unit, root)
    return unit


# ---- orchestration --------------------------------------------------------------------------
def generate_zoo(
    root: str | os.PathLike,
    cfg: ZooConfig,
    *,
    workers: int = 1,
    show_progress: bool = True,
    keep_work: bool = False,
    _interrupt: tuple[int, int] | None = None,
) -> Path:
    """Build (or finish building) the zoo described by ``cfg`` in ``root``; returns ``root``.

    Args:
        root: output folder. Re-running on a partial zoo resumes it; on a finished zoo with the
            same config it returns at once; a different config raises ``ValueError``.
        cfg: what to train.
        workers: processes training units in parallel (``<= 1``: in this process).
        show_progress: a progress bar over units (only on a terminal).
        keep_work: keep the per-unit shards after assembling the memory-mapped arrays.
        _interrupt: ``(unit, step)``: simulate a crash there (tests only).
    """
    if not isinstance(cfg, ZooConfig):
        raise TypeError(f"generate_zoo: cfg must be a ZooConfig, got {type(cfg).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"generate_zoo: workers must be an int, got {type(workers).__name__} {workers!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"generate_zoo: root {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    plan_path = root / "plan.json"
    if plan_path.exists():
        old = json.loads(plan_path.read_text())["config"]
        if old != cfg.to_dict():
            diff = sorted(k for k in set(old) | set(cfg.to_dict()) if old.get(k) != cfg.to_dict().get(k))
            raise ValueError(
                f"generate_zoo: {root} holds a zoo with a different config (fields {diff}); "
                f"use another folder or the same config to resume"
            )
    else:
        atomic_write_text(plan_path, json.dumps({"config": cfg.to_dict()}, indent=1))
    if (root / "meta.json").exists():
        return root
    if cfg.kind == "smnist":  # fail early, in this process, when MNIST is missing
        sm.mnist_pools(str(cfg.data_dir or _default_mnist()), cfg.mnist_split, cfg.seed)
    pending = [u for u in range(cfg.num_units) if not (root / "shards" / f"unit_{u:05d}.pt").exists()]
    bar = progress(
        total=cfg.num_units,
        initial=cfg.num_units - len(pending),
        desc=f"zoo {cfg.kind}",
        unit="unit",
        disable=None if show_progress else True,
    )
    try:
        if workers <= 1 or len(pending) <= 1:
            for u in pending:
                at = _interrupt[1] if _interrupt is not None and _interrupt[0] == u else None
                train_unit(cfg, u, root, interrupt_at=at)
                bar.update(1)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(_unit_job, cfg.to_dict(), u, str(root)) for u in pending]
                for f in as_completed(futures):
                    f.result()
                    bar.update(1)
    finally:
        bar.close()
    _assemble(root, cfg)
    if not keep_work:
        shutil.rmtree(root / "shards", ignore_errors=True)
        shutil.rmtree(root / "work", ignore_errors=True)
    return root


def _default_mnist() -> Path:
    from adaptmem.utils.paths import default_data_root

    return default_data_root() / "mnist"


_NUMPY_DTYPES = {torch.float32: np.float32, torch.uint8: np.uint8, torch.int64: np.int64}


def _assemble(root: Path, cfg: ZooConfig) -> None:
    """Copy the unit shards into memory-mapped ``.npy`` arrays, then write ``meta.json``."""
    C, R = cfg.num_checkpoints, cfg.num_runs
    E = R * C
    shards = [load_verified(root / "shards" / f"unit_{u:05d}.pt", format=_SHARD) for u in range(cfg.num_units)]
    arrays: dict[str, dict[str, Any]] = {}
    for key, first in shards[0].items():
        per_run = key.startswith("run:")
        name = key[4:] if per_run else key
        tail = tuple(first.shape[1:] if per_run else first.shape[2:])
        shape = (R, *tail) if per_run else (E, *tail)
        out = np.lib.format.open_memmap(root / f"{name}.npy", mode="w+", dtype=_NUMPY_DTYPES[first.dtype], shape=shape)
        for u, sh in enumerate(shards):
            runs = _unit_runs(cfg, u)
            t = sh[key].numpy()
            if per_run:
                out[runs[0] : runs[-1] + 1] = t
            else:
                out[runs[0] * C : (runs[-1] + 1) * C] = t.reshape(-1, *tail)
        out.flush()
        del out
        arrays[name] = {
            "axis": "run" if per_run else "entry",
            "shape": list(shape),
            "dtype": str(_NUMPY_DTYPES[first.dtype].__name__),
        }
    steps = np.asarray(cfg.checkpoint_steps, dtype=np.int64)
    extra = {
        "run": np.repeat(np.arange(R, dtype=np.int64), C),
        "step": np.tile(steps, R),
        "checkpoint": np.tile(np.arange(C, dtype=np.int64), R),
    }
    for axis, group in (("entry", extra), ("run", plan_runs(cfg))):
        for name, arr in group.items():
            atomic_write(root / f"{name}.npy", lambda f, arr=arr: np.save(f, arr))
            arrays[name] = {"axis": axis, "shape": list(arr.shape), "dtype": str(arr.dtype)}
    for name, info in arrays.items():  # meta.json is the commit marker: hash what it vouches for
        info["sha256"] = file_sha256(root / f"{name}.npy")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": cfg.kind,
        "spec": cfg.spec.to_dict(),
        "config": cfg.to_dict(),
        "num_runs": R,
        "num_entries": E,
        "checkpoint_steps": cfg.checkpoint_steps,
        "arrays": arrays,
    }
    atomic_write_text(root / "meta.json", json.dumps(seal_json(meta), indent=1))
