"""GPU benchmark of the fused kernels: SRWM fwd+bwd, the delta rule, and whole layers.

    python benchmarks/bench_gpu.py                    # on a CUDA machine (the numbers in docs/gpu.md)
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --device cpu --quick   # smoke run of this script

Prints, per SRWM configuration, the time of forward + backward for each backend, the speed-up
over autograd through the PyTorch step loop (the issue asks for >= 50x), peak activation
memory, and the analytic floor of the step (FLOPs and bytes, see ``srwm_floor``) with the
achieved fraction of it. The reference loop stores every step's fast weights, so at the large
configuration it runs at ``--ref-steps`` steps and its time is scaled linearly in T (marked
"~"). Then the delta rule per backend, and the SRWM layer against a DeltaNet layer of equal size.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from adaptmem.utils import cli

# FP32 (non-tensor-core) peaks in TFLOP/s, from NVIDIA's data sheets; override with --peak-tflops.
PEAK_FP32_TFLOPS = {"H100 80GB HBM3": 67.0, "H100 PCIe": 51.0, "H200": 67.0, "A100": 19.5}


@dataclass
class Config:
    device: str
    quick: bool
    repeats: int
    ref_steps: int
    peak_tflops: float | None


def parse(argv: Sequence[str] | None = None) -> Config:
    p = cli.parser(__doc__)
    p.add_argument(
        "--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run under TRITON_INTERPRET=1)"
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs, measures nothing")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement (median reported)")
    p.add_argument(
        "--ref-steps",
        type=int,
        default=256,
        help="longest T for autograd through the step loop; longer runs are scaled from it",
    )
    p.add_argument("--peak-tflops", type=float, default=None, help="FP32 peak of the GPU (default: looked up by name)")
    a = cli.parse(p, argv)
    return Config(a.device, a.quick, a.repeats, a.ref_steps, a.peak_tflops)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    CONFIG = parse()

import torch

from adaptmem.layers import SRWM, DeltaNet
from adaptmem.ops import OpCall, delta_rule, resolve_backend, srwm


def srwm_floor(B: int, H: int, D: int, T: int, C: int, x_bytes: int) -> dict[str, float]:
    """FLOPs and HBM bytes of SRWM forward + backward, summed over all heads and steps.

    Per head and step, with E = 3D + 4 and an FMA counted as 2 FLOPs:
    forward  ``a = x M``, ``d = (q - k) M``, ``M += k^T u``: 6 D E;
    backward the recomputed update 2 D E, ``k G``, ``G u^T``, ``M dd^T``, ``M da^T`` 8 D E and
    the two rank-one terms of G 4 D E: 14 D E; together 20 D E.
    Compulsory bytes: x, y, dy, dx (4 D in their dtypes), the saved ``[q | k | b]`` and ``d``
    (5D + 8 fp32, written once, read twice), the checkpoints (D E fp32 every C steps, written
    and read). This design also writes and reads back each step's weights in the backward's
    scratch (2 D E fp32): that traffic is the ``design`` floor.
    """
    E = 3 * D + 4
    steps = B * H * T
    flops = 20 * D * E * steps
    compulsory = steps * (4 * D * x_bytes + 3 * (5 * D + 8) * 4 + 2 * D * E * 4 / C)
    return dict(flops=flops, bytes=compulsory, bytes_design=compulsory + steps * 2 * D * E * 4)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, cfg: Config) -> float:
    """Median seconds of ``fn()`` after one warm-up call (which also compiles the kernels)."""
    fn()
    sync(cfg.device)
    times = []
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        fn()
        sync(cfg.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory(fn, cfg: Config) -> float:
    """Peak memory above the inputs during ``fn()`` in MiB (CUDA only)."""
    if cfg.device != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def hardware_peaks(cfg: Config) -> tuple[float, float]:
    """(FP32 FLOP/s, achievable bytes/s measured by a large device copy)."""
    if cfg.device != "cuda":
        return float("nan"), float("nan")
    name = torch.cuda.get_device_name()
    tflops = cfg.peak_tflops or next((v for k, v in PEAK_FP32_TFLOPS.items() if k in name), float("nan"))
    src = torch.empty(2**28, dtype=torch.float32, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    copy_time = timed(lambda: dst.copy_(src), cfg)
    return tflops * 1e12, 2 * src.numel() * 4 / copy_time


def srwm_inputs(B, T, H, D, device, dtype=torch.float32):
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(B, T, H, D, device=device, dtype=dtype, generator=g)
    ws = [torch.randn(H, D, n, device=device, generator=g) / D**0.5 for n in (D, D, D, 4)]
    return [x, *ws]


def srwm_step(inputs, backend):
    """``backend="reference"``: autograd through the step loop (``mode="reference"``)."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    kw = dict(mode="reference") if backend == "reference" else dict(backend=backend)
    y, state = srwm(*leaves, **kw)
    (y.float().square().mean() + sum(M.square().mean() for M in state)).backward()


def bench_srwm(cfg: Config, peaks: tuple[float, float]) -> None:
    sizes = [(2, 2, 4, 9)] if cfg.quick else [(32, 8, 16, 512), (8, 16, 64, 4096)]
    print("\n## SRWM forward + backward (fp32 inputs)\n")
    print(
        "| B | H | D | T | backend | ms | vs reference loop | peak MiB "
        "| % of floor (compulsory / design) | us per step |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for B, H, D, T in sizes:
        inputs = srwm_inputs(B, T, H, D, cfg.device)
        T_ref = min(T, cfg.ref_steps)
        ref_inputs = [inputs[0][:, :T_ref].contiguous(), *inputs[1:]]
        t_ref = timed(lambda: srwm_step(ref_inputs, "reference"), cfg) * T / T_ref
        fl = srwm_floor(B, H, D, T, 64, 4)
        for backend in ("reference", "torch", "triton"):
            if backend == "reference":
                t, mem, mark = t_ref, peak_memory(lambda: srwm_step(ref_inputs, backend), cfg), "~" if T_ref < T else ""
            else:
                t, mark = timed(lambda: srwm_step(inputs, backend), cfg), ""
                mem = peak_memory(lambda: srwm_step(inputs, backend), cfg)
            floor = max(fl["flops"] / peaks[0], fl["bytes"] / peaks[1])
            floor_design = max(fl["flops"] / peaks[0], fl["bytes_design"] / peaks[1])
            print(
                f"| {B} | {H} | {D} | {T} | {backend} | {mark}{t * 1e3:.2f} | {t_ref / t:.1f}x | "
                f"{mem:.0f}{' (T=' + str(T_ref) + ')' if mark else ''} | "
                f"{100 * floor / t:.1f} / {100 * floor_design / t:.1f} | {t / T * 1e6:.2f} |"
            )
        print(
            f"\nfloor: {fl['flops'] / 1e9:.2f} GFLOP, {fl['bytes'] / 1e9:.3f} GB compulsory, "
            f"{fl['bytes_design'] / 1e9:.3f} GB with the backward's scratch"
        )


def bench_delta(cfg: Config) -> None:
    B, T, H, D = (1, 9, 2, 4) if cfg.quick else (8, 4096, 16, 64)
    dtype = torch.float32 if cfg.device == "cpu" else torch.bfloat16
    g = torch.Generator(device=cfg.device).manual_seed(0)
    q = torch.rand(B, T, H, D, device=cfg.device, generator=g).to(dtype)
    k = torch.nn.functional.normalize(torch.rand(B, T, H, D, device=cfg.device, generator=g), dim=-1).to(dtype)
    v = torch.randn(B, T, H, D, device=cfg.device, generator=g).to(dtype)
    beta = torch.rand(B, T, H, device=cfg.device, generator=g).to(dtype)
    print(f"\n## Delta rule forward + backward, B={B} T={T} H={H} D={D} {dtype}\n")
    print("| backend | ms | vs torch chunk |")
    print("|---|---|---|")

    def step(backend):
        leaves = [t.detach().requires_grad_() for t in (q, k, v, beta)]
        o, S = delta_rule(*leaves, backend=backend)
        (o.float().square().mean() + S.square().mean()).backward()

    base = timed(lambda: step("torch"), cfg)
    for backend in ("torch", "triton", "fla"):
        try:
            t = timed(lambda: step(backend), cfg)
        except (ImportError, ValueError) as err:
            print(f"| {backend} | n/a ({err}) | |")
            continue
        print(f"| {backend} | {t * 1e3:.2f} | {base / t:.2f}x |")


def bench_layers(cfg: Config) -> None:
    sizes = [(2, 9, 2, 4)] if cfg.quick else [(32, 512, 16, 16), (8, 4096, 16, 64)]
    print("\n## Layers: SRWM vs DeltaNet of equal size, forward + backward, bf16 autocast on CUDA\n")
    print("| B | T | H | D | DeltaNet op backend | SRWM tokens/s | DeltaNet tokens/s | SRWM / DeltaNet |")
    print("|---|---|---|---|---|---|---|---|")
    for B, T, H, D in sizes:
        x = torch.randn(B, T, H * D, device=cfg.device)
        layers = {
            name: cls(d_model=H * D, num_heads=H).to(cfg.device) for name, cls in (("srwm", SRWM), ("delta", DeltaNet))
        }
        rates = {}
        for name, layer in layers.items():

            def step():
                with torch.autocast(cfg.device, dtype=torch.bfloat16, enabled=cfg.device == "cuda"):
                    y, _ = layer(x)
                y.float().square().mean().backward()

            rates[name] = B * T / timed(step, cfg)
        probe = torch.empty(
            B, T, H, D, device=cfg.device, dtype=torch.bfloat16 if cfg.device == "cuda" else torch.float32
        )
        call = OpCall.of("delta_rule", "chunk", (probe, probe, probe, probe[..., 0]), key_dim=D, value_dim=D)
        used = resolve_backend(call).backend
        print(
            f"| {B} | {T} | {H} | {D} | {used} | {rates['srwm']:.0f} | {rates['delta']:.0f} | "
            f"{rates['srwm'] / rates['delta']:.2f} |"
        )


def main(cfg: Config | None = None) -> None:
    cfg = cfg or parse()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device; for a smoke run use --device cpu --quick with TRITON_INTERPRET=1")
    name = torch.cuda.get_device_name() if cfg.device == "cuda" else "cpu (Triton interpreter: timings meaningless)"
    peaks = hardware_peaks(cfg)
    print(f"# bench_gpu on {name}; torch {torch.__version__}")
    print(f"peaks: {peaks[0] / 1e12:.1f} TFLOP/s fp32, {peaks[1] / 1e9:.0f} GB/s (device copy)")
    bench_srwm(cfg, peaks)
    bench_delta(cfg)
    bench_layers(cfg)


if __name__ == "__main__":
    main(CONFIG)
