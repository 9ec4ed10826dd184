"""ANN recall@10 vs exact search, and query latency, on a synthetic 1M-item catalogue.

Builds the server's :class:`~lmrec.ranking.index.VectorIndex` (faiss HNSW and IVF) over ``--n``
clustered, L2-normalised ``--dim``-d vectors, takes exact top-10 from a brute-force scan as ground
truth, then sweeps the search parameter (HNSW ``efSearch``, IVF ``nprobe``) and reports for each
setting: recall@10 against exact, single-query latency (one thread, one query at a time, as the
server runs it: p50/p99) and batch throughput. It also runs :meth:`VectorIndex.tune` (what the
server does at start-up) and reports the parameter it settles on for recall ≥ 0.95.

The data (:func:`~lmrec.ranking.synthetic.clustered_vectors`): by default 2,000 overlapping clusters in
a 16-dimensional latent space mapped into 64 dimensions (cluster noise as large as the spread of
the centres), a stand-in for real item embeddings, which are clustered and of low intrinsic
dimension. ``--intrinsic-dim 0`` gives the hard case (isotropic noise in all 64 dimensions, larger
than the cluster structure), where every index needs far more search effort for the same recall.

    python benchmarks/ann_recall.py                      # 1M x 64, HNSW + IVF (~15 min on 2 busy cores)
    python benchmarks/ann_recall.py --n 100000           # quick
    python benchmarks/ann_recall.py --intrinsic-dim 0    # the hard case

Prints JSON and a Markdown table, writes ``--out`` (JSON) and a recall/latency PNG beside it.
Timings are as measured on a machine that may be shared: re-run to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lmrec.ranking.index import VectorIndex  # noqa: E402
from lmrec.ranking.synthetic import clustered_vectors  # noqa: E402


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(a[a >= 0], e)) for a, e in zip(approx, exact, strict=True))
    return hits / exact.size


def single_query_latency(index: VectorIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search one query at a time on one thread; returns ids and per-query milliseconds."""
    faiss.omp_set_num_threads(1)
    ids = np.empty((len(queries), k), np.int64)
    ms = np.empty(len(queries))
    for i in range(len(queries)):
        t0 = time.perf_counter()
        ids[i] = index.search(queries[i : i + 1], k)[0][0]
        ms[i] = 1000 * (time.perf_counter() - t0)
    return ids, ms


def batch_qps(index: VectorIndex, queries: np.ndarray, k: int, threads: int) -> float:
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    index.search(queries, k)
    return len(queries) / (time.perf_counter() - t0)


def sweep(
    index: VectorIndex, queries: np.ndarray, truth: np.ndarray, k: int, params: list[int], threads: int
) -> list[dict[str, Any]]:
    rows = []
    for p in params:
        if index.kind == "hnsw":
            index.ef_search = p
        else:
            index.nprobe = p
        ids, ms = single_query_latency(index, queries, k)
        rows.append(
            {
                "param": p,
                "recall@10": round(recall_at_k(ids, truth), 4),
                "latency_ms_p50": round(float(np.percentile(ms, 50)), 3),
                "latency_ms_p99": round(float(np.percentile(ms, 99)), 3),
                "batch_qps": round(batch_qps(index, queries, k, threads), 1),
            }
        )
        print(f"[ann] {index.kind} {p}: {rows[-1]}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument(
        "--intrinsic-dim",
        type=int,
        default=16,
        help="latent dimension of the clusters (0: isotropic noise in all dims, the hard case)",
    )
    ap.add_argument(
        "--spread",
        type=float,
        default=None,
        help="cluster noise (default 1.0 in the latent space, 0.35 without one)",
    )
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kinds", default="hnsw,ivf")
    ap.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="threads for building and batch search"
    )
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "ann_recall.json")
    args = ap.parse_args(argv)

    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    gen = {
        "n_clusters": args.clusters,
        "intrinsic_dim": args.intrinsic_dim or None,
        "spread": args.spread if args.spread is not None else (1.0 if args.intrinsic_dim else 0.35),
        "seed": args.seed,
    }
    items = clustered_vectors(args.n, args.dim, **gen)
    # queries: fresh points around the same cluster centres (same seed => same centres)
    queries = clustered_vectors(args.queries, args.dim, **gen)
    print(f"[ann] generated {args.n} x {args.dim} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    t0 = time.perf_counter()
    exact = VectorIndex(items, kind="exact")
    truth, _ = exact.search(queries, args.k)
    exact_build = time.perf_counter() - t0
    _, exact_ms = single_query_latency(exact, queries[:200], args.k)
    result: dict[str, Any] = {
        "n_items": args.n,
        "dim": args.dim,
        "generator": gen,
        "n_queries": args.queries,
        "k": args.k,
        "host": f"{platform.node()} ({os.cpu_count()} cpus)",
        "faiss": faiss.__version__,
        "exact": {
            "build_s": round(exact_build, 2),
            "latency_ms_p50": round(float(np.percentile(exact_ms, 50)), 3),
            "latency_ms_p99": round(float(np.percentile(exact_ms, 99)), 3),
        },
        "indexes": {},
    }
    del exact
    grids = {"hnsw": [16, 32, 64, 128, 256, 512], "ivf": [1, 2, 4, 8, 16, 32, 64, 128, 256]}
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        faiss.omp_set_num_threads(args.threads)
        t0 = time.perf_counter()
        index = VectorIndex(
            items, kind=kind, hnsw_m=32, ef_construction=64, ef_search=16, nprobe=1, seed=args.seed
        )
        build = time.perf_counter() - t0
        print(f"[ann] built {kind} in {build:.1f}s", file=sys.stderr)
        rows = sweep(index, queries, truth, args.k, grids[kind], args.threads)
        # what the server does at start-up: tune on a sample until recall >= target
        if kind == "hnsw":
            index.ef_search = 16
        else:
            index.nprobe = 1
        faiss.omp_set_num_threads(1)
        tuned = index.tune(queries[:200], k=args.k, target=args.target)
        ids, ms = single_query_latency(index, queries, args.k)
        at_target = next((r for r in rows if r["recall@10"] >= args.target), None)
        result["indexes"][kind] = {
            "build_s": round(build, 1),
            "sweep": rows,
            "smallest_param_reaching_target": at_target,
            "tuned": {
                "param": tuned.search_param,
                "recall@10_on_tuning_sample": round(tuned.recall, 4),
                "recall@10_all_queries": round(recall_at_k(ids, truth), 4),
                "latency_ms_p50": round(float(np.percentile(ms, 50)), 3),
                "latency_ms_p99": round(float(np.percentile(ms, 99)), 3),
            },
        }
        del index
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)

    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(markdown(result, args.target))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    plot(result, args.out.with_suffix(".png"))
    return 0


def markdown(result: dict[str, Any], target: float) -> str:
    lines = [
        f"ANN on {result['n_items']:,} x {result['dim']} (recall@{result['k']} vs exact, single-query latency on 1 thread)",
        "",
        "| index | build (s) | setting | recall@10 | p50 (ms) | p99 (ms) | batch QPS |",
        "|---|---|---|---|---|---|---|",
        f"| exact (flat) | {result['exact']['build_s']} | - | 1.0 | {result['exact']['latency_ms_p50']} | "
        f"{result['exact']['latency_ms_p99']} | - |",
    ]
    for kind, info in result["indexes"].items():
        name = "efSearch" if kind == "hnsw" else "nprobe"
        for r in info["sweep"]:
            mark = " **" if info["smallest_param_reaching_target"] is r else ""
            lines.append(
                f"| {kind} | {info['build_s']} | {name}={r['param']}{mark} | {r['recall@10']} | "
                f"{r['latency_ms_p50']} | {r['latency_ms_p99']} | {r['batch_qps']} |"
            )
        t = info["tuned"]
        lines.append(
            f"| {kind} (auto-tuned to ≥ {target}) | | {name}={t['param']} | {t['recall@10_all_queries']} | "
            f"{t['latency_ms_p50']} | {t['latency_ms_p99']} | |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, info in result["indexes"].items():
        xs = [r["latency_ms_p50"] for r in info["sweep"]]
        ys = [r["recall@10"] for r in info["sweep"]]
        ax.plot(xs, ys, marker="o", label=kind)
    ax.axhline(0.95, color="grey", ls="--", lw=1)
    ax.axvline(result["exact"]["latency_ms_p50"], color="black", ls=":", lw=1, label="exact scan p50")
    ax.set_xscale("log")
    ax.set_xlabel("single-query latency p50 (ms, 1 thread)")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title(f"{result['n_items']:,} x {result['dim']} clustered vectors")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
