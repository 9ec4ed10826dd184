"""Validation-only studies of the hybrid (issue #10): how many ranker targets, which feature groups.

The generators take the configurations that ``benchmarks/hybrid.py`` tuned on validation (read from
its ``hybrid.json``); each hybrid setting is fitted on ``split.train`` and scored on the validation
phase. Nothing here reads the test phase. Generator fits that settings share (the refit on train;
the inner fit when two settings hold out the same rows) are made once
(:meth:`lmrec.models.hybrid.Hybrid.share_fits`), so an ablation costs one hybrid fit plus a ranker
per setting.

    python benchmarks/hybrid_valid.py --tuned runs/hybrid_office/hybrid.json --targets 1 2 3
    python benchmarks/hybrid_valid.py --tuned runs/hybrid_office/hybrid.json --ablation

Prints one JSON line per setting, then a table; ``--out`` also writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from lmrec.data.loaders import load_dataset
from lmrec.data.split import leave_last_out
from lmrec.evaluation import evaluate
from lmrec.models.hybrid import DEFAULT_FEATURE_GROUPS as FEATURE_GROUPS
from lmrec.models.hybrid import auto_targets
from lmrec.models.registry import create_model
from lmrec.text.profiles import drop_heldout_text
from lmrec.tuning import refit_params

GENERATORS = ("ease", "item_knn", "sasrec", "two_tower", "content")


def dataset_runs(path: Path) -> list[dict[str, Any]]:
    """The per-dataset results of a ``benchmarks/hybrid.py`` output (final or partial)."""
    doc = json.loads(path.read_text())
    return doc["datasets"] if isinstance(doc, dict) else doc


def tuned_specs(
    path: Path, dataset: str | None, generators: Sequence[str] | None, n: int
) -> tuple[str, list[dict[str, Any]]]:
    """The dataset (default: the first in ``path``) and its generator specs from a
    ``benchmarks/hybrid.py`` result: tuned params and best epoch count, refitted as
    :func:`lmrec.tuning.refit_params` does; ``generators`` default to the hybrid row's."""
    for ds in dataset_runs(path):
        if dataset is None or ds["dataset"] == dataset:
            rows = ds["models"]
            names = generators if generators is not None else rows["hybrid"]["generators"]
            specs = [
                {
                    "name": g,
                    "params": refit_params(g, rows[g]["params"], rows[g].get("best_epoch")),
                    "n_candidates": n,
                }
                for g in names
                if g in rows
            ]
            return ds["dataset"], specs
    raise SystemExit(f"{path}: no results for dataset {dataset!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tuned", type=Path, required=True, help="hybrid.json from benchmarks/hybrid.py")
    p.add_argument("--dataset", default=None, help="default: the first dataset in --tuned")
    p.add_argument("--targets", nargs="+", default=["auto"], help="n_targets settings (ints or auto)")
    p.add_argument("--ablation", action="store_true", help="also drop one feature group at a time")
    p.add_argument("--generators", nargs="+", default=list(GENERATORS))
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=os.environ.get("LMREC_CACHE_DIR", "runs/cache/embeddings"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    name, specs = tuned_specs(args.tuned, args.dataset, args.generators, args.candidates)
    data = load_dataset(name, data_dir=args.data_dir) if args.data_dir else load_dataset(name)
    split = leave_last_out(data)
    train = drop_heldout_text(split.train, [split.valid, split.test])
    auto = auto_targets(train, 0.1)
    cache: dict[str, Any] = {}
    rows = []
    settings: list[tuple[Any, str | None]] = [(n if n == "auto" else int(n), None) for n in args.targets]
    if args.ablation:
        settings += [(settings[0][0], g) for g in FEATURE_GROUPS]
    for n, dropped in settings:
        t = time.perf_counter()
        hybrid = create_model(
            "hybrid",
            generators=specs,
            n_targets=n,
            feature_groups=[g for g in FEATURE_GROUPS if g != dropped],
            seed=args.seed,
            text_cache_dir=args.cache_dir,
        )
        hybrid.share_fits(cache).fit(train)
        fit_s = time.perf_counter() - t
        res = evaluate(hybrid, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
        rep = hybrid.fit_report_  # type: ignore[attr-defined]
        row = {
            "dataset": name,
            "n_targets": rep.get("n_targets"),
            "setting": n,
            "dropped_group": dropped,
            "valid_ndcg@10": round(float(res["ndcg@10"]), 4),
            "valid_recall@10": round(float(res["recall@10"]), 4),
            "fit_s": round(fit_s, 1),
            "holdout_rows": rep.get("holdout_rows"),
            "holdout_share": round(rep.get("holdout_rows", 0) / max(train.n_interactions, 1), 4),
            "candidate_recall": rep.get("candidate_recall"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{name}: auto picks n_targets={auto}\n")
    print(
        "| n_targets | dropped group | held-out share | valid NDCG@10 | valid Recall@10 | candidate recall | fit s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} ({r['n_targets']}) | {r['dropped_group'] or '–'} | {r['holdout_share']:.3f} "
            f"| {r['valid_ndcg@10']:.4f} | {r['valid_recall@10']:.4f} | {r['candidate_recall']} | {r['fit_s']} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"dataset": name, "auto": auto, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
