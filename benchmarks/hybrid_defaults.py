"""Hybrid (generators + LightGBM ranker) vs EASE on ml-100k leave-last-out.

Settings are chosen on validation only: fit on ``split.train``, evaluate ``phase="valid"``. The
chosen setting is then refitted on ``split.full`` (train + valid) and evaluated once on test.

    python benchmarks/hybrid_defaults.py --phase valid --grid          # the validation sweep
    python benchmarks/hybrid_defaults.py --phase test                  # the defaults, on test

Prints one JSON line per run and a table at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from lmrec.data.loaders import load_dataset
from lmrec.data.split import leave_last_out
from lmrec.evaluation import evaluate
from lmrec.models.registry import create_model


def cheap(n: int) -> list[dict[str, Any]]:
    return [
        {"name": "ease", "n_candidates": n},
        {"name": "item_knn", "n_candidates": n},
        {"name": "popularity", "n_candidates": n},
    ]


def run(name: str, params: dict[str, Any], split: Any, phase: str) -> dict[str, Any]:
    model = create_model(name, **params)
    data = split.train if phase == "valid" else split.full
    t = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - t
    res = evaluate(model, split, ks=(10,), phase=phase, beyond_accuracy=False, auc=False)
    out = {
        "model": name,
        "phase": phase,
        "ndcg@10": round(res["ndcg@10"], 4),
        "recall@10": round(res["recall@10"], 4),
        "fit_s": round(fit_s, 1),
        "params": {k: v for k, v in params.items() if k != "generators"},
    }
    if name == "hybrid":
        out["n_candidates"] = params["generators"][0]["n_candidates"]
        rep = model.fit_report_  # type: ignore[attr-defined]
        out["report"] = {k: v for k, v in rep.items() if k != "feature_gain"}
        out["top_features"] = sorted(rep.get("feature_gain", {}).items(), key=lambda kv: -kv[1])[:8]
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["valid", "test"], default="valid")
    ap.add_argument("--grid", action="store_true", help="sweep ranker settings and candidates")
    ap.add_argument("--groups", default="scores,popularity,text,metadata,history")
    ap.add_argument("--n", type=int, default=50, help="candidates per generator")
    ap.add_argument("--ranker", default="{}", help="RankerConfig overrides as JSON")
    ap.add_argument("--hybrid", default="{}", help="other HybridConfig overrides as JSON")
    ap.add_argument("--cache", default=None, help="embedding cache directory for item texts")
    ap.add_argument("--ablation", action="store_true", help="drop one feature group at a time")
    ap.add_argument("--no-ease", action="store_true")
    args = ap.parse_args()
    split = leave_last_out(load_dataset("ml-100k"))
    rows = []
    if not args.no_ease:
        rows.append(run("ease", {}, split, args.phase))
    groups = tuple(args.groups.split(","))
    base = {
        "feature_groups": groups,
        "text_cache_dir": args.cache,
        "text_device": "cpu",
        **json.loads(args.hybrid),
    }
    ranker = json.loads(args.ranker)
    if args.grid:
        for n, leaves, lr in itertools.product((20, 50, 100), (15, 31), (0.05, 0.1)):
            r = {**ranker, "num_leaves": leaves, "learning_rate": lr}
            rows.append(run("hybrid", {**base, "generators": cheap(n), "ranker": r}, split, args.phase))
    elif args.ablation:
        all_groups = ("scores", "popularity", "text", "metadata", "history")
        for drop in (None, *all_groups):
            g = tuple(x for x in all_groups if x != drop)
            p = {**base, "feature_groups": g, "generators": cheap(args.n), "ranker": ranker}
            rows.append({**run("hybrid", p, split, args.phase), "dropped": drop})
    else:
        rows.append(run("hybrid", {**base, "generators": cheap(args.n), "ranker": ranker}, split, args.phase))
    print()
    print(f"{'model':8} {'phase':6} {'n':>4} {'ndcg@10':>8} {'fit_s':>7}  params")
    for r in rows:
        extra = r.get("dropped") or r["params"].get("ranker", "")
        print(
            f"{r['model']:8} {r['phase']:6} {r.get('n_candidates', ''):>4} {r['ndcg@10']:8.4f} {r['fit_s']:7.1f}  {extra}"
        )


if __name__ == "__main__":
    main()
