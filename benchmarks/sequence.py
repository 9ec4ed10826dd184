"""Benchmark the transformer sequence recommenders (SASRec, BERT4Rec) and their variants.

Protocol (the same as every lmrec benchmark): leave-last-out per user by timestamp, full ranking over
the whole catalogue, items in the query's history excluded, the validation item appended to the
history at test time: ``evaluate(model, split, ks=(10,), phase="test")`` with the model fitted on
``split.train``. Models early-stop on the split's validation interactions
(``fit(split.train, valid=split.valid)``, validation NDCG@10); they never see test interactions.

Time to target: with ``--trace`` (on by default for the first variant), each validation round also
evaluates the *test* NDCG@10 of the model as it is at that moment, through the public
``evaluate``. That trace is for the time-to-quality measurement only (model selection uses the
validation set). "Time to NDCG@10 >= target" is wall time from calling ``fit`` (text encoding, data
preparation and Lightning start-up included) to the end of the first epoch whose test NDCG@10
reaches ``--target`` (default .0717, the best peer on this split: implicit ALS), with the time spent
inside the trace evaluations subtracted. Epochs/s counts training passes only; "incl. val" adds
the validation rounds.

Click head: SASRec with ``click_head=True``; :func:`lmrec.nn.click.evaluate_click` scores each test
user's held-out next item against 4 sampled unseen items (positive rate 0.2) and reports AUC,
log-loss, precision and recall at p >= 0.5.

Run::

    python benchmarks/sequence.py                                   # ml-100k, all variants
    python benchmarks/sequence.py --datasets ml-100k ml-latest-small --variants sasrec bert4rec
    python benchmarks/sequence.py --threads 2 --out runs/sequence   # + JSON/Markdown/PNG files

Timings are wall clock on whatever machine runs it; a machine shared with other jobs is noisy, so
the JSON records threads, accelerator and precision. On a CUDA machine the models train on the GPU
with bf16/fp16 mixed precision (``train.accelerator="auto"``, ``train.precision="auto"``).
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

import torch

from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.models.registry import create_model
from lmrec.nn.click import evaluate_click
from lmrec.text.cache import default_cache_dir
from lmrec.text.profiles import drop_heldout_text

#: name -> (registry model, parameters). Text variants read the item profile (title, genres, tags)
#: through the bundled offline all-MiniLM-L6-v2 (384-d), cached on disk after the first encoding.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sasrec": ("sasrec", {}),
    "sasrec+cl4srec": ("sasrec", {"contrastive": True, "cl_weight": 0.1}),
    "sasrec+text(sum)": ("sasrec", {"fusion": "sum", "id_dropout": 0.1}),
    "sasrec+text(gate)": ("sasrec", {"fusion": "gate", "id_dropout": 0.1}),
    "sasrec text_only": ("sasrec", {"fusion": "text_only", "text_hidden": 256}),
    "sasrec sampled(256)": ("sasrec", {"loss": "sampled_softmax", "n_negatives": 256}),
    "sasrec+click": ("sasrec", {"click_head": True, "click_negatives": 4}),
    "bert4rec": ("bert4rec", {}),
    "bert4rec+text(sum)": ("bert4rec", {"fusion": "sum", "id_dropout": 0.1}),
    "bert4rec+cl4srec": ("bert4rec", {"contrastive": True, "cl_weight": 0.1}),
}
DEFAULT_VARIANTS = list(VARIANTS)
#: peers on ml-100k under this protocol (measured by the lmrec CF benchmark and RecBole on one CPU)
PEERS = {"ml-100k": {"implicit ALS (best peer)": 0.0717, "RecBole SASRec, 4 epochs / 878 s": 0.0408}}
RECBOLE_SASREC_SECONDS = 878.0


def _metrics(res: Any) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in res.metrics.items() if k in ("ndcg@10", "recall@10")}


def _load(name: str, data_dir: str | None) -> tuple[Any, Split]:
    data = load_dataset(name, data_dir=data_dir, download=False)
    split = leave_last_out(data)
    # tags written in held-out interactions must not leak into item profiles (ml-latest-small)
    train = drop_heldout_text(split.train, [split.valid, split.test])
    split = Split(train=train, test=split.test, valid=split.valid, protocol=split.protocol)
    return data, split


def run_variant(
    label: str, split: Split, *, trace: bool, target: float, overrides: dict[str, Any], cache_dir: str
) -> dict[str, Any]:
    model_name, params = VARIANTS[label]
    params = {**params, **overrides}
    if params.get("fusion", "id_only") != "id_only":
        params.setdefault("cache_dir", cache_dir)
    model = create_model(model_name, **params)
    timeline: list[dict[str, float]] = []
    trace_seconds = 0.0
    t_start = 0.0

    def hook(m: Any, metrics: dict[str, float]) -> None:
        nonlocal trace_seconds
        now = time.perf_counter()
        point = {"wall_s": now - t_start - trace_seconds, "val_ndcg@10": metrics["ndcg@10"]}
        if trace:
            t0 = time.perf_counter()
            res = evaluate(m, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
            point["test_ndcg@10"] = float(res.metrics["ndcg@10"])
            trace_seconds += time.perf_counter() - t0
        timeline.append(point)

    t_start = time.perf_counter()
    model.fit(split.train, valid=split.valid, on_validation=hook)
    fit_s = time.perf_counter() - t_start - trace_seconds
    res = evaluate(model, split, ks=(10,), phase="test")
    rep = model.report_
    assert rep is not None
    train_s = sum(e.seconds for e in rep.epochs)
    val_s = sum(e.val_seconds or 0.0 for e in rep.epochs) - trace_seconds
    out: dict[str, Any] = {
        "model": model_name,
        "params": {k: v for k, v in params.items() if k != "cache_dir"},
        "test": _metrics(res),
        "fit_seconds": round(fit_s, 1),
        "text_encode_seconds": round(model.text_seconds_, 1),
        "epochs": rep.n_epochs,
        "best_epoch": rep.best_epoch,
        "best_val_ndcg@10": None if rep.best_metric is None else round(rep.best_metric, 4),
        "epochs_per_s": round(rep.n_epochs / train_s, 3) if train_s else None,
        "epochs_per_s_incl_val": round(rep.n_epochs / (train_s + val_s), 3) if train_s + val_s else None,
        "mean_epoch_seconds": round(rep.mean_epoch_seconds, 2),
        "timeline": [{k: round(v, 4 if "ndcg" in k else 1) for k, v in p.items()} for p in timeline],
        "accelerator": rep.accelerator,
        "precision": rep.precision,
    }
    if trace:
        hit = next((p for p in timeline if p.get("test_ndcg@10", 0.0) >= target), None)
        out["time_to_target_s"] = None if hit is None else round(hit["wall_s"], 1)
        out["epochs_to_target"] = None if hit is None else timeline.index(hit) + 1
    if params.get("click_head"):
        out["click"] = {
            k: round(v, 4) for k, v in evaluate_click(model, split, n_negatives=4, seed=0).items()
        }
    return out


def _markdown(results: dict[str, Any], target: float) -> str:
    lines = [
        f"| dataset | variant | NDCG@10 | Recall@10 | epochs (best) | epochs/s | fit s | time to NDCG@10 {target} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds, block in results["datasets"].items():
        for label, r in block["variants"].items():
            ttt = r.get("time_to_target_s")
            ttt_s = (
                "—"
                if "time_to_target_s" not in r
                else ("not reached" if ttt is None else f"{ttt} s (epoch {r['epochs_to_target']})")
            )
            lines.append(
                f"| {ds} | {label} | {r['test']['ndcg@10']:.4f} | {r['test']['recall@10']:.4f} | "
                f"{r['epochs']} ({r['best_epoch']}) | {r['epochs_per_s']} | {r['fit_seconds']} | {ttt_s} |"
            )
        for peer, value in PEERS.get(ds, {}).items():
            lines.append(f"| {ds} | {peer} | {value:.4f} | | | | | |")
    clicks = [
        (ds, label, r["click"])
        for ds, b in results["datasets"].items()
        for label, r in b["variants"].items()
        if "click" in r
    ]
    if clicks:
        lines += [
            "",
            "| dataset | variant | click AUC | log-loss | precision@0.5 | recall@0.5 | users |",
            "|---|---|---|---|---|---|---|",
        ]
        for ds, label, c in clicks:
            lines.append(
                f"| {ds} | {label} | {c['auc']:.4f} | {c['log_loss']:.4f} | {c['precision']:.4f} | {c['recall']:.4f} | {int(c['n_users'])} |"
            )
    return "\n".join(lines)


def _plot(results: dict[str, Any], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(results["datasets"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for label, r in results["datasets"][ds]["variants"].items():
            tl = r["timeline"]
            if not tl:
                continue
            line = ax.plot(
                [p["wall_s"] for p in tl], [p["val_ndcg@10"] for p in tl], marker=".", label=f"{label} (val)"
            )
            if "test_ndcg@10" in tl[0]:
                ax.plot(
                    [p["wall_s"] for p in tl],
                    [p["test_ndcg@10"] for p in tl],
                    ls="--",
                    color=line[0].get_color(),
                    label=f"{label} (test trace)",
                )
        if ds == "ml-100k":
            ax.axhline(target, color="grey", ls=":", label=f"target {target} (implicit ALS)")
        ax.set_title(f"{ds}: NDCG@10 vs wall time ({results['threads']} CPU threads)")
        ax.set_xlabel("wall time since fit() (s)")
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument(
        "--trace",
        nargs="*",
        default=None,
        help="variants whose test NDCG is traced per epoch (default: the first)",
    )
    parser.add_argument("--target", type=float, default=0.0717)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    parser.add_argument("--data-dir", default=os.environ.get("LMREC_DATA_HOME"))
    parser.add_argument("--cache-dir", default=str(default_cache_dir()))
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=JSON",
        help="override a model parameter for every variant",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    traced = set(args.variants[:1] if args.trace is None else args.trace)
    results: dict[str, Any] = {
        "protocol": "leave_last_out by timestamp, full ranking, seen excluded, validation item appended at test",
        "threads": args.threads,
        "cuda": torch.cuda.is_available(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "torch": torch.__version__,
        "target": args.target,
        "datasets": {},
    }
    for ds in args.datasets:
        data, split = _load(ds, args.data_dir)
        block: dict[str, Any] = {"summary": split.summary(), "n_items": data.n_items, "variants": {}}
        results["datasets"][ds] = block
        for label in args.variants:
            print(f"[{ds}] {label} ...", file=sys.stderr, flush=True)
            r = run_variant(
                label,
                split,
                trace=label in traced and ds == "ml-100k",
                target=args.target,
                overrides=overrides,
                cache_dir=args.cache_dir,
            )
            block["variants"][label] = r
            print(
                f"[{ds}] {label}: {r['test']} in {r['fit_seconds']} s, {r['epochs']} epochs",
                file=sys.stderr,
                flush=True,
            )
    ml = results["datasets"].get("ml-100k", {}).get("variants", {})
    if ml:
        best_label = max(ml, key=lambda k: ml[k]["test"]["ndcg@10"])
        ttts = {k: v["time_to_target_s"] for k, v in ml.items() if v.get("time_to_target_s") is not None}
        results["ml-100k_summary"] = {
            "best_variant": best_label,
            "best_ndcg@10": ml[best_label]["test"]["ndcg@10"],
            "time_to_target_s": ttts,
            "fraction_of_recbole_878s": {k: round(v / RECBOLE_SASREC_SECONDS, 3) for k, v in ttts.items()},
        }
    print(json.dumps(results, indent=2))
    table = _markdown(results, args.target)
    print()
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sequence.json").write_text(json.dumps(results, indent=2))
        (args.out / "sequence.md").write_text(table + "\n")
        _plot(results, args.out / "sequence.png", args.target)
        print(f"\nwrote {args.out}/sequence.json, sequence.md, sequence.png", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
