"""What Flower's SecAgg+ costs federated BPR-MF on ml-100k (issue 15, item 3).

The ``silo`` arm of ``benchmarks/federated.py`` (10 non-IID silos by occupation, FedAvgM with server
momentum 0.9, its local training, its rounds) run twice on one Ray cluster of 2 CPUs, without and
with ``secagg=True`` (SecAgg+ with the config's defaults: clipping range 8, 2**22 quantisation
levels, every client a neighbour, reconstruction threshold 0.6 of the shares, weight cap = the
largest silo's record count). Leave-last-out, full ranking, NDCG@10 of the model with users folded
in from history (as ``benchmarks/federated.py``: no refit, train only).

Reported per arm: wall seconds per round (median over rounds of the time between two round logs,
so Ray's start-up is left out; the whole fit time too), payload bytes per client per round up and
down (arrays and the bytes SecAgg+ sends in config records: keys, encrypted shares, masked table),
validation and test NDCG@10, and the largest |entry| of any round's aggregated table (what the
clipping range must cover). Timings on a shared 2-core machine are noisy: the load average is
printed with them.

    python benchmarks/federated_secagg.py [--seeds 0] [--rounds 20] [--out runs/federated_secagg]

Prints JSON and a Markdown table; writes ``federated_secagg.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.federated import FedMF, RoundLog
from lmrec.federated.cluster import ray_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from federated import SILO


def _ndcg(model: FedMF, split: Split, phase: str) -> float:
    return evaluate(model, split, ks=(10,), phase=phase, beyond_accuracy=False, auc=False).metrics["ndcg@10"]


def run(name: str, split: Split, seed: int, params: dict[str, Any], address: str) -> dict[str, Any]:
    model = FedMF(seed=seed, simulation_cpus=2, ray_address=address, **params)
    stamps: list[float] = []
    largest = [0.0]

    def on_round(r: RoundLog) -> None:
        stamps.append(time.perf_counter())
        print(
            f"  {name} seed {seed} round {r.round}: loss {r.loss:.4f} valid {r.valid_ndcg or 0:.4f} "
            f"up {r.bytes_up / max(r.clients, 1) / 1e3:.0f} kB/client",
            file=sys.stderr,
            flush=True,
        )

    def server_eval(server_round: int, items: np.ndarray) -> None:
        largest[0] = max(largest[0], float(np.abs(items).max()))

    started = time.perf_counter()
    load = os.getloadavg()[0]
    model.fit(split.train, valid=split.valid, on_round=on_round, server_eval=server_eval)
    fit_s = time.perf_counter() - started
    rounds = model.run_.rounds
    last = rounds[-1]
    per_round = np.diff(stamps)
    row = {
        "run": name,
        "seed": seed,
        "valid_ndcg@10": round(_ndcg(model, split, "valid"), 4),
        "test_ndcg@10": round(_ndcg(model, split, "test"), 4),
        "fit_seconds": round(fit_s, 1),
        "seconds_per_round_median": round(float(np.median(per_round)), 2) if len(per_round) else None,
        "bytes_up_per_client_round": last.bytes_up // max(last.clients, 1),
        "bytes_down_per_client_round": last.bytes_down // max(last.clients, 1),
        "max_abs_entry": round(largest[0], 3),
        "loadavg_1min_start": round(load, 2),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
        "rounds": [r.__dict__ for r in rounds],
    }
    print(
        f"{name} seed {seed}: valid {row['valid_ndcg@10']:.4f} test {row['test_ndcg@10']:.4f} "
        f"{row['seconds_per_round_median']} s/round, fit {fit_s:.0f} s, load {load:.1f}",
        file=sys.stderr,
        flush=True,
    )
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | seed | valid NDCG@10 | test NDCG@10 | s/round (median) | fit s | kB up/client/round "
        "| kB down/client/round | max abs entry | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['seed']} | {r['valid_ndcg@10']:.4f} | {r['test_ndcg@10']:.4f} "
            f"| {r['seconds_per_round_median']:.2f} | {r['fit_seconds']:.0f} "
            f"| {r['bytes_up_per_client_round'] / 1e3:.0f} | {r['bytes_down_per_client_round'] / 1e3:.0f} "
            f"| {r['max_abs_entry']:.2f} | {r['loadavg_1min_start']:.1f}-{r['loadavg_1min_end']:.1f} |"
        )
    return "\n".join(lines)


def secagg_arms(rounds: int) -> dict[str, dict[str, Any]]:
    """The silo run without and with SecAgg+. SecAgg+ has its clients evaluate every round (its
    workflow pairs each fit with an evaluation), so the plain arm does too: the silo run's
    ``evaluate_every`` (5) would make the rounds unlike and is refused with ``secagg``."""
    silo = {**SILO, "iterations": rounds, "evaluate_every": 1}
    return {"silo": silo, "silo + secagg": {**silo, "secagg": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--rounds", type=int, default=SILO["iterations"])
    ap.add_argument("--out", type=Path, default=Path("runs/federated_secagg"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    split = leave_last_out(load_dataset("ml-100k", data_dir=args.data_dir))
    arms = secagg_arms(args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = []
    with ray_cluster(cpus=2) as address:
        for seed in seeds:
            for name, params in arms.items():
                rows.append(run(name, split, seed, params, address))
                (args.out / "federated_secagg.partial.json").write_text(json.dumps(rows))
    report = {
        "runs": rows,
        "settings": arms,
        "seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
    }
    (args.out / "federated_secagg.json").write_text(json.dumps(report, indent=1))
    print(
        json.dumps(
            {**report, "runs": [{k: v for k, v in r.items() if k != "rounds"} for r in rows]}, indent=1
        )
    )
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
