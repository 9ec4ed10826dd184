"""Full vs sampled softmax: what the sampled loss gives up in validation quality, per catalogue.

With ``benchmarks/softmax_cost.py`` (what each loss costs per step as the catalogue grows) this is
the evidence behind ``lmrec.nn.losses.FULL_SOFTMAX_MAX_ITEMS``. For each dataset, model and seed,
the model is fitted twice on the training part of a leave-last-out split, once per loss, with early
stopping on the validation part; reported are the best **validation** NDCG@10 (full ranking), the
epoch it came from and the seconds per epoch. No test data is read. two_tower runs with
``fusion="id_only"`` so that only the objective differs (and no language model is needed).

Run::

    python benchmarks/softmax_quality.py --datasets ml-latest-small --seeds 0 1 --out runs/softmax_quality
    python benchmarks/softmax_quality.py --datasets synth:5M --max-epochs 10   # a synthetic catalogue

Prints JSON, then a Markdown table; ``--out`` also writes ``softmax_quality.json``/``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import ensure_data, parse_size

LOSSES = {"two_tower": ("full_softmax", "sampled_softmax"), "sasrec": ("full_ce", "sampled_softmax")}


def load(name: str, work: Path) -> Any:
    from lmrec.data import load_dataset
    from lmrec.data.synthetic import load_synthetic

    if name.startswith("synth:"):
        label, n, items = parse_size(name.removeprefix("synth:"))
        return load_synthetic(ensure_data(work, label, n, items, seed=0)["folder"])
    return load_dataset(name)


def fit_one(
    split: Any, model: str, loss: str, seed: int, args: argparse.Namespace, in_batch: int | None = None
) -> dict[str, Any]:
    from lmrec.models.registry import create_model

    train = {
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "seed": seed,
        "progress_bar": False,
    }
    params: dict[str, Any] = {"loss": loss, "train": train}
    if in_batch is not None:
        params["in_batch_negatives"] = in_batch
    if model == "two_tower":
        params["fusion"] = "id_only"
    m = create_model(model, **params)
    t0 = time.perf_counter()
    m.fit(split.train, valid=split.valid)
    report = m.report_
    assert report is not None
    return {
        "model": model,
        "loss": loss if in_batch is None else f"{loss}/{in_batch}",
        "seed": seed,
        "valid_ndcg@10": round(float(report.best_metric or float("nan")), 4),
        "best_epoch": report.best_epoch,
        "epochs": report.n_epochs,
        "s_per_epoch": round(report.mean_epoch_seconds, 2),
        "fit_s": round(time.perf_counter() - t0, 1),
        "accelerator": report.accelerator,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["ml-latest-small"])
    p.add_argument("--models", nargs="+", default=list(LOSSES), choices=list(LOSSES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--losses", nargs="+", choices=["full", "sampled"], default=["full", "sampled"])
    p.add_argument(
        "--in-batch", nargs="+", type=int, default=[None], help="in_batch_negatives values (sampled)"
    )
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lmrec-scale")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    from lmrec.data.split import leave_last_out

    rows: list[dict[str, Any]] = []
    for ds in args.datasets:
        data = load(ds, args.work)
        split = leave_last_out(data)
        n_items = int(split.train.interactions["item_idx"].n_unique())
        for model in args.models:
            for loss in LOSSES[model]:
                if ("sampled" if loss == "sampled_softmax" else "full") not in args.losses:
                    continue
                for in_batch in args.in_batch if loss == "sampled_softmax" else [None]:
                    for seed in args.seeds:
                        fit = fit_one(split, model, loss, seed, args, in_batch)
                        row = {"dataset": ds, "train_items": n_items, **fit}
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
    summary = []
    for key in dict.fromkeys((r["dataset"], r["model"], r["loss"]) for r in rows):
        sel = [r for r in rows if (r["dataset"], r["model"], r["loss"]) == key]
        nd = np.array([r["valid_ndcg@10"] for r in sel])
        summary.append({
            "dataset": key[0], "model": key[1], "loss": key[2], "train_items": sel[0]["train_items"],
            "seeds": len(sel), "valid_ndcg@10_mean": round(float(nd.mean()), 4),
            "valid_ndcg@10_sd": round(float(nd.std(ddof=1)), 4) if len(nd) > 1 else None,
            "s_per_epoch": round(float(np.mean([r["s_per_epoch"] for r in sel])), 2),
            "best_epoch_mean": round(float(np.mean([r["best_epoch"] or 0 for r in sel])), 1),
            "accelerator": sel[0]["accelerator"],
        })  # fmt: skip
    doc = {"benchmark": "softmax_quality", "settings": vars(args) | {"work": str(args.work), "out": str(args.out)},
           "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
           "rows": rows, "summary": summary}  # fmt: skip
    lines = [
        "| dataset | train items | model | loss | seeds | valid NDCG@10 (sd) | best epoch | s/epoch | device |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for s in summary:
        sd = f" ({s['valid_ndcg@10_sd']})" if s["valid_ndcg@10_sd"] is not None else ""
        lines.append(f"| {s['dataset']} | {s['train_items']:,} | {s['model']} | {s['loss']} | {s['seeds']} | "
                     f"{s['valid_ndcg@10_mean']}{sd} | {s['best_epoch_mean']} | {s['s_per_epoch']} | "
                     f"{s['accelerator']} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(json.dumps(doc, indent=2, default=str))
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "softmax_quality.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (args.out / "softmax_quality.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
