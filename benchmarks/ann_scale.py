"""Retrieval at scale: a faiss IVF-PQ index over 1M and 10M items, with recall@10 and latency.

For each ``--sizes`` catalogue (default 1M and 10M items of ``--dim`` 64) this builds the server's
:class:`~lmrec.ranking.index.VectorIndex` with ``kind="ivfpq"`` (its defaults: ``nlist`` the power
of two at or below 4·√n, 16 one-byte sub-quantizers for 64 dims, k-means on a sample of 64 points a
list, vectors added in chunks of 1M with progress), and at ``--compare-at`` (1M) also HNSW and
IVF-flat for comparison. It reports, per index:

* build seconds (training + adding; ``--threads`` OpenMP threads), and memory: the bytes of the
  searched structure (``memory_bytes()["search"]``: HNSW's float copy + graph, IVF's lists, IVF-PQ's
  codes + ids + centroids), of the float vectors every kind keeps once (exact re-ranking, recall
  check), and the process RSS growth while building;
* per search setting (``nprobe`` × ``refine`` for IVF-PQ, ``efSearch`` for HNSW, ``nprobe`` for IVF):
  recall@10 against an exact scan on ``--queries`` (1000) held-out queries, and single-query latency
  p50/p99 with one faiss thread, one query at a time, as the server searches;
* what :meth:`VectorIndex.tune` (the server's start-up step) settles on for recall ≥ ``--target``,
  tuned on 200 *other* queries and then measured on the 1000.

Data (:func:`~lmrec.ranking.synthetic.clustered_vectors`, seeded): a latent-factor mixture, 2000
clusters in a ``--intrinsic-dim`` (32) latent space mapped linearly into 64 dimensions plus a little
full-rank noise, L2-normalised; queries are fresh points from the same clusters. That is a harder
setting for PQ than ``benchmarks/ann_recall.py``'s 16 latent dimensions.

    python benchmarks/ann_scale.py --out runs/ann_scale                 # 1M and 10M (~1 h on 2 cores)
    python benchmarks/ann_scale.py --sizes 1000000 --out runs/ann_1m    # 1M only, with HNSW and IVF

Peak memory at 10M × 64: the generated vectors (2.4 GiB) + the index's float copy (2.4 GiB) + codes
(~0.25 GiB) + the training sample; about 6 GiB. Prints JSON and a Markdown table; writes both to
``--out``. Timings are as measured on a possibly shared machine (load average recorded).
"""

from __future__ import annotations

import argparse
import gc
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
sys.path.insert(0, str(REPO / "benchmarks"))

from ann_recall import single_query_latency  # noqa: E402

from lmrec.ranking.index import VectorIndex  # noqa: E402
from lmrec.ranking.synthetic import clustered_vectors  # noqa: E402

GRIDS: dict[str, list[tuple[int, int]]] = {
    # (search param, refine)
    "ivfpq": [(p, r) for p in (16, 32, 64, 128, 256) for r in (1, 4, 8, 16)],
    "hnsw": [(p, 1) for p in (16, 32, 64, 128, 256)],
    "ivf": [(p, 1) for p in (4, 8, 16, 32, 64, 128)],
}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(a[a >= 0], e[e >= 0])) for a, e in zip(approx, exact, strict=True))
    return hits / max(1, int((exact >= 0).sum()))


def _set(index: VectorIndex, param: int, refine: int) -> None:
    if index.kind == "hnsw":
        index.ef_search = param
    else:
        index.nprobe = min(param, index.nlist)
    if index.kind == "ivfpq":
        index.refine = refine


def measure(
    kind: str,
    items: np.ndarray,
    queries: np.ndarray,
    tune_queries: np.ndarray,
    truth: np.ndarray | None,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], np.ndarray]:
    """Build ``kind`` over ``items``, sweep its grid and tune; returns the row and the ground truth."""
    from tqdm import tqdm

    faiss.omp_set_num_threads(args.threads)
    gc.collect()
    rss0 = rss_bytes()
    bar = tqdm(total=len(items), desc=f"{kind} {len(items):,}: add", unit="vec", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    t0 = time.perf_counter()
    index = VectorIndex(
        items,
        kind=kind,
        hnsw_m=32,
        ef_construction=80,
        seed=args.seed,
        progress=progress,  # type: ignore[arg-type]
    )
    wall = time.perf_counter() - t0
    bar.close()
    rss1 = rss_bytes()
    mem = index.memory_bytes()
    print(f"[scale] {index!r} built in {index.build_seconds:.1f}s; {mem}", file=sys.stderr)
    if truth is None:
        t0 = time.perf_counter()
        truth, _ = index.exact_search(queries, args.k)  # the index's own flat copy: no second one
        print(
            f"[scale] exact top-{args.k} of {len(queries)} in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
    _, exact_ms = single_query_latency_exact(index, queries[:100], args.k)
    rows = []
    for param, refine in GRIDS[kind]:
        if kind != "hnsw" and param > index.nlist:
            continue
        _set(index, param, refine)
        ids, ms = single_query_latency(index, queries, args.k)
        rows.append(
            {
                "param": param,
                "refine": refine if kind == "ivfpq" else None,
                "recall@10": round(recall_at_k(ids, truth), 4),
                "latency_ms_p50": round(float(np.percentile(ms, 50)), 3),
                "latency_ms_p99": round(float(np.percentile(ms, 99)), 3),
            }
        )
        print(f"[scale] {kind} {len(items):,} {rows[-1]}", file=sys.stderr)
    # the server's start-up step: from its configured defaults, tune on 200 other queries
    _set(index, 64 if kind == "hnsw" else 16, 8)
    faiss.omp_set_num_threads(1)
    tuned = index.tune(tune_queries, k=args.k, target=args.target)
    ids, ms = single_query_latency(index, queries, args.k)
    out = {
        "kind": kind,
        "n_items": len(items),
        "nlist": index.nlist or None,
        "pq_m": getattr(index, "pq_m", None),
        "build_s": round(index.build_seconds, 1),
        "build_wall_s_incl_flat_copy": round(wall, 1),
        "memory_bytes": mem,
        "bytes_per_item_search": round(mem["search"] / len(items), 1),
        "rss_growth_bytes": rss1 - rss0,
        "exact_scan_ms_p50": round(float(np.percentile(exact_ms, 50)), 2),
        "sweep": rows,
        "tuned": {
            "param": tuned.search_param,
            "refine": index.refine if kind == "ivfpq" else None,
            "recall@10_tuning_queries": round(tuned.recall, 4),
            "recall@10": round(recall_at_k(ids, truth), 4),
            "latency_ms_p50": round(float(np.percentile(ms, 50)), 3),
            "latency_ms_p99": round(float(np.percentile(ms, 99)), 3),
        },
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    del index
    gc.collect()
    return out, truth


def single_query_latency_exact(
    index: VectorIndex, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    faiss.omp_set_num_threads(1)
    ms = np.empty(len(queries))
    ids = np.empty((len(queries), k), np.int64)
    for i in range(len(queries)):
        t0 = time.perf_counter()
        ids[i] = index.search(queries[i : i + 1], k, exact=True)[0][0]
        ms[i] = 1000 * (time.perf_counter() - t0)
    return ids, ms


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Retrieval at scale (dim {result['dim']}, recall@{result['k']} vs exact on "
        f"{result['n_queries']} queries, single-query latency on 1 faiss thread; host {result['host']})",
        "",
        "| items | index | build (s) | search structure (B/item) | + float vectors (GiB) | tuned setting "
        "| recall@10 | p50 (ms) | p99 (ms) | exact scan p50 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        t = r["tuned"]
        setting = f"efSearch={t['param']}" if r["kind"] == "hnsw" else f"nprobe={t['param']}/{r['nlist']}"
        if r["kind"] == "ivfpq":
            setting += f", refine={t['refine']}"
        lines.append(
            f"| {r['n_items']:,} | {r['kind']} | {r['build_s']} | {r['bytes_per_item_search']} "
            f"| {r['memory_bytes']['vectors'] / 2**30:.2f} | {setting} | {t['recall@10']} "
            f"| {t['latency_ms_p50']} | {t['latency_ms_p99']} | {r['exact_scan_ms_p50']} |"
        )
    lines += ["", "Sweeps (recall@10 / p50 ms / p99 ms):", ""]
    for r in result["runs"]:
        name = "efSearch" if r["kind"] == "hnsw" else "nprobe"
        lines.append(
            f"- {r['n_items']:,} {r['kind']}: "
            + "; ".join(
                f"{name}={s['param']}"
                + (f" refine={s['refine']}" if s["refine"] else "")
                + f": {s['recall@10']} / {s['latency_ms_p50']} / {s['latency_ms_p99']}"
                for s in r["sweep"]
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--compare-at", type=int, default=1_000_000, help="size also built as HNSW and IVF")
    ap.add_argument("--compare-kinds", default="hnsw,ivf")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--intrinsic-dim", type=int, default=32)
    ap.add_argument("--spread", type=float, default=1.0)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for building")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "ann_scale")
    ap.add_argument("--nprobes", default="16,32,64,128,256", help="IVF-PQ nprobe grid")
    ap.add_argument("--refines", default="1,4,8,16", help="IVF-PQ refine grid")
    args = ap.parse_args(argv)
    GRIDS["ivfpq"] = [(int(p), int(r)) for p in args.nprobes.split(",") for r in args.refines.split(",")]

    gen = {
        "n_clusters": args.clusters,
        "intrinsic_dim": args.intrinsic_dim or None,
        "spread": args.spread,
        "seed": args.seed,
    }
    # held-out queries from the same clusters (same seed: same centres); 200 more for tuning
    all_q = clustered_vectors(args.queries + 200, args.dim, **gen)
    queries, tune_q = all_q[: args.queries], all_q[args.queries :]
    result: dict[str, Any] = {
        "dim": args.dim,
        "generator": gen,
        "n_queries": args.queries,
        "k": args.k,
        "target": args.target,
        "host": f"{platform.node()} ({os.cpu_count()} cpus)",
        "faiss": faiss.__version__,
        "build_threads": args.threads,
        "runs": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        t0 = time.perf_counter()
        items = clustered_vectors(n, args.dim, **gen)
        print(f"[scale] generated {n:,} x {args.dim} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        row, truth = measure("ivfpq", items, queries, tune_q, None, args)
        result["runs"].append(row)
        (args.out / "ann_scale.json").write_text(json.dumps(result, indent=2))  # partial results survive
        if n == args.compare_at:
            for kind in [k.strip() for k in args.compare_kinds.split(",") if k.strip()]:
                row, _ = measure(kind, items, queries, tune_q, truth, args)
                result["runs"].append(row)
                (args.out / "ann_scale.json").write_text(json.dumps(result, indent=2))
        del items
        gc.collect()
    text = json.dumps(result, indent=2)
    print(text)
    print()
    md = markdown(result)
    print(md)
    (args.out / "ann_scale.json").write_text(text)
    (args.out / "ann_scale.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
