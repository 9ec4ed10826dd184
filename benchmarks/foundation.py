"""Every registered model on ml-100k, leave-last-out by timestamp, full ranking, seen excluded.

The validation item is added to each user's history at test time; models are fitted on the training
part only. Prints JSON and a Markdown table next to the peer numbers measured on the same split.

    python benchmarks/foundation.py [--data-dir ../shared/data] [--models popularity,ease] [--out runs/foundation]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from lmrec.data.loaders import load_dataset
from lmrec.data.split import leave_last_out
from lmrec.evaluation import evaluate
from lmrec.evaluation.report import write_report
from lmrec.experiment import ExperimentConfig
from lmrec.models.registry import available_models, get_model_class

#: peers measured on this exact split (from the Foundation issue)
PEERS = {
    "popularity (correct counts)": (0.0859, 0.0450),
    "RecBole ItemKNN": (0.1145, 0.0629),
    "RecBole EASE": (0.1347, 0.0706),
    "RecBole BPR": (0.1241, 0.0673),
    "implicit ALS (64 f)": (0.1400, 0.0717),
}

DEFAULT_MODELS = "popularity,random,item_knn,user_knn,ease,als,bpr"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--config", default=None, help="TOML whose [[models]] params override the defaults")
    ap.add_argument("--out", default=None, help="write report.md/json/png here")
    args = ap.parse_args()

    params = {}
    if args.config:
        for spec in ExperimentConfig.from_toml(args.config).models:
            params[spec.title] = spec.params
    data = load_dataset("ml-100k", data_dir=args.data_dir)
    split = leave_last_out(data)
    results = []
    names = [n for n in args.models.split(",") if n]
    missing = [n for n in names if n not in available_models()]
    if missing:
        print(f"skipping models not installed: {missing}", file=sys.stderr)
    for name in [n for n in names if n not in missing]:
        model = get_model_class(name)(**params.get(name, {}))
        t0 = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - t0
        res = evaluate(model, split, ks=(10, 20), name=name, fit_seconds=fit_s)
        results.append(res)
        print(
            f"{name}: recall@10={res['recall@10']:.4f} ndcg@10={res['ndcg@10']:.4f} fit={fit_s:.2f}s",
            file=sys.stderr,
        )
    rows = [
        {
            "model": r.model,
            "recall@10": round(r["recall@10"], 4),
            "ndcg@10": round(r["ndcg@10"], 4),
            "recall@20": round(r["recall@20"], 4),
            "ndcg@20": round(r["ndcg@20"], 4),
            "coverage@10": round(r["coverage@10"], 4),
            "fit_seconds": round(r.info["fit_seconds"], 2),
            "eval_seconds": r.info["eval_seconds"],
        }
        for r in results
    ]
    print(
        json.dumps(
            {
                "dataset": "ml-100k",
                "split": split.summary(),
                "results": rows,
                "peers": {k: {"recall@10": v[0], "ndcg@10": v[1]} for k, v in PEERS.items()},
            },
            indent=2,
        )
    )
    print("\n| model | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 | fit s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {r['fit_seconds']:.2f} |"
        )
    for k, (rec, ndcg) in PEERS.items():
        print(f"| peer: {k} | {rec:.4f} | {ndcg:.4f} | | | |")
    if args.out:
        write_report(results, args.out, title="ml-100k leave-last-out: foundation models")


if __name__ == "__main__":
    main()
