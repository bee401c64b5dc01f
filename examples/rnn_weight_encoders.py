"""Learn useful representations of RNN weights (Herrmann, Faccio & Schmidhuber, ICML 2024), small.

1. Build a zoo of small LSTMs trained on formal languages a^n b^(n+m_b) c^(n+m_c) d^(n+m_d)
   (or on rotated sequential MNIST), in parallel processes; it is reused (or resumed) when the
   output folder already holds it.
2. Train each encoder jointly with an emulator that must reproduce every zoo network's output
   distributions from the encoder's 16-d unit-norm code z alone.
3. Print the emulation loss on held-out validation tasks and on out-of-distribution tasks,
   fit downstream probes on the frozen codes, and save a PCA plot of z.

    python examples/rnn_weight_encoders.py                       # ~8 CPU-minutes (zoo ~4.5, encoders ~3)
    python examples/rnn_weight_encoders.py --encoders interactive,probing,stats,flat,nf,transformer
    python examples/rnn_weight_encoders.py --paper               # the paper's sizes (GPU-scale)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from adaptmem.utils import cli, default_data_root
from adaptmem.utils.logging import WANDB_HELP


@dataclass
class Config:
    zoo: str = "formal_language"  # formal_language | smnist
    out: str = "runs/rnn_weight_encoders"
    data: str = str(default_data_root())  # MNIST in its mnist/ sub-folder, for --zoo smnist
    download: bool = False  # fetch missing MNIST files for --zoo smnist
    runs: int = 64  # networks in the zoo (x 9 checkpoints each)
    zoo_steps: int = 1000  # training steps per zoo network
    zoo_set: str = ""  # more ZooConfig fields, e.g. "hidden_size=16,rollouts=10"
    workers: int = 2  # processes that train the zoo
    encoders: str = "none,interactive,probing,flat"  # none (baseline),interactive,probing,stats,flat,nf,transformer
    steps: int = 800  # encoder + emulator training steps
    batch_size: int = 32  # zoo networks per step (one rollout each)
    lr: float = 1e-3
    clip: float = 1.0  # gradient-norm clip, encoder and emulator separately
    loss: str = "tv"  # tv | reverse_kl
    width: int = 128  # probing readers / emulator width
    emulator_layers: int = 1
    probe_steps: int = 500  # full-batch Adam steps per downstream probe
    paper: bool = False  # the paper's zoo and model sizes, 100k steps (needs a GPU and days)
    threads: int | None = None  # default: chosen from the machine (adaptmem.utils.threads)
    seed: int = 0
    wandb: str = ""  # W&B project (empty: off)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    helps = {
        "zoo": "formal_language or smnist",
        "out": "where the zoo, checkpoints and the plot go",
        "runs": "networks in the zoo",
        "zoo_steps": "training steps per zoo network",
        "zoo_set": "other ZooConfig fields as key=value,... (e.g. hidden_size=16,rollouts=10,max_n=6; default: none)",
        "workers": "processes training the zoo",
        "encoders": "comma-separated: none (baseline: one z for all),interactive,probing,stats,flat,nf,transformer",
        "steps": "encoder+emulator training steps",
        "batch_size": "zoo networks per step",
        "lr": "AdamW learning rate",
        "clip": "gradient-norm clip",
        "loss": "tv or reverse_kl",
        "width": "reader / emulator width",
        "emulator_layers": "emulator LSTM layers",
        "probe_steps": "Adam steps per downstream probe",
        "paper": "use the paper's sizes (1000 runs x 20k steps, 100k encoder steps, width 256)",
        "seed": "seed of everything",
        "wandb": WANDB_HELP,
        "download": "download the missing MNIST files (11 MB) into --data for --zoo smnist (default: off)",
    }
    p = cli.parser(__doc__)
    for f in fields(Config):
        if f.name == "threads":
            cli.add_threads(p)
        elif f.name == "data":
            cli.add_data(p, "data folder; for --zoo smnist the MNIST IDX files are in its mnist/ sub-folder (or in it)")
        elif f.type == "bool":
            p.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", help=helps[f.name])
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default, help=helps[f.name])
    cli.add_aliases(p, {"--out-dir": "--out", "--data-dir": "--data"})
    return Config(**vars(cli.parse(p, argv)))


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    CONFIG = parse_args()

import torch

from adaptmem.utils import configure_threads, count_parameters, seed_everything
from adaptmem.weights import (
    DownstreamProbe,
    EmulationConfig,
    Emulator,
    build_encoder,
    downstream_targets,
    encode,
    evaluate_emulation,
    plot_pca,
    train_emulation,
)
from adaptmem.weights.zoo import ZooConfig, ZooDataset, generate_zoo


def encoder_kwargs(name: str, cfg: Config, kind: str) -> dict:
    """Laptop-sized encoders by default; the paper's with --paper."""
    probe = {
        "input_kind": "categorical" if kind == "formal_language" else "continuous",
        "probe_len": 22 if kind == "formal_language" else 50,
        "hidden": cfg.width,
    }
    small = {
        "interactive": probe,
        "probing": {**probe, "num_probes": 8},
        "stats": {},
        "flat": {},
        "nf": {"channels": 16, "num_layers": 2},
        "transformer": {"d_model": 64, "num_layers": 2},
        "none": {},
    }
    if cfg.paper:
        small.update(nf={}, transformer={})
    return small[name]


def main(cfg: Config | Sequence[str] | None = None) -> None:
    cfg = cfg if isinstance(cfg, Config) else parse_args(cfg)
    if cfg.paper:
        cfg.runs, cfg.zoo_steps, cfg.steps, cfg.batch_size, cfg.lr, cfg.clip = 1000, 20000, 100_000, 64, 1e-4, 0.1
        cfg.width, cfg.emulator_layers = 256, 2
    configure_threads(cfg.threads)
    seed_everything(cfg.seed)
    out = Path(cfg.out)

    # 1. the zoo (resumable: rerunning continues an interrupted build, or reuses a finished one).
    # data_dir is part of the zoo's hash: left unset for the default folder, so zoos keep their names.
    mnist = cli.find_in(cfg.data, "mnist", "*-ubyte*")
    data_dir = str(mnist) if cfg.zoo == "smnist" and cfg.data != Config.data else None
    overrides = dict(num_runs=cfg.runs, steps=cfg.zoo_steps, seed=cfg.seed, data_dir=data_dir)
    overrides.update(ZooConfig.parse_overrides(cfg.zoo_set))
    zoo_cfg = ZooConfig.paper(cfg.zoo, **overrides) if cfg.paper else ZooConfig(kind=cfg.zoo, **overrides)
    if cfg.zoo == "smnist" and cfg.download:
        from adaptmem.data.mnist import load_mnist

        load_mnist(data_dir or Path(cfg.data) / "mnist", zoo_cfg.mnist_split, download_if_missing=True)
    t0 = time.time()
    root = generate_zoo(out / f"zoo_{cfg.zoo}_{zoo_cfg.short_hash()}", zoo_cfg, workers=cfg.workers)
    data = {s: ZooDataset(root, s) for s in ("train", "valid", "ood")}
    print(
        f"zoo: {root} ({time.time() - t0:.0f}s) | entries train/valid/ood = "
        f"{len(data['train'])}/{len(data['valid'])}/{len(data['ood'])} | {data['train'].spec.num_params} weights each"
    )

    # 2. encoders trained jointly with an emulator each
    emu_cfg = EmulationConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        clip=cfg.clip,
        loss=cfg.loss,
        eval_every=max(1, cfg.steps // 4),
        save_every=max(1, cfg.steps // 4),
        seed=cfg.seed,
    )
    spec, results, codes = data["train"].spec, {}, {}
    for name in cfg.encoders.split(","):
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(name, spec, **encoder_kwargs(name, cfg, cfg.zoo))
        emulator = Emulator(spec.input_size, spec.out_features, hidden=cfg.width, num_layers=cfg.emulator_layers)
        t0 = time.time()
        train_emulation(
            encoder,
            emulator,
            data["train"],
            emu_cfg,
            valid=data["valid"],
            checkpoint=out / f"{name}_{cfg.zoo}_{cfg.steps}.pt",
            log_dir=out / "logs" / f"{name}_{cfg.zoo}_{cfg.steps}",
            wandb=cfg.wandb or None,
        )
        seconds = time.time() - t0
        # 3. held-out emulation losses (all stored rollouts), then codes for the probes and plot
        results[name] = {s: evaluate_emulation(encoder, emulator, data[s], cfg.loss) for s in ("valid", "ood")}
        results[name].update(params=count_parameters(encoder), seconds=seconds)
        codes[name] = {s: encode(encoder, d) for s, d in data.items()}
        print(f"{name}: valid {results[name]['valid']:.4f} | ood {results[name]['ood']:.4f} | {seconds:.0f}s")

    print(f"\nEmulation loss ({cfg.loss}, lower is better) on {cfg.zoo}, {cfg.runs} runs, {cfg.steps} steps")
    print("| encoder | params | validation | OOD | train time |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['params']:,} | {r['valid']:.4f} | {r['ood']:.4f} | {r['seconds']:.0f}s |")

    # 4. downstream probes on frozen z, fitted on the training split
    labels = {s: d.labels() for s, d in data.items()}
    targets = {s: downstream_targets(cfg.zoo, labels[s]) for s in data}
    print("\nDownstream probes on frozen z (classification: accuracy; regression: R^2), validation / OOD")
    print("| encoder | " + " | ".join(targets["train"]) + " |\n|---|" + "---|" * len(targets["train"]))
    for name, z in codes.items():
        cells = []
        for target, (y, kind) in targets["train"].items():
            probe = DownstreamProbe.fit(z["train"], y, kind, steps=cfg.probe_steps, seed=cfg.seed)
            cells.append(" / ".join(f"{probe.score(z[s], targets[s][target][0]):.3f}" for s in ("valid", "ood")))
        print(f"| {name} | " + " | ".join(cells) + " |")

    # 5. PCA of z over all splits, coloured by the networks' accuracy
    allz = {name: torch.cat([z[s] for s in data]) for name, z in codes.items() if name != "none"}
    if allz:
        colour = torch.cat([torch.as_tensor(labels[s]["accuracy"]) for s in data]).numpy()
        path = plot_pca({n: (z, colour) for n, z in allz.items()}, out / f"pca_{cfg.zoo}.png", color_label="accuracy")
        print(f"\nPCA plot: {path}" if path else "\n(matplotlib not installed: no PCA plot)")


if __name__ == "__main__":
    cli.run(main, CONFIG)
