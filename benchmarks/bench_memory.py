"""Speed of adaptmem.memory, printed as ratio tables.

(a) kNN search, FAISS vs the torch backend (exact; identical results), plus the approximate IVF
    backend with its recall: 100k x 128 keys, 1k queries, k = 32.
(b) MbPA, batched with torch.func (vmap over queries) vs the per-query loop: B = 256 queries,
    K = 32 neighbours, 5 steps, a 10-class linear head. Target: >= 10x.

    python benchmarks/bench_memory.py                 # threads 1 and 2
    python benchmarks/bench_memory.py --quick         # a smoke test in seconds

Timings are medians over --repeats runs after one warm-up. The machine load is printed: on a
shared machine the absolute numbers move with it, the ratios much less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--threads", type=cli.positive_int, nargs="+", default=[1, 2],
                   help="thread counts to run (torch and FAISS alike)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    return cli.parse(p, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from adaptmem.memory import EpisodicMemory, MbPA, faiss_available  # noqa: E402
from adaptmem.utils import configure_threads, markdown_table  # noqa: E402


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_search(n: int, dim: int, queries: int, k: int, repeats: int, threads: int) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(n, dim, generator=g)
    q = torch.randn(queries, dim, generator=g)
    rows, results = [], {}
    backends = ["torch"] + (["faiss"] if faiss_available() else [])
    for backend in backends:
        mem = EpisodicMemory(dim, n, backend=backend)
        mem.write(keys, torch.arange(n))
        sec = timeit(lambda: mem.search(q, k), repeats)
        results[backend] = mem.search(q, k)
        rows.append((f"{backend} (exact)", threads, sec, queries / sec, 1.0))
    if "faiss" in results:
        same = torch.equal(results["faiss"].slots, results["torch"].slots)
        rows = [(name + ("" if same else " MISMATCH"), *rest) for name, *rest in rows]
        exact = results["torch"].slots
        for nprobe in (4, 16):
            mem = EpisodicMemory(dim, n, backend="ivf", nprobe=nprobe)
            mem.write(keys, torch.arange(n))
            t = time.perf_counter()
            mem.search(q[:1], k)  # trains the quantizer and fills the index
            build = time.perf_counter() - t
            sec = timeit(lambda: mem.search(q, k), repeats)
            got = mem.search(q, k).slots
            recall = sum(len(set(a) & set(b)) for a, b in zip(got.tolist(), exact.tolist())) / exact.numel()
            nlist = mem._ivf.nlist if mem._ivf is not None else "- (too few keys: exact)"
            rows.append((f"ivf nlist={nlist} nprobe={nprobe} (recall@{k} {recall:.3f}, build {build:.1f} s)",
                         threads, sec, queries / sec, 1.0))
    base = rows[0][2]
    return [(name, th, sec, qps, base / sec) for name, th, sec, qps, _ in rows]


def bench_mbpa(batch: int, k: int, steps: int, dim: int, n: int, repeats: int, threads: int) -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    mem = EpisodicMemory(dim, n)
    mem.write(torch.randn(n, dim, generator=g), torch.randint(0, 10, (n,), generator=g))
    head = nn.Linear(dim, 10)
    h = torch.randn(batch, dim, generator=g)
    rows = []
    for mode, chunk in (("loop", batch), ("vmap", batch), ("vmap", 64)):
        mbpa = MbPA(head, mem, k=k, steps=steps, lr=0.1, mode=mode, chunk_size=chunk)
        sec = timeit(lambda: mbpa(h), repeats)
        rows.append((f"{mode} (chunk {chunk})" if mode == "vmap" else "per-query loop", threads, sec, batch / sec))
    base = rows[0][2]
    return [(name, th, sec, qps, base / sec) for name, th, sec, qps in rows]


def print_table(title: str, rows: list[tuple], unit: str) -> None:
    print(f"\n{title}\n")
    print(markdown_table(["method", "threads", "time (ms)", f"{unit}/s", "speed-up vs first row"],
                         [[name, th, f"{1e3 * sec:.1f}", f"{rate:,.0f}", f"{ratio:.1f}x"]
                          for name, th, sec, rate, ratio in rows]))


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    if args.quick:
        search = dict(n=5_000, dim=32, queries=100, k=8)
        mbpa = dict(batch=32, k=8, steps=2, dim=16, n=1_000)
        args.repeats = 1
    else:
        search = dict(n=100_000, dim=128, queries=1_000, k=32)
        mbpa = dict(batch=256, k=32, steps=5, dim=128, n=10_000)
    print(f"torch {torch.__version__}, faiss {'yes' if faiss_available() else 'no'}, "
          f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}")
    search_rows, mbpa_rows = [], []
    for threads in args.threads:
        configure_threads(threads)  # torch and FAISS's OpenMP agree on one number
        search_rows += bench_search(**search, repeats=args.repeats, threads=threads)
        mbpa_rows += bench_mbpa(**mbpa, repeats=args.repeats, threads=threads)
    s, m = search, mbpa
    print_table(f"(a) kNN search: {s['n']:,} x {s['dim']} keys, {s['queries']:,} queries, k = {s['k']}",
                search_rows, "queries")
    print_table(f"(b) MbPA: B = {m['batch']}, K = {m['k']}, steps = {m['steps']}, Linear({m['dim']}, 10) head, "
                f"memory {m['n']:,}", mbpa_rows, "queries")
    best = max(r[4] for r in mbpa_rows)
    print(f"\nMbPA batched vs loop: best {best:.1f}x (target >= 10x: {'met' if best >= 10 else 'NOT met'})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(ARGS)
