"""Federated BPR-MF or two-tower on ml-100k (issue 15): cross-silo, DP and cross-device against
central training.

Leave-last-out, full ranking; NDCG@10 of the saved artifact (user vectors folded in from history;
test queries carry the train + validation history). The fold-in's λ is chosen per run on validation
from ``lmrec.federated.model.FOLD_IN_GRID``, so the valid column is the best of that grid. No
refit: every model, central included, is trained on ``train`` only (a refit on train + validation
would change the federated and the central model alike). Per seed, all in Flower's simulation engine (``flwr.simulation.run_simulation``, Ray):

* ``central``: the same model trained centrally: one client holding every user (same code, same
  simulation), so the only difference is the federation.
* ``silo``: 10 clients, non-IID: whole occupations per silo (``partition="occupation"``).
* ``dp eps=E``: ``silo`` with record-level DP-SGD on each client (Opacus), target ε = E at
  δ = 1/943 over all rounds; ε from Opacus's RDP accountant (largest over clients). ``eps=inf`` is
  the ``silo`` run (no DP; with the silos' own rounds and local epochs, see ``SILO`` and ``DP``).
* ``device``: one client per user (943), 10% sampled per round (drawn from the seed and the round,
  ``lmrec.federated.engine.NodeSampler``), no client-side evaluation; every
  ``--device-eval`` rounds the simulation measures the aggregated item table (Flower's server-side
  ``evaluate_fn``: validation NDCG@10 with users folded in, a simulation-only measurement) and
  reports the first round that reaches 0.9x the central model's validation NDCG@10 (same measure).

``--model two_tower`` runs :class:`lmrec.federated.FedTwoTower` instead (the MiniLM item text
vectors through the embedding cache, a federated item tower, local user vectors) with the same
local training and strategies plus the tower settings in ``TOWER``; its central run is the same
model with one client.

Every setting below was chosen on validation NDCG@10 only (``benchmarks/federated_tune.py``, an
in-process replica of the same local update and the same FedAvg/FedAvgM arithmetic, no Ray); no
test number fed a choice. The grids and their validation numbers are in docs/federated.md.

    python benchmarks/federated.py [--model mf|two_tower] [--seeds 0,1,2] [--epsilons 1,2,4,8,inf]
                                   [--parts central,silo,dp,device] [--device-rounds 40] [--out runs/federated]

Prints JSON and a Markdown table; writes ``federated.json``, ``federated.png`` (validation NDCG@10
against rounds and against ε spent) and ``federated_epsilon.png`` (test NDCG@10 against ε).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.federated import FedMF, FedMFConfig, FedTwoTower, RoundLog
from lmrec.federated.cluster import ray_cluster
from lmrec.federated.report import plot_epsilon, plot_rounds
from lmrec.text.cache import default_cache_dir

#: local training shared by every run (central included); chosen on central validation NDCG@10.
#: ``evaluate_every``: the clients' own per-round validation NDCG@10 (only the curves in the run JSON
#: and the plot) every 5 rounds and in the last; it changes no model (the reported numbers are the
#: fold-in evaluations of the final table) and saves one message exchange per round
LOCAL: dict[str, Any] = {
    "factors": 32,
    "batch_size": 1024,
    "learning_rate": 0.006,
    "weight_decay": 1e-5,
    "evaluate_every": 5,
}
ROUNDS = 40
#: rounds (and local epochs) per run kind, chosen on the 3-seed mean of validation NDCG@10 at the
#: fold-in λ each run chooses (benchmarks/federated_tune.py with ``choose``; docs/federated.md):
#: central 40 / 50 / 60 rounds .0610 / .0647 / .0638 (every seed better at 50 than at 40); silos
#: 1 local epoch at 40 / 50 / 60 rounds .0600 / .0576 / .0592, 2 local epochs at 20 / 40 rounds
#: .0618 / .0601, server momentum 0.8 / 0.95 at 40 rounds .0602 / .0558
CENTRAL: dict[str, Any] = {**LOCAL, "clients": 1, "partition": "hash", "iterations": 50}
#: FedAvgM with server momentum 0.9 won on silo validation NDCG@10 (FedAvg with server lr 3/5/10 or
#: 2-10 local epochs were the alternatives; the same momentum made the one-client central model
#: worse); its 2 local epochs x 20 rounds are from the re-check above
SILO: dict[str, Any] = {
    **LOCAL,
    "clients": 10,
    "partition": "occupation",
    "iterations": 20,
    "local_epochs": 2,
    "strategy": "fedavgm",
    "server_momentum": 0.9,
}
#: record-level DP-SGD: larger Poisson batches and a smaller clipping norm, chosen at ε = 8 on
#: validation (batch 1024/2048/4096, clipping 0.1/0.3/1, lr 0.006/0.01, 20/40 rounds, with and
#: without server momentum). Clipping 0.1: at the fold-in λ each run chooses (FedMF.choose_fold_in),
#: seeds 0 / 1 / 2 reached .0420 / .0379 / .0445 against 0.3's .0386 / .0383 / .0418 and 1.0's
#: .0351 / .0388 / .0383 (at the fixed λ 0.1 the two were level, and 0.3 had been kept)
DP: dict[str, Any] = {
    **SILO,
    "iterations": ROUNDS,
    "local_epochs": 1,
    "batch_size": 4096,
    "max_grad_norm": 0.1,
}
#: cross-device: a client holds ~100 records, so small local batches and several local epochs; the
#: server step η = 10 makes up for sampling 10% of the clients (momentum 0.9 was worse here)
DEVICE: dict[str, Any] = {
    **LOCAL,
    "partition": "user",
    "fraction": 0.1,
    "batch_size": 64,
    "local_epochs": 5,
    "strategy": "fedavgm",
    "server_learning_rate": 10.0,
    # tuned without weight decay: Adam turns the decay of every row into a full step, which a
    # client's ~10 steps per round, times η = 10, make a large shrink of the whole table
    "weight_decay": 0.0,
}

#: cross-device rounds: validation NDCG@10 peaked at 40 (.0545) and was lower at 60 (.0503)
#: (benchmarks/federated_tune.py, seed 0; docs/federated.md)
DEVICE_ROUNDS = 40


#: ``--model two_tower``: the item tower, added to every run's settings (the text vectors come from
#: the shared embedding cache); chosen on validation NDCG@10 (benchmarks/federated_tune.py, seed 0;
#: docs/federated.md): the ID + text sum beat text only centrally and in the silos
TOWER: dict[str, Any] = {"fusion": "sum"}
#: per run kind, what differs for the two-tower model (chosen the same way). DP-SGD: clipping 1.0
#: beat FedMF's 0.3 at ε = 8 on all three seeds (valid NDCG@10 at the chosen fold-in λ, seeds
#: 0 / 1 / 2: .0472 / .0445 / .0479 against .0428 / .0431 / .0462); 0.1 and 3.0, lr 0.003 / 0.012,
#: 16 factors, batch 2048 / 8192 and no server momentum were no better on seed 0
#: Rounds and local epochs re-checked for the tower the same way as FedMF's (3-seed validation
#: means at the chosen fold-in λ): central 40 / 50 / 60 rounds .0619 / .0631 / .0618; silos 1 local
#: epoch at 40 / 60 rounds .0601 / .0570, 2 local epochs at 20 / 40 rounds .0602 / .0603.
TOWER_RUNS: dict[str, dict[str, Any]] = {
    "central": {"iterations": 50},
    "silo": {"iterations": ROUNDS, "local_epochs": 2},
    "dp": {"max_grad_norm": 1.0},
}
MODELS: dict[str, type[FedMF]] = {"mf": FedMF, "two_tower": FedTwoTower}


def _t95(n: int) -> float:
    return {1: math.nan, 2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(n, 1.96)


def ci(values: list[float]) -> dict[str, float]:
    """Mean and the half-width of a 95% t interval over seeds."""
    v = np.asarray(values, dtype=float)
    half = _t95(len(v)) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return {"mean": round(float(v.mean()), 4), "ci95": round(float(half), 4), "n": len(v)}


def _valid_ndcg(model: FedMF, split: Split) -> float:
    return evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False).metrics[
        "ndcg@10"
    ]


def run(
    name: str,
    split: Split,
    seed: int,
    params: dict[str, Any],
    device_eval: int = 0,
    ray_address: str | None = None,
    model_name: str = "mf",
) -> dict[str, Any]:
    started = time.perf_counter()
    if model_name == "two_tower":
        params = {**params, "cache_dir": str(default_cache_dir())}
    model = MODELS[model_name](seed=seed, simulation_cpus=2, ray_address=ray_address, **params)

    def server_eval(server_round: int, items: np.ndarray) -> float | None:
        if device_eval <= 0 or (server_round % device_eval and server_round != params["iterations"]):
            return None
        return _valid_ndcg(model.with_items(items), split)

    clients_valid = None if params.get("partition") == "user" else split.valid
    model.fit(split.train, valid=clients_valid, server_eval=server_eval if device_eval else None)
    fit_s = time.perf_counter() - started
    # the serving-time fold-in λ, per run on validation (the item table is fixed; FOLD_IN_GRID)
    fold_in = model.choose_fold_in(split)
    test = evaluate(model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    rounds: list[RoundLog] = model.run_.rounds
    last = rounds[-1]
    row = {
        "run": name,
        "seed": seed,
        "valid_ndcg@10": round(fold_in[model.config.regularization], 4),
        "fold_in_l2": model.config.regularization,
        "fold_in_valid": {str(k): round(v, 4) for k, v in fold_in.items()},
        "test_ndcg@10": round(test.metrics["ndcg@10"], 4),
        "epsilon": None if model.run_.epsilon is None else round(model.run_.epsilon, 3),
        "delta": model.run_.delta,
        "fit_seconds": round(fit_s, 1),
        # training messages only in the last round (device runs send no evaluation messages)
        "bytes_up_per_client_round": last.bytes_up // max(last.clients, 1),
        "bytes_down_per_client_round": last.bytes_down // max(last.clients, 1),
        "rounds": [r.__dict__ for r in rounds],
    }
    print(
        f"{name} seed {seed}: valid {row['valid_ndcg@10']:.4f} test {row['test_ndcg@10']:.4f} "
        f"fold-in λ {row['fold_in_l2']:g} "
        f"eps {row['epsilon']} fit {fit_s:.0f}s load {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
        flush=True,
    )
    return row


def plan_runs(
    parts: set[str],
    epsilons: list[float],
    device_rounds: int,
    rounds: int | None = None,
    model_name: str = "mf",
) -> list[tuple[str, dict[str, Any]]]:
    """The runs to make: (name, settings). The two-tower model's runs get ``TOWER`` and their kind's
    ``TOWER_RUNS`` on top of FedMF's; ``rounds`` (if given) then replaces every central, silo and DP
    run's own number of rounds."""

    def own(kind: str, base: dict[str, Any]) -> dict[str, Any]:
        return {**base, **TOWER, **TOWER_RUNS.get(kind, {})} if model_name == "two_tower" else dict(base)

    def settings(kind: str, base: dict[str, Any]) -> dict[str, Any]:
        out = own(kind, base)
        return out if rounds is None else {**out, "iterations": rounds}

    plan: list[tuple[str, dict[str, Any]]] = []
    if "central" in parts:
        plan.append(("central", settings("central", CENTRAL)))
    if "silo" in parts:
        plan.append(("silo", settings("silo", SILO)))
    if "dp" in parts:
        dp = settings("dp", DP)
        # ε = ∞ is the silo run itself (what a user gets without DP), added by main()
        for eps in (e for e in epsilons if not math.isinf(e)):
            plan.append((f"dp eps={eps:g}", {**dp, "dp": "record", "dp_epsilon": eps}))
    if "device" in parts:
        plan.append(("device", {**own("device", DEVICE), "iterations": device_rounds}))
    return plan


def summarise(plan: list[tuple[str, dict[str, Any]]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    central = {r["seed"]: r for r in rows if r["run"] == "central"}
    for name, _ in plan:
        mine = [r for r in rows if r["run"] == name]
        s: dict[str, Any] = {
            "valid_ndcg@10": ci([r["valid_ndcg@10"] for r in mine]),
            "test_ndcg@10": ci([r["test_ndcg@10"] for r in mine]),
            "epsilon": max((r["epsilon"] for r in mine if r["epsilon"] is not None), default=None),
            "bytes_up_per_client_round": mine[0]["bytes_up_per_client_round"],
            "bytes_down_per_client_round": mine[0]["bytes_down_per_client_round"],
            "fit_seconds": ci([r["fit_seconds"] for r in mine]),
        }
        if central and name != "central":
            ratios = [
                r["test_ndcg@10"] / central[r["seed"]]["test_ndcg@10"] for r in mine if r["seed"] in central
            ]
            s["test_ratio_to_central"] = ci(ratios)
            paired = [
                (r["valid_ndcg@10"], central[r["seed"]]["valid_ndcg@10"])
                for r in mine
                if r["seed"] in central
            ]
            s["valid_ratio_to_central"] = ci([v / c for v, c in paired])
        if name == "device" and central:
            reach = []
            # the server measures each round at the default fold-in λ: the central run's score at
            # that λ is the like-for-like goal (its valid column is the best λ of the grid)
            at_default = str(FedMFConfig().regularization)
            for r in mine:
                c = central[r["seed"]]
                goal = 0.9 * c.get("fold_in_valid", {}).get(at_default, c["valid_ndcg@10"])
                hit = [x["round"] for x in r["rounds"] if (x["server_ndcg"] or 0.0) >= goal]
                reach.append(hit[0] if hit else None)
            s["rounds_to_0.9x_central_valid"] = reach
        summary[name] = s
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| run | valid NDCG@10 | test NDCG@10 | test / central | ε (δ=1/943) | kB up/client/round | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        ratio = s.get("test_ratio_to_central")
        ratio_text = "" if ratio is None else f"{ratio['mean']:.3f} ± {ratio['ci95']:.3f}"
        eps = "∞" if s["epsilon"] is None else f"{s['epsilon']:.2f}"
        lines.append(
            f"| {name} | {s['valid_ndcg@10']['mean']:.4f} ± {s['valid_ndcg@10']['ci95']:.4f} "
            f"| {s['test_ndcg@10']['mean']:.4f} ± {s['test_ndcg@10']['ci95']:.4f} | {ratio_text} | {eps} "
            f"| {s['bytes_up_per_client_round'] / 1000:.0f} "
            f"| {s['fit_seconds']['mean']:.0f} |"
        )
    return "\n".join(lines)


def run_all(
    plan: list[tuple[str, dict[str, Any]]],
    split: Split,
    seeds: list[int],
    out: Path,
    device_eval: int,
    resume: bool = False,
    model_name: str = "mf",
) -> tuple[tuple[float, float, float], list[dict[str, Any]], float]:
    """Every (run, seed), each written to ``out/federated.partial.jsonl`` as it finishes; with
    ``resume``, the runs already there (same name and seed) are kept and not run again."""
    load_start = os.getloadavg()
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "federated.partial.jsonl"
    rows = (
        [json.loads(line) for line in partial.read_text().splitlines()] if resume and partial.exists() else []
    )
    done = {(r["run"], r["seed"]) for r in rows}
    partial.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # most important first, so that a run cut short still answers the first questions: central and
    # silos for every seed, then per seed the DP curve and the cross-device run
    first = [(n, p) for n, p in plan if n in ("central", "silo")]
    rest = [(n, p) for n, p in plan if n not in ("central", "silo")]
    order = [(n, p, s) for n, p in first for s in seeds] + [(n, p, s) for s in seeds for n, p in rest]
    # one Ray cluster (2 CPUs: two clients train at a time) for every simulation
    with ray_cluster(cpus=2) as address:
        for name, params, seed in order:
            if (name, seed) in done:
                continue
            row = run(name, split, seed, params, device_eval if name == "device" else 0, address, model_name)
            rows.append(row)
            with partial.open("a") as f:
                f.write(json.dumps(row) + "\n")
    total_s = time.perf_counter() - started
    return load_start, rows, total_s


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", choices=sorted(MODELS), default="mf", help="fed_mf or fed_two_tower")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epsilons", default="1,2,4,8,inf")
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of every central, silo and DP run (default: each kind's own, see CENTRAL/SILO/DP)",
    )
    ap.add_argument("--device-rounds", type=int, default=DEVICE_ROUNDS)
    ap.add_argument("--device-eval", type=int, default=5, help="server-side evaluation every N rounds")
    ap.add_argument("--parts", default="central,silo,dp,device")
    ap.add_argument("--out", type=Path, default=Path("runs/federated"))
    ap.add_argument("--resume", action="store_true", help="keep the runs in OUT/federated.partial.jsonl")
    ap.add_argument(
        "--summarise-only",
        action="store_true",
        help="no runs: summarise the runs already in OUT/federated.partial.jsonl (e.g. of a run cut short)",
    )
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    epsilons = [float(e) for e in args.epsilons.split(",")]
    plan = plan_runs(set(args.parts.split(",")), epsilons, args.device_rounds, args.rounds, args.model)
    split = leave_last_out(load_dataset("ml-100k", data_dir=args.data_dir))
    if args.summarise_only:
        rows = [json.loads(line) for line in (args.out / "federated.partial.jsonl").read_text().splitlines()]
        plan = [(n, p) for n, p in plan if any(r["run"] == n for r in rows)]
        load_start, total_s = None, sum(r["fit_seconds"] for r in rows)
    else:
        load_start, rows, total_s = run_all(
            plan, split, seeds, args.out, args.device_eval, args.resume, args.model
        )
    summary = summarise(plan, rows)
    if any(math.isinf(e) for e in epsilons) and "silo" in summary:
        summary["dp eps=inf"] = {**summary["silo"], "note": "the silo run: no DP"}
    curves = {
        f"{name} (seed {seeds[0]})": [RoundLog(**x) for x in r["rounds"]]
        for name, _ in plan
        for r in rows
        if r["run"] == name and r["seed"] == seeds[0]
    }
    plot = plot_rounds(curves, args.out / "federated.png")
    eps_points = {
        (math.inf if s["epsilon"] is None else float(name.split("=")[1])): s["test_ndcg@10"]
        for name, s in summary.items()
        if name.startswith("dp eps=")
    }
    central_test = summary.get("central", {}).get("test_ndcg@10", {}).get("mean")
    plots = [plot]
    if eps_points:  # no DP or silo run (e.g. --parts central,device): no ε curve to draw
        plots.append(plot_epsilon(eps_points, args.out / "federated_epsilon.png", central=central_test))
    report = {
        "summary": summary,
        "model": args.model,
        "settings": {"central": CENTRAL, "silo": SILO, "dp": DP, "device": DEVICE},
        "tower": {"all": TOWER, **TOWER_RUNS} if args.model == "two_tower" else None,
        "runs": rows,
        "seconds": round(total_s, 1),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "plots": [str(p) for p in plots],
    }
    (args.out / "federated.json").write_text(json.dumps(report, indent=1))
    print(
        json.dumps({k: report[k] for k in ("summary", "seconds", "loadavg_start", "loadavg_end")}, indent=1)
    )
    print()
    print(table(summary))


if __name__ == "__main__":
    main()
