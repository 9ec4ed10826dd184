"""Federated BPR-MF on ml-100k (issue 15): cross-silo, DP and cross-device against central training.

Leave-last-out, full ranking; NDCG@10 of the saved artifact (user vectors folded in from history,
test queries carry the train + validation history; no refit: the model is trained on ``train``).
Per seed:

* ``central``: the same model trained centrally: one client holding every user (same code, same
  Flower simulation, so the only difference is the federation).
* ``silo``: 10 clients, non-IID: whole occupations per silo (``partition="occupation"``).
* ``dp eps=E``: ``silo`` with record-level DP-SGD on each client (Opacus), target ε = E at
  δ = 1/943 over all rounds; ε from Opacus's RDP accountant (largest over clients).
* ``device``: one client per user (943), 10% sampled per round; per-round validation NDCG@10 of the
  clients' own user factors, compared with the central run's final value measured the same way.

Hyperparameters (Adam 0.003, 32 factors, 1 local epoch, batch 256, fold-in λ 0.1) were chosen on
validation NDCG@10 only, on the central model with an in-process FedAvg loop (the same local update
the clients run); nothing here reads a test number before the end.

    python benchmarks/federated.py [--seeds 0,1,2] [--rounds 30] [--epsilons 1,2,4,8]
                                   [--device-rounds 60] [--parts central,silo,dp,device] [--out runs/federated]

Prints JSON and a Markdown table; writes ``federated.png`` (NDCG against rounds and against ε).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.federated import FedMF, RoundLog
from lmrec.federated.report import plot_rounds


def _t95(n: int) -> float:
    return {1: math.nan, 2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(n, 1.96)


def ci(values: list[float]) -> dict[str, float]:
    """Mean and the half-width of a 95% t interval over seeds."""
    v = np.asarray(values, dtype=float)
    half = _t95(len(v)) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return {"mean": round(float(v.mean()), 4), "ci95": round(float(half), 4), "n": len(v)}


def run(name: str, split: Split, seed: int, **params: Any) -> dict[str, Any]:
    started = time.perf_counter()
    model = FedMF(seed=seed, **params).fit(split.train, valid=split.valid)
    fit_s = time.perf_counter() - started
    valid = evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
    test = evaluate(model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    rounds: list[RoundLog] = model.run_.rounds
    row = {
        "run": name,
        "seed": seed,
        "valid_ndcg@10": round(valid.metrics["ndcg@10"], 4),
        "test_ndcg@10": round(test.metrics["ndcg@10"], 4),
        "epsilon": None if model.run_.epsilon is None else round(model.run_.epsilon, 3),
        "delta": model.run_.delta,
        "fit_seconds": round(fit_s, 1),
        "bytes_per_client_round_up": rounds[-1].bytes_up // max(rounds[-1].clients, 1),
        "rounds": [r.__dict__ for r in rounds],
    }
    print(
        f"{name} seed {seed}: valid {row['valid_ndcg@10']:.4f} test {row['test_ndcg@10']:.4f} "
        f"eps {row['epsilon']} fit {fit_s:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--epsilons", default="1,2,4,8")
    ap.add_argument("--device-rounds", type=int, default=60)
    ap.add_argument("--parts", default="central,silo,dp,device")
    ap.add_argument("--out", type=Path, default=Path("runs/federated"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = set(args.parts.split(","))
    split = leave_last_out(load_dataset("ml-100k", data_dir=args.data_dir))
    silo = {"clients": 10, "partition": "occupation", "iterations": args.rounds}
    plan: list[tuple[str, dict[str, Any]]] = []
    if "central" in parts:
        plan.append(("central", {"clients": 1, "partition": "hash", "iterations": args.rounds}))
    if "silo" in parts:
        plan.append(("silo", silo))
    if "dp" in parts:
        for eps in (float(e) for e in args.epsilons.split(",")):
            plan.append((f"dp eps={eps:g}", {**silo, "dp": "record", "dp_epsilon": eps}))
    if "device" in parts:
        plan.append(("device", {"partition": "user", "fraction": 0.1, "iterations": args.device_rounds}))
    started = time.perf_counter()
    rows = [run(name, split, seed, **params) for seed in seeds for name, params in plan]
    total_s = time.perf_counter() - started

    summary: dict[str, Any] = {}
    for name, _ in plan:
        mine = [r for r in rows if r["run"] == name]
        summary[name] = {
            "valid_ndcg@10": ci([r["valid_ndcg@10"] for r in mine]),
            "test_ndcg@10": ci([r["test_ndcg@10"] for r in mine]),
            "epsilon": mine[0]["epsilon"],
            "bytes_per_client_round_up": mine[0]["bytes_per_client_round_up"],
            "fit_seconds": ci([r["fit_seconds"] for r in mine]),
        }
    central = {r["seed"]: r for r in rows if r["run"] == "central"}
    for name in summary:
        if central and name != "central":
            ratios = [
                r["test_ndcg@10"] / central[r["seed"]]["test_ndcg@10"] for r in rows if r["run"] == name
            ]
            summary[name]["test_ratio_to_central"] = ci(ratios)
    if central and "device" in summary:
        reach = []
        for r in (r for r in rows if r["run"] == "device"):
            goal = 0.9 * central[r["seed"]]["rounds"][-1]["valid_ndcg"]
            hit = [x["round"] for x in r["rounds"] if x["valid_ndcg"] is not None and x["valid_ndcg"] >= goal]
            reach.append(hit[0] if hit else None)
        summary["device"]["rounds_to_0.9x_central_valid"] = reach
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {
        f"{name} (seed {seeds[0]})": [RoundLog(**x) for x in r["rounds"]]
        for name, _ in plan
        for r in rows
        if r["run"] == name and r["seed"] == seeds[0]
    }
    plot = plot_rounds(curves, args.out / "federated.png")
    report = {"summary": summary, "runs": rows, "seconds": round(total_s, 1), "plot": str(plot)}
    (args.out / "federated.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"summary": summary, "seconds": report["seconds"]}, indent=1))
    print()
    print("| run | valid NDCG@10 | test NDCG@10 | test / central | ε (δ=1/943) | bytes/client/round up |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        ratio = s.get("test_ratio_to_central")
        ratio_text = "" if ratio is None else f"{ratio['mean']:.3f} ± {ratio['ci95']:.3f}"
        print(
            f"| {name} | {s['valid_ndcg@10']['mean']:.4f} ± {s['valid_ndcg@10']['ci95']:.4f} "
            f"| {s['test_ndcg@10']['mean']:.4f} ± {s['test_ndcg@10']['ci95']:.4f} "
            f"| {ratio_text} "
            f"| {s['epsilon'] if s['epsilon'] is not None else '∞'} | {s['bytes_per_client_round_up']:,} |"
        )


if __name__ == "__main__":
    main()
