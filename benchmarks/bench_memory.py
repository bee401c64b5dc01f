"""Speed of adaptmem.memory, printed as ratio tables.

(a) Exact kNN search, 1,000,000 x 128 keys, 256 queries, k = 32: the torch and FAISS backends
    (identical results, checked) against the GEMM no exact search can avoid, timed in the same
    run: a plain ``q @ keys.T`` (it writes the whole [256, 1M] matrix) and, the tighter bound,
    the same GEMM in the library's key blocks with the key norms added (``||h||^2 - 2 q.h``
    into one reused tile, no [Q, N] matrix).
(a') Approximate indexes (IVF-Flat, IVF-PQ, HNSW) on 1,000,000 clustered keys: build time,
    queries/s, recall@k against exact search of the same keys and queries, bytes per entry
    (the ring buffer every memory keeps + the index) and what that makes at 10^7 entries.
(b) MbPA, batched with torch.func (vmap over queries) vs the per-query loop: B = 256 queries,
    K = 32 neighbours, 5 steps, a 10-class linear head. Target: >= 10x.
(c) MbPA on the language-model configuration of Sprechmann et al. (LSTM 256, vocabulary 10k,
    N = 5000, K = 256, T = 1, alpha = 0.15): tokens/s of the closed-form linear path (with the
    neighbour softmax table, and recomputing it per call) vs the generic torch.func path vs the
    per-query loop. Each timed call adapts one 64-token segment and then writes it to the memory,
    as the LM evaluation does. Target: linear >= 30x the generic path.

    python benchmarks/bench_memory.py --threads 1     # the full tables; a few minutes
    python benchmarks/bench_memory.py --quick         # a smoke test in seconds

Search timings are CPU seconds (``time.process_time``; at one thread that is what an idle core
would take, and it moves far less with the load of a shared machine than wall-clock time, which
is printed too), medians over --repeats interleaved rounds after one warm-up, so a change in
load hits every row alike. Thread counts (torch and FAISS) and the load are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

from adaptmem.utils import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument(
        "--threads",
        type=cli.positive_int,
        nargs="+",
        default=[1, 2],
        help="thread counts to run (torch and FAISS alike)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement (median reported)")
    p.add_argument(
        "--approx-n", type=cli.positive_int, default=1_000_000, help="entries for the approximate indexes (a')"
    )
    p.add_argument("--no-approx", action="store_true", help="skip the approximate indexes (a')")
    p.add_argument(
        "--slow-queries",
        type=cli.positive_int,
        default=16,
        help="(c): queries per timed call of the generic and loop paths (they take ~0.1-1 s each)",
    )
    return cli.parse(p, argv)


if __name__ == "__main__":  # answer --help and bad flags before the heavy imports below
    ARGS = parse_args()

import torch
from torch import nn

from adaptmem.memory import EpisodicMemory, MbPA, faiss_available
from adaptmem.memory.episodic import _BLOCK
from adaptmem.utils import configure_threads, markdown_table


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (CPU s, wall s) of each function over ``repeats`` rounds that run every function once."""
    for fn in fns.values():
        fn()  # warm-up
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    wall: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    return {name: (statistics.median(cpu[name]), statistics.median(wall[name])) for name in fns}


def recall(got: torch.Tensor, want: torch.Tensor) -> float:
    return sum(len(set(a) & set(b)) for a, b in zip(got.tolist(), want.tolist())) / want.numel()


def bench_exact(n: int, dim: int, queries: int, k: int, repeats: int, threads: int) -> list[list[str]]:
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(n, dim, generator=g)
    q = torch.randn(queries, dim, generator=g)
    sqnorms = keys.pow(2).sum(-1)
    tile = torch.empty(queries, _BLOCK)

    def blocked_gemm():
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            torch.addmm(sqnorms[start:stop], q, keys[start:stop].T, alpha=-2.0, out=tile[:, : stop - start])

    fns: dict[str, Callable[[], object]] = {
        f"plain GEMM q @ keys.T ([{queries}, {n:,}] output)": lambda: q @ keys.T,
        f"blocked GEMM + norms ({_BLOCK} keys per block)": blocked_gemm,
    }
    mems = {}
    for backend in ["torch"] + (["faiss"] if faiss_available() else []):
        mems[backend] = EpisodicMemory(dim, n, backend=backend)
        mems[backend].write(keys, torch.arange(n))
        fns[f"EpisodicMemory search, {backend} (exact)"] = lambda m=mems[backend]: m.search(q, k)
    times = interleaved(fns, repeats)
    same = ""
    if "faiss" in mems:
        a, b = mems["torch"].search(q, k), mems["faiss"].search(q, k)
        same = "" if torch.equal(a.slots, b.slots) and torch.equal(a.distances, b.distances) else " MISMATCH"
    plain, blocked = times[list(fns)[0]][0], times[list(fns)[1]][0]
    rows = []
    for name, (cpu, wall) in times.items():
        tag = same if name.startswith("EpisodicMemory") else ""
        rows.append(
            [
                name + tag,
                threads,
                f"{1e3 * cpu:,.0f}",
                f"{1e3 * wall:,.0f}",
                f"{queries / cpu:,.0f}",
                f"{cpu / blocked:.2f}x",
                f"{cpu / plain:.2f}x",
            ]
        )
    return rows


def clustered_keys(n: int, dim: int, queries: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and queries from one mixture of ``n / 1000`` Gaussian clusters (embeddings are
    clustered; i.i.d. Gaussian keys, with no structure, are the worst case of every index)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(max(1, n // 1000), dim, generator=g)
    pick = torch.randint(0, len(centers), (n + queries,), generator=g)
    points = centers[pick] + 0.5 * torch.randn(n + queries, dim, generator=g)
    return points[:n], points[n:]


def approx_configs(n: int, dim: int, quick: bool) -> list[tuple[str, dict, str, list[int]]]:
    """(index, build parameters, name of the search parameter, its values)."""
    nlist = 16 if quick else 1024
    return [
        ("ivf", {"nlist": nlist}, "nprobe", [8, 32]),
        ("ivfpq", {"nlist": nlist, "pq_m": dim // 8, "pq_nbits": 4 if quick else 8, "k_factor": 8}, "nprobe", [8, 32]),
        ("hnsw", {"hnsw_m": 16, "ef_construction": 40}, "ef_search", [64, 128]),
    ]


def bench_approx(n: int, dim: int, queries: int, k: int, repeats: int, threads: int, quick: bool) -> list[list[str]]:
    keys, q = clustered_keys(n, dim, queries)
    exact = EpisodicMemory(dim, n, backend="faiss")
    exact.write(keys, torch.arange(n))
    want = exact.search(q, k).slots
    cpu, _ = interleaved({"exact": lambda: exact.search(q, k)}, repeats)["exact"]
    ring = exact.memory_usage()["ring"] / n
    rows = [
        ["flat (exact)", threads, "-", f"{queries / cpu:,.0f}", "1.000", f"{ring:,.0f} + 0", f"{ring * 1e7 / 1e9:.1f}"]
    ]
    exact = None  # frees the flat index before the next one is built
    for kind, params, knob, settings in approx_configs(n, dim, quick):
        mem = EpisodicMemory(dim, n, index=kind, **params)
        mem.write(keys, torch.arange(n))
        c = time.process_time()
        mem.search(q[:1], k)  # trains and fills the index
        build = time.process_time() - c
        usage = mem.memory_usage()
        per_entry = usage["ring"] / n + usage["index"] / n
        shown = ", ".join(f"{key}={v}" for key, v in params.items())
        if mem._approx is None or mem._approx.index is None:
            shown += "; too few keys to train: searched exactly"
        for value in settings:
            mem.set_search_params(**{knob: value})
            cpu, _ = interleaved({"s": lambda: mem.search(q, k)}, repeats)["s"]
            rows.append(
                [
                    f"{kind} ({shown}, {knob}={value})",
                    threads,
                    f"{build:,.1f}",
                    f"{queries / cpu:,.0f}",
                    f"{recall(mem.search(q, k).slots, want):.3f}",
                    f"{usage['ring'] / n:,.0f} + {usage['index'] / n:,.0f}",
                    f"{per_entry * 1e7 / 1e9:.1f}",
                ]
            )
        mem = None
    return rows


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


def bench_mbpa_lm(
    segment: int, slow_queries: int, k: int, steps: int, dim: int, vocab: int, n: int, repeats: int, threads: int
) -> list[tuple]:
    """Tokens/s of each MbPA path on LM-sized heads; the slow paths are timed on fewer queries."""
    g = torch.Generator().manual_seed(2)
    head = nn.Linear(dim, vocab)
    rows = []
    paths = (
        ("linear, neighbour table cached", dict(mode="linear"), segment),
        ("linear, table recomputed per call", dict(mode="linear", cache_logits=False), segment),
        ("generic torch.func (vmap)", dict(mode="vmap"), slow_queries),
        ("per-query loop", dict(mode="loop"), slow_queries),
    )
    for name, kw, queries in paths:
        mem = EpisodicMemory(dim, n)
        mem.write(torch.randn(n, dim, generator=g), torch.randint(0, vocab, (n,), generator=g))
        mbpa = MbPA(head, mem, k=k, steps=steps, lr=0.15, chunk_size=queries, **kw)
        segments = [
            (torch.randn(queries, dim, generator=g), torch.randint(0, vocab, (queries,), generator=g))
            for _ in range(repeats + 1)
        ]

        pending = iter(segments)

        def one_segment():
            h, y = next(pending)
            mbpa(h)
            mem.write(h, y)  # the next call meets `queries` new entries, as in the LM

        sec = timeit(one_segment, repeats if queries == segment else 1)
        rows.append((name, threads, sec / queries, 1 / (sec / queries)))
    base = rows[2][2]
    return [(name, th, sec, tps, base / sec) for name, th, sec, tps in rows]


def print_speedups(title: str, columns: list[str], rows: list[tuple], what: str, target: float) -> None:
    """A (method, threads, seconds, rate, ratio) table and whether its best ratio meets ``target``."""
    print(f"\n{title}\n")
    print(
        markdown_table(
            ["method", "threads", *columns],
            [[name, th, f"{1e3 * sec:.1f}", f"{rate:,.0f}", f"{ratio:.1f}x"] for name, th, sec, rate, ratio in rows],
        )
    )
    best = max(r[4] for r in rows)
    print(f"\n{what}: best {best:.1f}x (target >= {target:g}x: {'met' if best >= target else 'NOT met'})")


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    if args.quick:
        search = dict(n=4 * _BLOCK + 1000, dim=32, queries=64, k=8)  # still the blocked path
        approx = dict(n=min(args.approx_n, 5_000), dim=32, queries=64, k=8)
        mbpa = dict(batch=32, k=8, steps=2, dim=16, n=1_000)
        lm = dict(segment=16, slow_queries=4, k=16, steps=1, dim=16, vocab=200, n=300)
        args.repeats = 1
    else:
        search = dict(n=1_000_000, dim=128, queries=256, k=32)
        approx = dict(n=args.approx_n, dim=128, queries=256, k=32)
        mbpa = dict(batch=256, k=32, steps=5, dim=128, n=10_000)
        lm = dict(segment=64, slow_queries=args.slow_queries, k=256, steps=1, dim=256, vocab=10_000, n=5_000)
    print(
        f"torch {torch.__version__}, faiss {'yes' if faiss_available() else 'no'}, "
        f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}"
    )
    exact_rows, approx_rows, mbpa_rows, lm_rows = [], [], [], []
    for threads in args.threads:
        configure_threads(threads)  # torch and FAISS's OpenMP agree on one number
        exact_rows += bench_exact(**search, repeats=args.repeats, threads=threads)
        if faiss_available() and not args.no_approx:
            approx_rows += bench_approx(**approx, repeats=args.repeats, threads=threads, quick=args.quick)
        mbpa_rows += bench_mbpa(**mbpa, repeats=args.repeats, threads=threads)
        lm_rows += bench_mbpa_lm(**lm, repeats=args.repeats, threads=threads)
    s, a, m = search, approx, mbpa
    print(
        f"\n(a) kNN search, exact: {s['n']:,} x {s['dim']} keys, {s['queries']:,} queries, k = {s['k']}; "
        f"times are medians of {args.repeats}\n"
    )
    print(
        markdown_table(
            ["method", "threads", "CPU ms", "wall ms", "queries per CPU-s", "x blocked GEMM", "x plain GEMM"],
            exact_rows,
        )
    )
    if approx_rows:
        print(
            f"\n(a') kNN search, approximate: {a['n']:,} x {a['dim']} clustered keys, {a['queries']:,} queries, "
            f"k = {a['k']}; recall@{a['k']} against exact search of the same keys and queries\n"
        )
        print(
            markdown_table(
                [
                    "index",
                    "threads",
                    "build CPU s",
                    "queries per CPU-s",
                    f"recall@{a['k']}",
                    "bytes per entry (ring + index)",
                    "GB at 10^7 entries",
                ],
                approx_rows,
            )
        )
    print_speedups(
        f"(b) MbPA: B = {m['batch']}, K = {m['k']}, steps = {m['steps']}, Linear({m['dim']}, 10) head, "
        f"memory {m['n']:,}",
        ["time (ms)", "queries/s", "speed-up vs first row"],
        mbpa_rows,
        "MbPA batched vs loop",
        10,
    )
    c = lm
    print_speedups(
        f"(c) MbPA, LM configuration: Linear({c['dim']}, {c['vocab']:,}) head, N = {c['n']:,}, "
        f"K = {c['k']}, T = {c['steps']}, alpha = 0.15; {c['segment']}-token segments (generic and loop: "
        f"{c['slow_queries']} queries per call)",
        ["ms / token", "tokens/s", "speed-up vs generic"],
        lm_rows,
        "MbPA linear vs generic",
        30,
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(ARGS)
