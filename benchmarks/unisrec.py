"""UniSRec on a text-rich Amazon catalogue: cold items (inductive) and leave-last-out (transductive).

* ``cold``: :func:`lmrec.data.split.cold_item` with a disjoint cold *validation* item set; inductive
  UniSRec (early-stopped on the cold validation items' NDCG@10) vs the content model
  (``create_model("content")``), both with the same MiniLM item vectors. Full-catalogue ranking
  (``evaluate``), overall and the ``cold_items`` segment.
* ``lastout``: leave-last-out; transductive UniSRec vs SASRec (ID only), both early-stopped on the
  validation (second-to-last) item.

Every setting is chosen on validation; test numbers are printed once per configuration given.

    python benchmarks/unisrec.py --protocol cold [--dataset amazon-2014-office] [--seed 42]
        [--set dim=64 --set n_experts=8 ...] [--models unisrec,content] [--cache-dir /tmp/lmrec-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch

from lmrec.data.dataset import Dataset
from lmrec.data.split import cold_item, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.models.registry import create_model


def load(name: str) -> Dataset:
    """The registered dataset, or the converted TSVs read directly (quoting off: titles hold ``"``)."""
    from lmrec.data.loaders import load_dataset

    try:
        return load_dataset(name, download=False)
    except Exception as exc:  # not registered (yet) under this name
        print(f"load_dataset({name!r}) failed ({exc}); reading the TSVs directly")
    root = Path(os.environ.get("LMREC_DATA_HOME", "data")) / name
    inter = pl.read_csv(root / "interactions.tsv", separator="\t", quote_char=None)
    items = pl.read_csv(root / "items.tsv", separator="\t", quote_char=None, infer_schema_length=0)
    items = items.with_columns(pl.col(c).fill_null("") for c in items.columns if c != "item_id")
    inter = inter.with_columns(pl.col("item_id").cast(pl.Utf8))
    return Dataset.from_frames(inter, items=items, name=name)


def epoch_printer() -> Any:
    """A Lightning callback printing each validation round's NDCG@10 (runs after early stopping)."""
    from lightning.pytorch.callbacks import Callback

    class _Print(Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            metric = trainer.callback_metrics.get("val_ndcg@10")
            if metric is not None:
                print(f"  epoch {trainer.current_epoch + 1}: val ndcg@10 {float(metric):.4f}", flush=True)

    return _Print()


def adaptor_freezer() -> Any:
    """A Lightning callback keeping the item adaptor at its (PCA-whitening) initialisation (ablation)."""
    from lightning.pytorch.callbacks import Callback

    class _Freeze(Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            for p in pl_module.items.text_proj.parameters():
                p.requires_grad_(False)

    return _Freeze()


def parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-2014-office")
    ap.add_argument("--protocol", choices=["cold", "lastout"], default="cold")
    ap.add_argument("--models", default=None, help="comma list (default: unisrec,content / unisrec,sasrec)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--item-fraction", type=float, default=0.1)
    ap.add_argument("--cache-dir", default="/tmp/lmrec-cache")
    ap.add_argument("--set", action="append", default=[], help="unisrec config key=value (JSON value)")
    ap.add_argument("--train", action="append", default=[], help="train key=value for neural models")
    ap.add_argument("--pretrain-on", default=None, help="comma list of other datasets to pre-train on")
    ap.add_argument("--freeze-adaptor", action="store_true", help="ablation: keep the adaptor at its init")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load(args.dataset)
    if args.protocol == "cold":
        split = cold_item(
            data, item_fraction=args.item_fraction, valid_fraction=args.item_fraction, seed=args.seed
        )
        models = (args.models or "unisrec,content").split(",")
    else:
        split = leave_last_out(data)
        models = (args.models or "unisrec,sasrec").split(",")
    print(json.dumps(split.summary()))

    train_over = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.train)}
    train = {"progress_bar": False, "accelerator": "cpu", "seed": args.seed, **train_over}
    uni = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    uni.setdefault("mode", "inductive" if args.protocol == "cold" else "transductive")
    results = []
    for name in models:
        t0 = time.perf_counter()
        if name == "content":
            model = create_model("content", cache_dir=args.cache_dir)
            model.fit(split.train)
        elif name == "unisrec":
            model = create_model("unisrec", cache_dir=args.cache_dir, train=train, **uni)
            if args.pretrain_on:
                model.pretrain([load(n) for n in args.pretrain_on.split(",")])  # type: ignore[attr-defined]
            cbs = [epoch_printer(), *([adaptor_freezer()] if args.freeze_adaptor else [])]
            model.fit(split.train, valid=split.valid, callbacks=cbs)  # type: ignore[call-arg]
        else:
            model = create_model(name, train=train)
            model.fit(split.train, valid=split.valid, callbacks=[epoch_printer()])  # type: ignore[call-arg]
        fit_s = time.perf_counter() - t0
        rep = getattr(model, "report_", None)
        val = evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
        res = evaluate(model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
        row = {
            "model": name,
            "config": {k: v for k, v in model.config.model_dump().items() if k not in ("profile",)},
            "fit_seconds": round(fit_s, 1),
            "best_epoch": None if rep is None else rep.best_epoch,
            "valid_ndcg@10": val.metrics["ndcg@10"],
            "test_ndcg@10": res.metrics["ndcg@10"],
            "test_cold_items_ndcg@10": res.segments.get("cold_items", {}).get("ndcg@10"),
            "test_warm_items_ndcg@10": res.segments.get("warm_items", {}).get("ndcg@10"),
        }
        results.append(row)
        print(
            f"{name:10s} valid ndcg@10 {row['valid_ndcg@10']:.4f}  test ndcg@10 {row['test_ndcg@10']:.4f}  "
            f"cold_items {row['test_cold_items_ndcg@10']}  fit {fit_s:.0f}s  best_epoch {row['best_epoch']}",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
