"""Benchmark the transformer sequence recommenders (SASRec, BERT4Rec) and their variants.

Protocol (the same as every lmrec benchmark): leave-last-out per user by timestamp, full ranking over
the whole catalogue, items in the query's history excluded. Every choice is made on the
**validation** phase, never on test:

* each variant fits on ``split.train`` and early-stops on the split's validation interactions
  (``fit(split.train, valid=split.valid)``, validation NDCG@10), which picks its epoch count;
* the best variant is the one with the best validation NDCG@10 (``evaluate(..., phase="valid")``);
* "time to target" is read off the **validation** curve (see below);
* test is evaluated once per variant, after those choices. ``--protocol refit`` (default, the
  headline) refits on train + valid for the chosen number of epochs with no validation data and
  tests with train + valid history (:func:`lmrec.tuning.refit`, :func:`lmrec.tuning.evaluate_refit`);
  ``--protocol train-only`` tests the model fitted on train (history at test time: train + valid).

Time to target: wall time from calling ``fit`` (text encoding, data preparation and Lightning
start-up included) to the end of the first validation round whose **validation** NDCG@10 reaches
``--target``. The default target is the validation NDCG@10 of implicit ALS (lmrec's ``als`` with
its defaults, the best CF peer on this split), measured on the same split in the same run, so the
curve and the target are on the same phase. Epochs/s counts training passes only; "incl. val"
adds the validation rounds.

Hyperparameters: the SASRec defaults (width 128, dropout 0.4) are re-derivable on validation with
``--tune sasrec --tune-trials 20`` (Optuna TPE over :mod:`lmrec.tuning.spaces`; ``--set`` values
are held fixed), or from the CLI: ``lmrec tune --model sasrec --trials 20 --out configs/tuned.toml``.

Click head: SASRec with ``click_head=True``; :func:`lmrec.nn.click.evaluate_click` scores each test
user's held-out next item against 4 sampled unseen items (positive rate 0.2) and reports AUC,
log-loss, precision and recall at p >= 0.5 (a report on the chosen model, not a selection).

Run::

    python benchmarks/sequence.py                                   # ml-100k, all variants
    python benchmarks/sequence.py --datasets ml-100k ml-latest-small --variants sasrec bert4rec
    python benchmarks/sequence.py --threads 2 --out runs/sequence   # + JSON/Markdown/PNG files
    python benchmarks/sequence.py --variants sasrec --tune sasrec --tune-trials 20

Timings are wall clock on whatever machine runs it; a machine shared with other jobs is noisy, so
the JSON records threads, accelerator and precision. On a CUDA machine the models train on the GPU
with bf16/fp16 mixed precision (``train.accelerator="auto"``, ``train.precision="auto"``).
"""

from __future__ import annotations

import argparse
import inspect
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
from lmrec.models.registry import create_model, get_model_class
from lmrec.nn.click import evaluate_click
from lmrec.text.cache import default_cache_dir
from lmrec.text.profiles import drop_heldout_text
from lmrec.tuning import evaluate_refit, refit, tune

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
#: test NDCG@10 of peers on ml-100k under this protocol (lmrec CF benchmark, RecBole on one CPU)
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


def valid_target(split: Split) -> float:
    """Validation NDCG@10 of implicit ALS (lmrec defaults): the time-to-target bar, on validation."""
    als = create_model("als").fit(split.train)
    return float(evaluate(als, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)["ndcg@10"])


def _fit_traced(model: Any, split: Split) -> tuple[list[dict[str, float]], float]:
    """Fit on train with early stopping on validation; (validation curve vs wall time, fit seconds).

    The curve has one point per validation round: wall seconds since ``fit`` was called (at the
    end of that round) and the round's validation NDCG@10. Uses ``fit(..., callbacks=)`` where the
    model takes Lightning callbacks (``on_validation=`` on older models).
    """
    params = inspect.signature(model.fit).parameters
    stamps: dict[int, float] = {}
    kwargs: dict[str, Any] = {"valid": split.valid}
    t_start = time.perf_counter()
    if "callbacks" in params:
        from lightning.pytorch.callbacks import Callback

        class _Clock(Callback):  # runs after the early-stopping callback's validation round
            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                stamps[int(trainer.current_epoch)] = time.perf_counter() - t_start

        kwargs["callbacks"] = [_Clock()]
    elif "on_validation" in params:
        rounds: list[float] = []
        kwargs["on_validation"] = lambda m, metrics: rounds.append(time.perf_counter() - t_start)
    model.fit(split.train, **kwargs)
    fit_s = time.perf_counter() - t_start
    rep = model.report_
    validated = [e for e in rep.epochs if e.val_metric is not None]
    if "on_validation" in kwargs:
        stamps = {e.epoch: w for e, w in zip(validated, rounds, strict=False)}
    timeline = []
    for e in validated:
        wall = stamps.get(e.epoch)
        if wall is None:  # no clock: text encoding + the epochs so far (Lightning start-up missed)
            wall = model.text_seconds_ + sum(
                r.seconds + (r.val_seconds or 0.0) for r in rep.epochs if r.epoch <= e.epoch
            )
        timeline.append({"epoch": e.epoch + 1, "wall_s": wall, "val_ndcg@10": float(e.val_metric)})
    return timeline, fit_s


def run_variant(
    label: str,
    split: Split,
    *,
    target: float,
    overrides: dict[str, Any],
    cache_dir: str,
    protocol: str = "refit",
) -> dict[str, Any]:
    model_name, params = VARIANTS[label]
    params = {**params, **overrides}
    if params.get("fusion", "id_only") != "id_only":
        params.setdefault("cache_dir", cache_dir)
    model = create_model(model_name, **params)
    timeline, fit_s = _fit_traced(model, split)
    rep = model.report_
    assert rep is not None
    valid = evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
    refit_s = None
    if protocol == "refit":
        t0 = time.perf_counter()
        final = refit(model_name, params, split, best_epoch=rep.best_epoch)
        refit_s = time.perf_counter() - t0
        test = evaluate_refit(final, split, ks=(10,))
    else:
        final = model
        test = evaluate(model, split, ks=(10,), phase="test")
        test.info["protocol"] = "train-only"
    train_s = sum(e.seconds for e in rep.epochs)
    val_s = sum(e.val_seconds or 0.0 for e in rep.epochs)
    out: dict[str, Any] = {
        "model": model_name,
        "params": {k: v for k, v in params.items() if k != "cache_dir"},
        "protocol": test.info["protocol"],
        "valid": _metrics(valid),
        "test": _metrics(test),
        "fit_seconds": round(fit_s, 1),
        "refit_seconds": None if refit_s is None else round(refit_s, 1),
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
    hit = next((p for p in timeline if p["val_ndcg@10"] >= target), None)
    out["time_to_target_s"] = None if hit is None else round(hit["wall_s"], 1)
    out["epochs_to_target"] = None if hit is None else int(hit["epoch"])
    if params.get("click_head"):
        out["click"] = {
            k: round(v, 4) for k, v in evaluate_click(final, split, n_negatives=4, seed=0).items()
        }
    return out


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | variant | valid NDCG@10 | test NDCG@10 | test Recall@10 | protocol | epochs (best) "
        "| epochs/s | fit s | time to valid NDCG@10 >= target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, block in results["datasets"].items():
        target = block["target_valid_ndcg@10"]
        for label, r in block["variants"].items():
            ttt = r.get("time_to_target_s")
            ttt_s = "not reached" if ttt is None else f"{ttt} s (epoch {r['epochs_to_target']})"
            lines.append(
                f"| {ds} | {label} | {r['valid']['ndcg@10']:.4f} | {r['test']['ndcg@10']:.4f} | "
                f"{r['test']['recall@10']:.4f} | {r['protocol']} | {r['epochs']} ({r['best_epoch']}) | "
                f"{r['epochs_per_s']} | {r['fit_seconds']} | {ttt_s} (target {target:.4f}) |"
            )
        for peer, value in PEERS.get(ds, {}).items():
            lines.append(f"| {ds} | {peer} (test) | | {value:.4f} | | | | | | |")
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


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(results["datasets"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        block = results["datasets"][ds]
        for label, r in block["variants"].items():
            tl = r["timeline"]
            if tl:
                ax.plot([p["wall_s"] for p in tl], [p["val_ndcg@10"] for p in tl], marker=".", label=label)
        target = block["target_valid_ndcg@10"]
        ax.axhline(target, color="grey", ls=":", label=f"target {target:.4f} ({block['target_source']})")
        ax.set_title(f"{ds}: validation NDCG@10 vs wall time ({results['threads']} CPU threads)")
        ax.set_xlabel("wall time since fit() (s)")
        ax.set_ylabel("validation NDCG@10")
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
        "--target",
        type=float,
        default=None,
        help="validation NDCG@10 to reach (default: implicit ALS's validation NDCG@10 on the split)",
    )
    parser.add_argument("--protocol", choices=["refit", "train-only"], default="refit")
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
        help="override a model parameter for every variant (and hold it fixed when tuning)",
    )
    parser.add_argument(
        "--tune",
        nargs="*",
        default=[],
        choices=["sasrec", "bert4rec"],
        help="search these models' hyperparameters on validation first (lmrec.tuning.tune) and report "
        "what validation picks",
    )
    parser.add_argument("--tune-trials", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    results: dict[str, Any] = {
        "protocol": "leave_last_out by timestamp, full ranking, seen excluded, validation item in the "
        f"test history; choices on validation only; test protocol: {args.protocol}",
        "threads": args.threads,
        "cuda": torch.cuda.is_available(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "torch": torch.__version__,
        "datasets": {},
    }
    for ds in args.datasets:
        data, split = _load(ds, args.data_dir)
        if args.target is None:
            target, source = valid_target(split), "implicit ALS, validation"
        else:
            target, source = args.target, "--target"
        block: dict[str, Any] = {
            "summary": split.summary(),
            "n_items": data.n_items,
            "target_valid_ndcg@10": round(target, 4),
            "target_source": source,
            "variants": {},
        }
        results["datasets"][ds] = block
        for name in args.tune:
            print(f"[{ds}] tuning {name} on validation ({args.tune_trials} trials) ...", file=sys.stderr)
            fixed = {k: v for k, v in overrides.items() if k in get_model_class(name).Config.model_fields}
            tr = tune(name, split, n_trials=args.tune_trials, fixed_params=fixed)
            block.setdefault("tuning", {})[name] = {
                **tr.summary(),
                "trials": tr.trials.to_dicts(),
            }
            print(f"[{ds}] {name}: validation picks {tr.params} ({tr.best_value:.4f})", file=sys.stderr)
        for label in args.variants:
            print(f"[{ds}] {label} ...", file=sys.stderr, flush=True)
            r = run_variant(
                label,
                split,
                target=target,
                overrides=overrides,
                cache_dir=args.cache_dir,
                protocol=args.protocol,
            )
            block["variants"][label] = r
            print(
                f"[{ds}] {label}: valid {r['valid']} test {r['test']} in {r['fit_seconds']} s, "
                f"{r['epochs']} epochs",
                file=sys.stderr,
                flush=True,
            )
    ml = results["datasets"].get("ml-100k", {}).get("variants", {})
    if ml:
        # chosen on validation; the test number is reported for the chosen variant, not selected on
        best_label = max(ml, key=lambda k: ml[k]["valid"]["ndcg@10"])
        ttts = {k: v["time_to_target_s"] for k, v in ml.items() if v.get("time_to_target_s") is not None}
        results["ml-100k_summary"] = {
            "best_variant": best_label,
            "selected_on": "validation NDCG@10",
            "best_valid_ndcg@10": ml[best_label]["valid"]["ndcg@10"],
            "best_variant_test_ndcg@10": ml[best_label]["test"]["ndcg@10"],
            "time_to_valid_target_s": ttts,
            "fraction_of_recbole_878s": {k: round(v / RECBOLE_SASREC_SECONDS, 3) for k, v in ttts.items()},
        }
    print(json.dumps(results, indent=2))
    table = _markdown(results)
    print()
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sequence.json").write_text(json.dumps(results, indent=2))
        (args.out / "sequence.md").write_text(table + "\n")
        _plot(results, args.out / "sequence.png")
        print(f"\nwrote {args.out}/sequence.json, sequence.md, sequence.png", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
