"""How cost grows with data: fit time, peak memory and serving throughput per model and size.

Data: synthetic logs from :mod:`lmrec.data.synthetic` (power-law popularity and activity, topic
tastes, sessions, topic-tied item text) at each requested size, users and items scaled from
ml-20m's shape (20M interactions = 138,493 users x 27,278 items; items grow with the square root of
the interactions). A size may fix the catalogue: ``20Mx1M`` is 20M interactions over 1M items (the
retrieval-model variant).

Per size and model, one fresh subprocess runs the lmrec path end to end, so that peak memory
(``ru_maxrss``) belongs to that model alone:

    load_synthetic -> leave_last_out -> model.fit(train) -> recommend (throughput) -> evaluate

* **fit**: wall seconds of ``fit`` on the training part (defaults of every model; the neural models
  train exactly one epoch, ``max_epochs=1`` with no validation pass, as issue #17 asks); **epoch**:
  the neural models' training epoch alone (fit also encodes item text and builds batches), with
  the loss ``"auto"`` chose (full or sampled softmax, by catalogue size);
* **peak RSS**: the subprocess's maximum resident memory (data + model + fit temporaries); the
  resident memory after loading and splitting is reported beside it;
* **recommend**: users per second of ``model.recommend(users, k=10)`` on sampled known users
  (batched as the library batches them);
* **NDCG@10 (sampled users)**: full ranking over the whole catalogue, but only for ``--eval-users``
  sampled test users (seeded), labelled as such; a sanity check that the fit learnt something, not
  a leaderboard (no hyperparameter is tuned, so no choice rests on it);
* **outcome**: ``ok``; ``refused: ...`` when the model's memory guard says the fit cannot fit in
  memory (EASE's dense item x item inverse), with its own message; ``timeout``; ``killed`` (the
  kernel's OOM killer, usually); ``failed: <error>``.

Growth exponents: the least-squares slope of log(fit seconds) and log(peak RSS) against
log(interactions) over the sizes where the model ran (1 = linear, 2 = quadratic). The PNG plots both
on log-log axes.

Run::

    python benchmarks/scale.py                                  # 100k and 1M, every model
    python benchmarks/scale.py --sizes 5M 20M --models als ease # larger sizes on request
    python benchmarks/scale.py --sizes 20k --encoder hashing    # the CI smoke version

Prints JSON, then Markdown tables; ``--out DIR`` also writes ``scale.json``, ``scale.md`` and
``scale.png``. Synthetic data is cached under ``--work`` and regenerated only when its config
changes. Timings are wall clock on a possibly shared machine: the JSON records the load average
before and after, the thread count and the CPU count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

MODELS = ("popularity", "ease", "item_knn", "als", "content", "two_tower", "sasrec")
DEFAULT_SIZES = ("100k", "1M")
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


# ------------------------------------------------------------------------------------------ sizes
def parse_count(text: str) -> int:
    """``"100k"`` -> 100000, ``"1.5M"`` -> 1500000."""
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)([kKmMbB]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (write e.g. 100k, 1M, 20M)")
    return int(float(m.group(1)) * _SUFFIX[m.group(2).lower()])


def parse_size(text: str) -> tuple[str, int, int | None]:
    """``"1M"`` -> ("1M", 1000000, None); ``"20Mx1M"`` -> 20M interactions over 1M items."""
    inter, _, items = text.partition("x")
    return text, parse_count(inter), parse_count(items) if items else None


def parse_overrides(items: list[str], parser: argparse.ArgumentParser) -> dict[str, dict[str, Any]]:
    """``["als.use_gpu=false"]`` -> ``{"als": {"use_gpu": False}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        model, dot, key = target.partition(".")
        if not (eq and dot and key) or model not in MODELS:
            parser.error(f"--param {item!r}: write MODEL.KEY=VALUE with MODEL one of {', '.join(MODELS)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(model, {})[key] = value
    return out


def model_params(name: str, *, threads: int, encoder: str | None) -> dict[str, Any]:
    """Each model's defaults, except: one training epoch without validation for the neural models,
    the thread count, the text encoder, and no progress bars (they would flood the logs)."""
    one_epoch = {"train": {"max_epochs": 1, "progress_bar": False}}
    return {
        "als": {"num_threads": threads},
        "content": {"encoder": encoder, "show_progress": False},
        "two_tower": {"encoder": encoder, "val_fraction": 0.0, **one_epoch},
        "sasrec": {"val_fraction": 0.0, **one_epoch},
    }.get(name, {})


# ----------------------------------------------------------------------------------------- worker
def _rss_gib() -> float:
    """This process's peak resident memory so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def _current_rss_gib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        return float("nan")


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One model on one dataset, in this (fresh) process; returns the measurements."""
    import numpy as np
    import polars as pl

    from lmrec.data.split import leave_last_out
    from lmrec.data.synthetic import load_synthetic
    from lmrec.errors import MemoryBudgetError
    from lmrec.evaluation import evaluate
    from lmrec.models.registry import create_model

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    out: dict[str, Any] = {"model": args.model}
    t0 = time.perf_counter()
    data = load_synthetic(args.data)
    out["load_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    split = leave_last_out(data)
    out["split_s"] = round(time.perf_counter() - t0, 2)
    out["rss_after_split_gib"] = round(_current_rss_gib(), 3)
    del data

    # sampled test users (seeded): the same users for throughput and for NDCG
    test_users = np.unique(split.test["user_idx"].to_numpy())
    rng = np.random.default_rng(args.seed)
    n_eval = min(args.eval_users, len(test_users))
    sample = np.sort(rng.choice(test_users, size=n_eval, replace=False))
    keep = pl.col("user_idx").is_in(sample.tolist())
    sampled = replace(
        split,
        test=split.test.filter(keep),
        valid=split.valid.filter(keep) if split.valid is not None else None,
    )

    model = create_model(args.model, **json.loads(args.params))
    t0 = time.perf_counter()
    try:
        model.fit(split.train)
    except MemoryBudgetError as exc:
        out["outcome"] = f"refused: {exc}"
        out["peak_rss_gib"] = round(_rss_gib(), 3)
        return out
    out["fit_s"] = round(time.perf_counter() - t0, 4)
    report = getattr(model, "report_", None)
    if report is not None and report.epochs:  # neural models: the training epoch alone, no encoding
        out["epoch_s"] = round(report.mean_epoch_seconds, 2)
        out["accelerator"] = report.accelerator
    elif callable(getattr(model, "on_gpu", None)):  # ALS: implicit's CUDA or CPU solver
        out["accelerator"] = "gpu" if model.on_gpu() else "cpu"
    loss = getattr(getattr(model, "net", None), "loss", None)
    if isinstance(loss, str):
        out["loss"] = loss
    out["rss_after_fit_gib"] = round(_current_rss_gib(), 3)

    users = split.train.user_vocab.external(sample)
    t0 = time.perf_counter()
    recs = model.recommend(users, k=10)
    rec_s = time.perf_counter() - t0
    out["recommend_users"] = len(users)
    out["recommend_users_per_s"] = round(len(users) / rec_s, 1) if rec_s > 0 else None
    assert recs.height == 10 * len(users), "every sampled user gets 10 items"

    t0 = time.perf_counter()
    res = evaluate(model, sampled, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    out["eval_s"] = round(time.perf_counter() - t0, 2)
    out["ndcg@10_sampled"] = round(float(res["ndcg@10"]), 4)
    out["recall@10_sampled"] = round(float(res["recall@10"]), 4)
    out["eval_users"] = int(res.metrics.get("n_users", n_eval))
    out["peak_rss_gib"] = round(_rss_gib(), 3)
    out["outcome"] = "ok"
    return out


# ----------------------------------------------------------------------------------------- parent
def _load() -> float:
    return round(os.getloadavg()[0], 2)


def ensure_data(work: Path, label: str, n: int, items: int | None, seed: int) -> dict[str, Any]:
    """The synthetic dataset for one size, generated unless a copy with the same config exists."""
    from lmrec.data.synthetic import GENERATOR_VERSION, SyntheticConfig, generate

    cfg = SyntheticConfig(n_interactions=n, n_items=items, seed=seed)
    folder = work / f"synth-{label}-seed{seed}"
    meta_file = folder / "synthetic.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("config") == cfg.model_dump() and meta.get("generator_version") == GENERATOR_VERSION:
            return {"folder": str(folder), **{k: meta[k] for k in ("n_interactions", "n_users", "n_items")},
                    "generate_s": meta.get("seconds"), "cached": True}  # fmt: skip
    from tqdm import tqdm

    with tqdm(total=n, desc=f"generating {label}", unit="rows", unit_scale=True, file=sys.stderr) as bar:
        summary = generate(cfg, folder, progress=lambda done, _t: bar.update(done - bar.n))
    return {**summary.to_dict(), "generate_s": round(summary.seconds, 2), "cached": False}


def run_one(data: dict[str, Any], model: str, args: argparse.Namespace) -> dict[str, Any]:
    """One model on one size in a subprocess with a timeout; its JSON, or what went wrong."""
    params = {
        **model_params(model, threads=args.threads, encoder=args.encoder),
        **args.overrides.get(model, {}),
    }
    with tempfile.TemporaryDirectory(prefix="lmrec-scale-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", "--data", data["folder"], "--model", model]
        cmd += ["--params", json.dumps(params), "--result", str(result), "--threads", str(args.threads)]
        cmd += ["--eval-users", str(args.eval_users), "--seed", str(args.seed)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, timeout=args.timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"model": model, "outcome": f"timeout after {args.timeout} s"}
        wall = round(time.perf_counter() - started, 1)
        if result.is_file():
            return {**json.loads(result.read_text()), "wall_s": wall}
        if proc.returncode < 0:
            sig = -proc.returncode
            why = " (out of memory, most likely)" if sig == 9 else ""
            return {"model": model, "outcome": f"killed by signal {sig}{why}", "wall_s": wall}
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {
            "model": model,
            "outcome": f"failed: {lines[-1] if lines else proc.returncode}",
            "wall_s": wall,
        }


def growth(rows: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    """Per model, the slope of log(key) on log(n_interactions) over its successful runs."""
    out: dict[str, float | None] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = [
            (math.log(r["n_interactions"]), math.log(r[key]))
            for r in rows
            if r["model"] == model and r.get("outcome") == "ok" and r.get(key)
        ]
        if len({x for x, _ in pts}) < 2:
            out[model] = None
            continue
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        out[model] = round(sum((x - mx) * (y - my) for x, y in pts) / sxx, 2)
    return out


def _fmt(v: Any, spec: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if spec else str(v)


def markdown(doc: dict[str, Any]) -> str:
    n_eval = doc["settings"]["eval_users"]
    lines = [
        f"| size | users | items | model | outcome | fit s | epoch s | peak RSS GiB | recommend users/s | "
        f"NDCG@10 (sampled {n_eval:,} users) |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        outcome = r.get("outcome", "")
        short = outcome if len(outcome) <= 60 else outcome[:57] + "..."
        lines.append(
            f"| {r['size']} | {r['n_users']:,} | {r['n_items']:,} | {r['model']} | {short} | "
            f"{_fmt(r.get('fit_s'), '.1f')} | {_fmt(r.get('epoch_s'), '.1f')} | {_fmt(r.get('peak_rss_gib'), '.2f')} | "
            f"{_fmt(r.get('recommend_users_per_s'), ',.0f')} | {_fmt(r.get('ndcg@10_sampled'), '.4f')} |"
        )
    lines += ["", "| model | fit-time exponent | peak-RSS exponent |", "|---|---:|---:|"]
    for model, e in doc["growth"]["fit_s"].items():
        lines.append(f"| {model} | {_fmt(e)} | {_fmt(doc['growth']['peak_rss_gib'].get(model))} |")
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "fit_s", "fit seconds"), (axes[1], "peak_rss_gib", "peak RSS (GiB)")):
        for model in dict.fromkeys(r["model"] for r in doc["rows"]):
            pts = sorted(
                (r["n_interactions"], r[key])
                for r in doc["rows"]
                if r["model"] == model and r.get("outcome") == "ok" and r.get(key)
            )
            if pts:
                exp = doc["growth"][key].get(model)
                name = f"{model} (slope {exp})" if exp is not None else model
                ax.plot(*zip(*pts, strict=True), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    if axes[0].lines:
        axes[0].legend(fontsize=7)
    fig.suptitle("lmrec cost curves on synthetic data (log-log)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def combine(paths: list[Path], out: Path | None) -> dict[str, Any]:
    """One table and plot from several runs' ``scale.json`` (or ``scale.partial.json``) files: rows
    keyed by (size, model), a later file's row replacing an earlier one's (a rerun after a timeout)."""
    keyed: dict[tuple[str, str], dict[str, Any]] = {}
    eval_users = 0
    for path in paths:
        data = json.loads(path.read_text())
        rows = data["rows"] if isinstance(data, dict) else data
        eval_users = max(eval_users, *(int(r.get("eval_users", 0)) for r in rows))
        for r in rows:
            keyed[(r["size"], r["model"])] = {**r, "source": str(path)}
    rows = sorted(keyed.values(), key=lambda r: (r["n_interactions"], MODELS.index(r["model"])))
    doc = {
        "benchmark": "scale",
        "settings": {"eval_users": eval_users, "combined_from": [str(p) for p in paths]},
        "rows": rows,
        "growth": growths(rows),
    }
    print(markdown(doc))
    if out is not None:
        write_report(doc, out)
    return doc


def growths(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The fit-time and peak-memory exponents of every model (:func:`growth`)."""
    return {"fit_s": growth(rows, "fit_s"), "peak_rss_gib": growth(rows, "peak_rss_gib")}


def write_report(doc: dict[str, Any], out: Path) -> None:
    """``scale.json``, ``scale.md`` and ``scale.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "scale.md").write_text(markdown(doc))
    plot(doc, out / "scale.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="e.g. 100k 1M 5M 20M 20Mx1M")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--eval-users", type=int, default=2_000, help="sampled test users for NDCG and throughput")
    p.add_argument("--threads", type=int, default=1, help="threads per model (torch, BLAS, implicit)")
    p.add_argument(
        "--encoder", default=None, help="text encoder of content/two_tower (default MiniLM; 'hashing')"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="override one config field of one model (VALUE is JSON, else a string), e.g. als.use_gpu=false",
    )
    p.add_argument("--timeout", type=int, default=3_600, help="seconds per model and size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "lmrec-scale", help="data cache"
    )
    p.add_argument("--out", type=Path, default=None, help="write scale.json, scale.md and scale.png here")
    p.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="SCALE_JSON",
        help="no runs: merge these runs' scale.json files into one table and plot (--out)",
    )
    # internal: one model in a subprocess
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        out = worker(args)
        Path(args.result).write_text(json.dumps(out))
        return 0
    if args.combine:
        combine(args.combine, args.out)
        return 0

    sizes = [parse_size(s) for s in args.sizes]
    args.overrides = parse_overrides(args.param, p)
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    load_before = _load()
    for label, n, items in sizes:
        data = ensure_data(args.work, label, n, items, args.seed)
        print(f"[{label}] {data['n_interactions']:,} interactions, {data['n_users']:,} users, "
              f"{data['n_items']:,} items", file=sys.stderr)  # fmt: skip
        for model in args.models:
            t0 = time.perf_counter()
            res = run_one(data, model, args)
            row = {"size": label, "n_interactions": data["n_interactions"], "n_users": data["n_users"],
                   "n_items": data["n_items"], "load_avg_1m": _load(), **res}  # fmt: skip
            rows.append(row)
            print(f"[{label}] {model}: {row['outcome'][:100]} ({time.perf_counter() - t0:.0f} s; "
                  f"fit {row.get('fit_s', '-')} s, peak {row.get('peak_rss_gib', '-')} GiB)", file=sys.stderr)  # fmt: skip
            if args.out:  # partial results survive a later crash or timeout
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "scale.partial.json").write_text(json.dumps(rows, indent=1))
    doc: dict[str, Any] = {
        "benchmark": "scale",
        "settings": {
            "sizes": args.sizes,
            "models": args.models,
            "eval_users": args.eval_users,
            "eval_note": "NDCG@10 over sampled test users (full ranking over all items), leave-last-out",
            "threads": args.threads,
            "overrides": args.overrides,
            "encoder": args.encoder or "all-MiniLM-L6-v2 (bundled)",
            "neural_epochs": 1,
            "seed": args.seed,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": _load(),
        },
        "rows": rows,
        "growth": growths(rows),
    }
    print(json.dumps(doc, indent=2))
    print(markdown(doc))
    if args.out:
        write_report(doc, args.out)
        (args.out / "scale.partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
