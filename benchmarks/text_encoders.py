"""Which text encoder pays on cold items: base MiniLM vs MiniLM LoRA-tuned on co-occurrence pairs.

Protocol: :func:`lmrec.data.split.cold_item` (seed, ``--item-fraction`` cold test items and as many
disjoint cold *validation* items); full-catalogue ranking. For each encoder (``base`` = the bundled
all-MiniLM-L6-v2, or a directory written by ``lmrec finetune`` / :func:`lmrec.text.finetune.finetune_encoder`
on this split's TRAINING interactions only) it fits

* ``content`` (no training: encoded profiles, recency-weighted history mean), and
* ``unisrec`` inductive (text only), early-stopped on the cold validation items' NDCG@10; with
  ``--residual-grid`` the text-residual weight (``text_residual``) is then picked on validation
  NDCG@10 from the grid (scores only: no refit), the fitted weight (``--set text_residual=...``)
  being the one early stopping saw.

Every choice is made on validation; test NDCG@10 is reported once per fitted model with per-user
bootstrap 95% CIs and paired tests against ``content[base]`` (:func:`lmrec.evaluation.compare_results`).
Prints JSON and a Markdown table.

    python benchmarks/text_encoders.py --encoders base,/tmp/ft_office --models content,unisrec \\
        [--set text_residual=1.0] [--residual-grid 0,0.5,1,2] [--cache-dir DIR] [--out res.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from lmrec.cli._common import parse_value
from lmrec.data.loaders import load_dataset
from lmrec.data.split import cold_item
from lmrec.evaluation import evaluate
from lmrec.evaluation.significance import compare_results
from lmrec.models.registry import create_model


def label(enc: str) -> str:
    return "base" if enc in ("base", "default", "") else Path(enc).name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-2014-office")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--item-fraction", type=float, default=0.1)
    ap.add_argument("--encoders", default="base", help="comma list: base and/or fine-tuned model dirs")
    ap.add_argument("--models", default="content,unisrec")
    ap.add_argument("--cache-dir", default="/tmp/lmrec-cache")
    ap.add_argument("--set", action="append", default=[], help="unisrec config key=value (JSON value)")
    ap.add_argument("--train", action="append", default=[], help="unisrec train key=value")
    ap.add_argument("--residual-grid", default=None, help="text_residual weights tried on validation")
    ap.add_argument("--tag", default="", help="suffix for the unisrec row name")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--per-user-dir", default=None, help="save each row's test per-user metrics (parquet)")
    ap.add_argument(
        "--combine",
        default=None,
        help="comma list of --out JSONs whose --per-user-dir rows to compare (no fit)",
    )
    args = ap.parse_args()
    if args.combine:
        combine(args.combine.split(","), args.n_boot)
        return
    torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset, download=False)
    split = cold_item(
        data, item_fraction=args.item_fraction, valid_fraction=args.item_fraction, seed=args.seed
    )
    print(json.dumps(split.summary()), flush=True)
    train_cfg = {"progress_bar": False, "accelerator": "cpu", "seed": args.seed}
    train_cfg |= {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.train)}
    uni = {"mode": "inductive", **{k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}}
    grid = [float(x) for x in args.residual_grid.split(",")] if args.residual_grid else None

    rows: list[dict[str, Any]] = []
    tests = []
    for enc in args.encoders.split(","):
        encoder = None if label(enc) == "base" else enc
        for name in args.models.split(","):
            t0 = time.perf_counter()
            if name == "content":
                model = create_model("content", cache_dir=args.cache_dir, encoder=encoder)
                model.fit(split.train)
            elif name == "unisrec":
                model = create_model(
                    "unisrec", cache_dir=args.cache_dir, encoder=encoder, train=train_cfg, **uni
                )
                model.fit(split.train, valid=split.valid)  # type: ignore[call-arg]
            else:
                raise SystemExit(f"unknown model {name!r}: content or unisrec")
            fit_s = time.perf_counter() - t0
            extra: dict[str, Any] = {}
            if name == "unisrec" and grid:
                fitted_w = model.config.text_residual  # type: ignore[attr-defined]
                by_w = {}
                for w in grid:
                    model.config = model.config.model_copy(update={"text_residual": w})
                    model._item_vecs = None  # type: ignore[attr-defined]
                    by_w[w] = evaluate(
                        model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False
                    )
                    print(f"  text_residual {w}: valid ndcg@10 {by_w[w].metrics['ndcg@10']:.4f}", flush=True)
                best = max(grid, key=lambda w: by_w[w].metrics["ndcg@10"])
                model.config = model.config.model_copy(update={"text_residual": best})
                extra = {
                    "fitted_text_residual": fitted_w,
                    "chosen_text_residual": best,
                    "valid_by_residual": {str(w): r.metrics["ndcg@10"] for w, r in by_w.items()},
                }
            row_name = f"{name}{args.tag if name == 'unisrec' else ''}[{label(enc)}]"
            val = evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
            res = evaluate(
                model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False, name=row_name
            )
            tests.append(res)
            if args.per_user_dir and res.per_user is not None:
                Path(args.per_user_dir).mkdir(parents=True, exist_ok=True)
                res.per_user.write_parquet(Path(args.per_user_dir) / f"{row_name}.parquet")
            rep = getattr(model, "report_", None)
            row = {
                "model": row_name,
                "encoder": enc,
                "fit_seconds": round(fit_s, 1),
                "best_epoch": None if rep is None else getattr(rep, "best_epoch", None),
                "valid_ndcg@10": val.metrics["ndcg@10"],
                "test_ndcg@10": res.metrics["ndcg@10"],
                "config": {k: v for k, v in model.config.model_dump(mode="json").items() if k != "profile"},
                **extra,
            }
            rows.append(row)
            print(
                f"{row_name:28s} valid {row['valid_ndcg@10']:.4f}  test {row['test_ndcg@10']:.4f}  "
                f"fit {fit_s:.0f}s  best_epoch {row['best_epoch']}",
                flush=True,
            )
    table(rows, tests, args.n_boot)
    if args.out:
        Path(args.out).write_text(
            json.dumps({"per_user_dir": args.per_user_dir, "rows": rows}, indent=2, default=str)
        )


def combine(outs: list[str], n_boot: int) -> None:
    """One table (CIs, paired tests vs content[base]) over rows of several earlier runs."""
    import polars as pl

    from lmrec.evaluation.evaluate import EvalResult

    rows, tests = [], []
    for out in outs:
        saved = json.loads(Path(out).read_text())
        for r in saved["rows"]:
            per_user = pl.read_parquet(Path(saved["per_user_dir"]) / f"{r['model']}.parquet", glob=False)
            rows.append(r)
            tests.append(EvalResult(r["model"], {"ndcg@10": r["test_ndcg@10"]}, per_user=per_user))
    table(rows, tests, n_boot)


def table(rows: list[dict[str, Any]], tests: list[Any], n_boot: int) -> None:
    """Print the Markdown table and the rows as JSON (rows gain CI and paired-test fields)."""
    baseline = "content[base]" if any(r.model == "content[base]" for r in tests) else None
    cmp = compare_results(tests, ["ndcg@10"], baseline=baseline, n_boot=n_boot, seed=0)
    by = {c["model"]: c for c in cmp}
    base_test = next((r["test_ndcg@10"] for r in rows if r["model"] == "content[base]"), None)
    print("\n| model | valid NDCG@10 | test NDCG@10 [95% CI] | vs content[base] | diff [95% CI], p | fit s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        c = by[r["model"]]
        r["test_ci"] = [c.get("ci_lo"), c.get("ci_hi")]
        r["vs"] = c.get("vs")
        r["diff_ci"] = [c.get("diff"), c.get("diff_lo"), c.get("diff_hi"), c.get("p_wilcoxon")]
        ratio = r["test_ndcg@10"] / base_test if base_test else None
        r["ratio_vs_content_base"] = ratio
        diff = (
            f"{c['diff']:+.4f} [{c['diff_lo']:+.4f}, {c['diff_hi']:+.4f}], p={c['p_wilcoxon']:.3g} vs {c['vs']}"
            if c.get("diff") is not None
            else ""
        )
        print(
            f"| {r['model']} | {r['valid_ndcg@10']:.4f} | {r['test_ndcg@10']:.4f} "
            f"[{c.get('ci_lo', float('nan')):.4f}, {c.get('ci_hi', float('nan')):.4f}] | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} | {diff} | {r['fit_seconds']} |"
        )
    print(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
