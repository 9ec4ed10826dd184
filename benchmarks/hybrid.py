"""No model is best everywhere: the tuned hybrid against every tuned single model (issue #10).

Protocol (the refit protocol, lmrec's headline):

1. ``leave_last_out`` per user by time: the last interaction is test, the one before validation.
   Reviews and tags written in validation or test interactions are dropped from the item profiles
   (:func:`lmrec.text.profiles.drop_heldout_text`), so no text leaks a target.
2. Every model is tuned by ``lmrec.tuning.tune`` with the **same budget** (``--trials`` and
   ``--timeout`` per model): fit on train, score NDCG@10 on the validation phase only. Neural models
   early-stop on validation and the best epoch count is kept.
3. The chosen configuration is refitted on train + valid (neural models train exactly the chosen
   number of epochs) and tested once, with train + valid as the query history, full ranking, seen
   items excluded (:func:`lmrec.tuning.evaluate_refit`).
4. The hybrid uses the tuned configurations of its generators (EASE, ItemKNN, SASRec, two-tower,
   content by default) and its ranker defaults (chosen on ml-100k validation by
   ``benchmarks/hybrid_defaults.py``). ``hybrid.fit(train + valid)`` holds out each user's latest
   interactions internally for the ranker's targets; the test item is never seen.

No number read off the test phase feeds any choice. Per-user bootstrap 95% CIs and a paired test
(Wilcoxon and t) against the strongest single model are printed for NDCG@10 and Recall@10.

Run::

    python benchmarks/hybrid.py                                    # every dataset, default budget
    python benchmarks/hybrid.py --datasets amazon-2014-office --trials 12 --timeout 120 --out runs/hybrid

Prints one JSON line per model as it finishes, then the full JSON and a Markdown table; with
``--out`` also writes ``hybrid.json``, ``hybrid.md`` and ``hybrid.png`` (NDCG@10 with CIs).
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
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.evaluation import compare_results
from lmrec.evaluation.evaluate import EvalResult
from lmrec.models.hybrid import GeneratorSpec, fit_key
from lmrec.models.registry import create_model, registered_models
from lmrec.text.profiles import drop_heldout_text
from lmrec.tuning import evaluate_refit, refit_params, tune

DATASETS = ("ml-100k", "ml-latest-small", "amazon-2014-musical-instruments", "amazon-2014-office")
BASELINES = ("popularity", "ease", "item_knn", "als", "content", "two_tower", "sasrec", "unisrec")
GENERATORS = ("ease", "item_knn", "sasrec", "two_tower", "content")
KS = (10,)


def _common_params(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fixed (not searched) settings: the text cache and quiet, seeded training."""
    from lmrec.models.registry import get_model_class

    fields = get_model_class(name).Config.model_fields
    out: dict[str, Any] = {}
    if "cache_dir" in fields and args.cache_dir:
        out["cache_dir"] = args.cache_dir
    if "train" in fields:
        out["train"] = {"progress_bar": False, "seed": args.seed}
    return out


def _seeded(name: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """``params`` with every seed it carries (the model's, its trainer's, its generators') set to ``seed``."""
    from lmrec.models.registry import get_model_class

    out = json.loads(json.dumps(params, default=str))
    if isinstance(out.get("train"), dict):
        out["train"]["seed"] = seed
    if "seed" in get_model_class(name).Config.model_fields:
        out["seed"] = seed
    if name == "hybrid":
        out["generators"] = [
            {**g, "params": _seeded(g["name"], g["params"], seed)} for g in out["generators"]
        ]
    return out


def _is_seeded(name: str) -> bool:
    """Models whose result depends on the seed: the neural ones (a ``train`` config) and the hybrid."""
    from lmrec.models.registry import get_model_class

    return name == "hybrid" or "train" in get_model_class(name).Config.model_fields


def _goal_ratios(ndcg: dict[str, float], singles: list[str]) -> tuple[float | None, float | None]:
    """The hybrid's NDCG@10 over tuned EASE's, and its smallest ratio over the single models."""
    h = ndcg["hybrid"]
    ease = ndcg.get("ease")
    ratios = [h / ndcg[m] for m in singles if ndcg[m] > 0]
    return (round(h / ease, 3) if ease else None), (round(min(ratios), 3) if ratios else None)


def _datasets(run: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-dataset results of a hybrid.json: the finished summary, or a run's partial list."""
    return run["datasets"] if isinstance(run, dict) else run


def _reused_tuning(path: Path, dataset: str) -> dict[str, dict[str, Any]]:
    """The per-model rows (params, best epoch, validation score) of ``dataset`` in an earlier run."""
    for ds in _datasets(json.loads(Path(path).read_text())):
        if ds["dataset"] == dataset:
            return {m: r for m, r in ds["models"].items() if m != "hybrid"}
    raise SystemExit(f"--reuse-tuning {path}: no results for dataset {dataset!r}")


def _reused(m: str, reused: dict[str, dict[str, Any]], args: argparse.Namespace) -> SimpleNamespace:
    """A stand-in for :class:`lmrec.tuning.TuneResult` built from an earlier run's row of ``m``."""
    if m not in reused:
        raise SystemExit(f"--reuse-tuning {args.reuse_tuning}: no tuned row for model {m!r}")
    row = reused[m]
    params = {**_common_params(m, args), **_seeded(m, row["params"], args.seed)}
    return SimpleNamespace(
        params=params, best_epoch=row.get("best_epoch"), best_value=row["valid_ndcg"], n_trials=row["trials"]
    )


def _seed_summary(by_seed: dict[int, float]) -> dict[str, Any]:
    """Mean, sample sd (None for one seed) and count of one model's NDCG@10 over seeds."""
    v = np.array(list(by_seed.values()), dtype=np.float64)
    sd = round(float(v.std(ddof=1)), 4) if len(v) > 1 else None
    return {"mean": round(float(v.mean()), 4), "sd": sd, "n": len(v)}


def combine(paths: list[Path]) -> list[dict[str, Any]]:
    """Per dataset and model: test NDCG@10 of each run (one per seed), their mean and sd, and the
    issue's ratios on the seed means. Runs must share the tuned configuration (``--reuse-tuning``)."""
    by_ds: dict[str, dict[str, dict[int, float]]] = {}
    seeds = []
    for p in paths:
        summary = json.loads((p / "hybrid.json" if p.is_dir() else p).read_text())
        if not isinstance(summary, dict):
            raise SystemExit(f"--combine {p}: an unfinished run (no summary with its seed)")
        seeds.append(summary["seed"])
        for ds in summary["datasets"]:
            for m, r in ds["models"].items():
                by_ds.setdefault(ds["dataset"], {}).setdefault(m, {})[summary["seed"]] = r["ndcg@10"]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--combine: the runs repeat a seed ({seeds})")
    out = []
    for name, models in by_ds.items():
        rows = {}
        for m, vals in models.items():
            rows[m] = {"ndcg@10_by_seed": vals, **_seed_summary(vals)}
        singles = [m for m in rows if m != "hybrid"]
        entry: dict[str, Any] = {"dataset": name, "models": rows}
        if "hybrid" in rows and singles:
            vs_ease, vs_min = _goal_ratios({m: r["mean"] for m, r in rows.items()}, singles)
            entry["targets"] = {
                "seed_mean_hybrid_vs_ease": vs_ease,
                "seed_mean_hybrid_vs_every_single_min": vs_min,
            }
        out.append(entry)
    return out


def _leak_free(split: Split) -> Split:
    return replace(split, train=drop_heldout_text(split.train, [split.valid, split.test]))


def _row(res: EvalResult, **extra: Any) -> dict[str, Any]:
    out = {k: round(float(res.metrics[k]), 4) for k in ("ndcg@10", "recall@10") if k in res.metrics}
    out.update(extra)
    return out


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = load_dataset(name, data_dir=args.data_dir) if args.data_dir else load_dataset(name)
    split = _leak_free(leave_last_out(data))
    load_s = time.perf_counter() - t0
    models = [m for m in args.models if m in registered_models()]
    tuned: dict[str, Any] = {}
    refit: dict[str, dict[str, Any]] = {}  # the refitted configuration of each model, for more seeds
    results: list[EvalResult] = []
    rows: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Any] = {}  # the refitted single models, for --share-fits
    reused = _reused_tuning(args.reuse_tuning, name) if args.reuse_tuning else {}
    for m in models:
        t = time.perf_counter()
        if reused:  # the configuration an earlier run chose on validation, seeded with --seed
            tr = _reused(m, reused, args)
            tune_s = float(reused[m].get("tune_s") or 0.0)
        else:
            tr = tune(
                m,
                split,
                n_trials=args.trials,
                timeout=args.timeout,
                seed=args.seed,
                fixed_params=_common_params(m, args),
            )
            tune_s = time.perf_counter() - t
        t = time.perf_counter()
        refit[m] = refit_params(m, tr.params, tr.best_epoch)
        model = create_model(m, **refit[m])
        model.fit(split.full)
        fit_s = time.perf_counter() - t
        if args.share_fits:
            fitted[m] = model
        t = time.perf_counter()
        res = evaluate_refit(model, split, ks=KS, beyond_accuracy=False, auc=False)
        eval_s = time.perf_counter() - t
        res.model = m
        results.append(res)
        tuned[m] = tr
        rows[m] = _row(
            res,
            valid_ndcg=round(tr.best_value, 4),
            trials=tr.n_trials,
            best_epoch=tr.best_epoch,
            tune_s=round(tune_s, 1),
            refit_s=round(fit_s, 1),
            eval_s=round(eval_s, 1),
            params=tr.params,
        )
        print(json.dumps({"dataset": name, "model": m, **rows[m]}, default=str), flush=True)

    if not args.no_hybrid:
        gens = [g for g in args.generators if g in tuned]
        specs = [
            {
                "name": g,
                "params": refit_params(g, tuned[g].params, tuned[g].best_epoch),
                "n_candidates": args.candidates,
            }
            for g in gens
        ]
        hparams: dict[str, Any] = {"generators": specs, "seed": args.seed}
        if args.cache_dir:
            hparams["text_cache_dir"] = args.cache_dir
        refit["hybrid"] = hparams
        t = time.perf_counter()
        hybrid = create_model("hybrid", **hparams)
        if args.share_fits:
            # the hybrid's final stage fits each generator on train + valid with exactly the spec
            # the single model was refitted with: take those fits instead of training them again
            hybrid.share_fits(
                {
                    fit_key(GeneratorSpec.model_validate(s), split.full): fitted[s["name"]]
                    for s in specs
                    if s["name"] in fitted
                }
            )
        hybrid.fit(split.full)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        res = evaluate_refit(hybrid, split, ks=KS, beyond_accuracy=False, auc=False)
        eval_s = time.perf_counter() - t
        res.model = "hybrid"
        results.append(res)
        gen_tune_s = sum(rows[g]["tune_s"] for g in gens)
        report = getattr(hybrid, "fit_report_", {}) or {}
        rows["hybrid"] = _row(
            res,
            generators=gens,
            tune_s=round(gen_tune_s, 1),
            refit_s=round(fit_s, 1),
            eval_s=round(eval_s, 1),
            total_s=round(gen_tune_s + fit_s + eval_s, 1),
            shared_fits=bool(args.share_fits),
            stages={k: v for k, v in report.items() if k.endswith("_s") or k.endswith("seconds")},
            n_targets=report.get("n_targets"),
            top_features=sorted(report.get("feature_gain", {}).items(), key=lambda kv: -kv[1])[:10],
        )
        print(json.dumps({"dataset": name, "model": "hybrid", **rows["hybrid"]}, default=str), flush=True)

    # more seeds for the seeded models: the same tuned configuration refitted and tested again (the
    # table's CIs and paired tests are the main seed's; these give the spread over seeds)
    for m in [m for m in rows if _is_seeded(m)] if args.extra_seeds else []:
        by_seed = {args.seed: rows[m]["ndcg@10"]}
        for s in args.extra_seeds:
            model = create_model(m, **_seeded(m, refit[m], s))
            model.fit(split.full)
            res = evaluate_refit(model, split, ks=KS, beyond_accuracy=False, auc=False)
            by_seed[s] = round(float(res.metrics["ndcg@10"]), 4)
            print(json.dumps({"dataset": name, "model": m, "seed": s, "ndcg@10": by_seed[s]}), flush=True)
        summary = _seed_summary(by_seed)
        rows[m]["ndcg@10_by_seed"] = by_seed
        rows[m]["ndcg@10_seed_mean"] = summary["mean"]
        rows[m]["ndcg@10_seed_sd"] = summary["sd"]

    # the paired-test baseline is the single model that validation ranks first: picked on
    # validation, like every other choice here; the goal below is checked against every single model
    singles = [m for m in rows if m != "hybrid"]
    baseline = max(singles, key=lambda m: rows[m]["valid_ndcg"]) if singles else None
    sig = compare_results(results, ["ndcg@10", "recall@10"], baseline=baseline, seed=args.seed)
    out: dict[str, Any] = {
        "dataset": name,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_interactions": data.n_interactions,
        "load_s": round(load_s, 1),
        "models": rows,
        "baseline_by_valid": baseline,
        "significance": sig,
    }
    if "hybrid" in rows and singles:
        vs_ease, vs_min = _goal_ratios({m: r["ndcg@10"] for m, r in rows.items()}, singles)
        out["targets"] = {
            "hybrid_vs_ease": vs_ease,
            "hybrid_vs_ease_goal": 1.15,
            # the goal holds only if it holds against each single model: the smallest ratio
            "hybrid_vs_every_single_min": vs_min,
            "hybrid_vs_every_single_goal": 1.05,
        }
        if args.extra_seeds:  # the same ratios on the seed means (deterministic models: one value)
            mean = {m: r.get("ndcg@10_seed_mean", r["ndcg@10"]) for m, r in rows.items()}
            vs_ease, vs_min = _goal_ratios(mean, singles)
            out["targets"]["seed_mean_hybrid_vs_ease"] = vs_ease
            out["targets"]["seed_mean_hybrid_vs_every_single_min"] = vs_min
    return out


def markdown(all_results: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | model | NDCG@10 [95% CI] | Recall@10 [95% CI] | vs | Δ NDCG@10 | p (Wilcoxon) "
        "| valid NDCG@10 | NDCG@10 over seeds | tune s | refit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in all_results:
        sig = {(r["model"], r["metric"]): r for r in ds["significance"]}
        for m, row in ds["models"].items():
            n = sig.get((m, "ndcg@10"), {})
            r = sig.get((m, "recall@10"), {})

            def ci(s: dict[str, Any]) -> str:
                if not s or s.get("ci_lo") is None:
                    return "–"
                return f"{s['mean']:.4f} [{s['ci_lo']:.4f}, {s['ci_hi']:.4f}]"

            diff = "–" if n.get("diff") is None else f"{n['diff']:+.4f}"
            p = "–" if n.get("p_wilcoxon") is None else f"{n['p_wilcoxon']:.3g}"
            seeds = "–"
            if row.get("ndcg@10_by_seed"):
                sd = row.get("ndcg@10_seed_sd")
                seeds = f"{row['ndcg@10_seed_mean']:.4f} ± {sd:.4f} (n={len(row['ndcg@10_by_seed'])})"
            lines.append(
                f"| {ds['dataset']} | {m} | {ci(n)} | {ci(r)} | {n.get('vs', '–')} | {diff} | {p} "
                f"| {row.get('valid_ndcg', '–')} | {seeds} | {row.get('tune_s', '–')} | {row.get('refit_s', '–')} |"
            )
    return "\n".join(lines)


def combined_markdown(combined: list[dict[str, Any]]) -> str:
    lines = ["| dataset | model | NDCG@10 per seed | mean ± sd (n) |", "|---|---|---|---|"]
    for ds in combined:
        for m, r in ds["models"].items():
            per = ", ".join(f"{s}: {v:.4f}" for s, v in r["ndcg@10_by_seed"].items())
            sd = "–" if r["sd"] is None else f"{r['sd']:.4f}"
            lines.append(f"| {ds['dataset']} | {m} | {per} | {r['mean']:.4f} ± {sd} ({r['n']}) |")
        if ds.get("targets"):
            t = ds["targets"]
            lines.append(
                f"| {ds['dataset']} | **goals on seed means** | hybrid / EASE {t['seed_mean_hybrid_vs_ease']} "
                f"(≥ 1.15) | hybrid / best single {t['seed_mean_hybrid_vs_every_single_min']} (≥ 1.05) |"
            )
    return "\n".join(lines)


def plot(all_results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_results), figsize=(4.2 * len(all_results), 3.8), squeeze=False)
    for ax, ds in zip(axes[0], all_results, strict=True):
        rows = [r for r in ds["significance"] if r["metric"] == "ndcg@10"]
        names = [r["model"] for r in rows]
        means = [r["mean"] for r in rows]
        lo = [r["mean"] - (r["ci_lo"] if r.get("ci_lo") is not None else r["mean"]) for r in rows]
        hi = [(r["ci_hi"] if r.get("ci_hi") is not None else r["mean"]) - r["mean"] for r in rows]
        colors = ["tab:red" if n == "hybrid" else "tab:blue" for n in names]
        ax.barh(names, means, xerr=[lo, hi], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(ds["dataset"], fontsize=10)
        ax.set_xlabel("test NDCG@10 (95% CI), refit protocol")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--models", nargs="+", default=list(BASELINES), help="single models to tune and test")
    p.add_argument("--generators", nargs="+", default=list(GENERATORS))
    p.add_argument("--trials", type=int, default=12, help="tuning budget per model: trials")
    p.add_argument("--timeout", type=float, default=120.0, help="tuning budget per model: seconds")
    p.add_argument("--candidates", type=int, default=50, help="candidates per generator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--extra-seeds",
        type=int,
        nargs="*",
        default=[],
        help="refit and test the neural models and the hybrid again with these seeds (e.g. 1 2)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: a second thread spin-waits on a shared 2-core box)",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=os.environ.get("LMREC_CACHE_DIR", "runs/cache/embeddings"))
    p.add_argument("--no-hybrid", action="store_true")
    p.add_argument(
        "--share-fits",
        action="store_true",
        help="the hybrid's final stage reuses the single models' train+valid refits (same spec, same "
        "data) instead of fitting its generators again; its refit time then leaves those fits out",
    )
    p.add_argument(
        "--reuse-tuning",
        type=Path,
        default=None,
        help="an earlier run's hybrid.json: take each model's tuned configuration and best epoch from "
        "it instead of tuning again (to refit and test it with another --seed)",
    )
    p.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        default=None,
        help="finished run folders (or their hybrid.json) of one seed each: "
        "print NDCG@10 per seed, mean and sd, and the goal ratios on the seed means",
    )
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.combine:
        combined = combine(args.combine)
        print(json.dumps(combined, indent=2, default=str))
        print(combined_markdown(combined))
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "seeds.json").write_text(json.dumps(combined, indent=2, default=str))
            (args.out / "seeds.md").write_text(combined_markdown(combined) + "\n")
        return 0

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    all_results = []
    for ds in args.datasets:
        all_results.append(run_dataset(ds, args))
        if args.out:  # partial results survive a later dataset's failure
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "hybrid.json").write_text(json.dumps(all_results, indent=2, default=str))
    summary = {
        "protocol": "refit: tune on valid (same budget per model), refit on train+valid, test once; "
        "leave-last-out, full ranking, seen items excluded",
        "budget": {"trials": args.trials, "timeout_s": args.timeout},
        "seed": args.seed,
        "reused_tuning": None if args.reuse_tuning is None else str(args.reuse_tuning),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "load_avg_at_end": os.getloadavg()[0],
        },
        "wall_s": round(time.perf_counter() - started, 1),
        "datasets": all_results,
    }
    print(json.dumps(summary, indent=2, default=str))
    table = markdown(all_results)
    print(table)
    if args.out:
        (args.out / "hybrid.json").write_text(json.dumps(summary, indent=2, default=str))
        (args.out / "hybrid.md").write_text(table + "\n")
        plot(all_results, args.out / "hybrid.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
