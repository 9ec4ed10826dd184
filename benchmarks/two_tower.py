"""Benchmark the contrastive two-tower model: accuracy, cold items, training time.

Protocol (the same as every lmrec benchmark): leave-last-out per user, full ranking over the whole
catalogue, training items excluded, the validation item added to the history at test time
(``evaluate(model, split, ks=(10,), phase="test")``). The model early-stops on the split's validation
interactions (``fit(split.train, valid=split.valid)``); it never sees test interactions, and the
tags/reviews written in held-out interactions are dropped from the item profiles
(:func:`lmrec.text.profiles.drop_heldout_text`).

Cold items: ``cold_item`` split (10% of the items lose every interaction; their interactions are the
test set), the text-fused model against the same model with ``fusion="id_only"``.

Run::

    python benchmarks/two_tower.py                       # ml-100k + ml-latest-small + cold items
    python benchmarks/two_tower.py --datasets ml-100k --threads 2 --out runs/two_tower

Prints JSON, then a Markdown table; with ``--out`` also writes ``two_tower.json``/``.md`` and a PNG of the
per-epoch validation NDCG@10. Timings are wall clock on whatever machine runs it (shared machines are
noisy); the JSON records the thread count and accelerator.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, cold_item, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.models.registry import get_model_class
from lmrec.models.two_tower import TwoTower
from lmrec.text.cache import default_cache_dir
from lmrec.text.profiles import drop_heldout_text


def _metrics(res: Any) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in res.metrics.items() if k in ("ndcg@10", "recall@10")}


def _fit_eval(model: TwoTower, split: Any, valid: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    model.fit(split.train, valid=split.valid if valid else None)
    fit_s = time.perf_counter() - t0
    res = evaluate(model, split, ks=(10,), phase="test")
    rep = model.report_
    assert rep is not None
    out: dict[str, Any] = {
        "test": _metrics(res),
        "fit_seconds": round(fit_s, 1),
        "text_encode_seconds": round(getattr(model, "text_seconds_", 0.0), 1),
        "epochs": rep.n_epochs,
        "best_epoch": rep.best_epoch,
        "best_val_ndcg@10": None if rep.best_metric is None else round(rep.best_metric, 4),
        "mean_epoch_seconds": round(rep.mean_epoch_seconds, 2),
        "val_curve": [None if e.val_metric is None else round(e.val_metric, 4) for e in rep.epochs],
        "accelerator": rep.accelerator,
        "precision": rep.precision,
    }
    if "cold_items" in res.segments:
        out["cold_items_segment"] = {
            k: round(float(v), 4)
            for k, v in res.segments["cold_items"].items()
            if k in ("ndcg@10", "recall@10")
        }
    return out


def _leak_free(split: Split) -> Split:
    """Drop tags/reviews written in held-out interactions from the item profiles' source tables."""
    return replace(split, train=drop_heldout_text(split.train, [split.valid, split.test]))


def _baselines(split: Any) -> dict[str, dict[str, float]]:
    out = {}
    for name, params in (("popularity", {}), ("als", {})):
        try:
            model = get_model_class(name)(**params)
        except Exception as exc:  # a model another part of lmrec has not shipped yet
            print(f"skipping baseline {name}: {exc}", file=sys.stderr)
            continue
        model.fit(split.train)
        out[name] = _metrics(evaluate(model, split, ks=(10,), phase="test"))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    common: dict[str, Any] = {"cache_dir": args.cache_dir}
    train: dict[str, Any] = {"progress_bar": not args.quiet, "seed": args.seed}
    if args.epochs:
        train["max_epochs"] = args.epochs
    results: dict[str, Any] = {
        "protocol": "leave_last_out (1 test + 1 valid per user), full ranking, seen excluded, "
        "valid item added to history at test time; early stopping on split.valid",
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "note": "shared machine: timings are noisy",
        },
        "datasets": {},
    }
    for name in args.datasets:
        data: Dataset = load_dataset(name, data_dir=args.data_dir)
        split = _leak_free(leave_last_out(data))
        entry: dict[str, Any] = {
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_interactions": data.n_interactions,
        }
        entry["baselines"] = _baselines(split) if not args.no_baselines else {}
        entry["two_tower"] = _fit_eval(TwoTower(**common, train=train), split)
        if args.id_only:
            entry["two_tower_id_only"] = _fit_eval(TwoTower(**common, fusion="id_only", train=train), split)
        results["datasets"][name] = entry
        print(json.dumps({name: entry}), file=sys.stderr)
    if args.cold:
        data = load_dataset(args.cold, data_dir=args.data_dir)
        split = _leak_free(cold_item(data, item_fraction=0.1, seed=args.seed))
        cold: dict[str, Any] = {
            "dataset": args.cold,
            "protocol": split.protocol,
            "note": "test = every interaction of 10% of the items, unseen in training; "
            "early stopping on an internal hold-out (val_fraction=0.1)",
        }
        for label, fusion in (("text_fused", "sum"), ("id_only", "id_only")):
            cold[label] = _fit_eval(TwoTower(**common, fusion=fusion, train=train), split, valid=False)
        results["cold_item"] = cold
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | model | NDCG@10 | Recall@10 | epochs (best) | s/epoch | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["datasets"].items():
        for b, m in entry["baselines"].items():
            lines.append(
                f"| {name} | {b} | {m.get('ndcg@10', float('nan')):.4f} | {m.get('recall@10', float('nan')):.4f} | | | |"
            )
        for key in ("two_tower", "two_tower_id_only"):
            if key in entry:
                r = entry[key]
                lines.append(
                    f"| {name} | {key} | {r['test']['ndcg@10']:.4f} | {r['test']['recall@10']:.4f} | "
                    f"{r['epochs']} ({r['best_epoch']}) | {r['mean_epoch_seconds']:.1f} | {r['fit_seconds']:.0f} |"
                )
    if "cold_item" in results:
        c = results["cold_item"]
        for label in ("text_fused", "id_only"):
            r = c[label]
            lines.append(
                f"| {c['dataset']} cold items | two_tower {label} | {r['test']['ndcg@10']:.4f} | "
                f"{r['test']['recall@10']:.4f} | {r['epochs']} ({r['best_epoch']}) | {r['mean_epoch_seconds']:.1f} | "
                f"{r['fit_seconds']:.0f} |"
            )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, entry in results["datasets"].items():
        for key in ("two_tower", "two_tower_id_only"):
            if key in entry:
                curve = entry[key]["val_curve"]
                ax.plot(range(1, len(curve) + 1), curve, marker=".", label=f"{name} {key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title("two_tower: validation NDCG@10 per epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    p.add_argument(
        "--data-dir",
        default=os.environ.get("LMREC_DATA_HOME"),
        help="folder holding <dataset>/ copies (default: $LMREC_DATA_HOME, then the loaders' cache)",
    )
    p.add_argument("--cold", default="ml-100k", help="dataset for the cold-item comparison ('' to skip)")
    p.add_argument(
        "--id-only",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit the ID-only variant on each dataset",
    )
    p.add_argument("--no-baselines", action="store_true")
    # one thread: on a shared 2-core machine a second OpenMP thread spin-waits on a busy core
    # (measured 2.8 s/epoch with 1 thread vs 22.7 s with 2 on ml-100k while other jobs ran)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=0, help="max epochs (0: the model default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--cache-dir",
        default=str(default_cache_dir()),
        help="text embedding cache (item texts are encoded once); default: lmrec's cache dir",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args()
    results = run(args)
    print(json.dumps(results, indent=2))
    table = markdown(results)
    print()
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "two_tower.json").write_text(json.dumps(results, indent=2))
        (args.out / "two_tower.md").write_text(table + "\n")
        plot(results, args.out / "two_tower_val_ndcg.png")


if __name__ == "__main__":
    main()
