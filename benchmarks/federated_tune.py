"""Validation-only tuning for benchmarks/federated.py: an in-process replica of the federation.

Each round runs the clients' own local update (:func:`lmrec.federated.local.local_update`, with
the user factors kept per client across rounds) and aggregates like Flower's FedAvg / FedAvgM
(record-weighted mean of the item tables; FedAvgM: ``V <- V - η (m <- μ m + (V - mean))``), with
client sampling for ``fraction < 1`` and record-level DP-SGD at a target ε (noise multiplier from
Opacus's accountant, per client, as in the simulation). No Ray, so a grid point costs seconds to
minutes instead of a Flower simulation's start-up. It reads validation NDCG@10 (users folded in)
only; it never evaluates on test.

    python benchmarks/federated_tune.py '[{"rounds": 40, "momentum": 0.9}, {"clients": 1, "partition": "hash"}]'

Keys (defaults): partition ("occupation"), clients (10), rounds (30), lr (0.003), epochs (1),
batch (256), server_lr (1), momentum (0), factors (32), seed (0), wd (0), eval_every (10),
eps (None: no DP), clip (1.0), fraction (1.0), tower (None: federated MF; "text_only" or "sum":
federated two-tower over the MiniLM item text, through the embedding cache), choose (False: validation
NDCG@10 at the fold-in λ 0.1; True: ``[at 0.1, at the λ FedMF.choose_fold_in picks, that λ]``). Prints
one JSON line per grid point.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import numpy as np
import torch

from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.federated import FedMF, FedMFConfig, FedTwoTower, client_data, partition_users
from lmrec.federated.accounting import client_noise
from lmrec.federated.local import LocalConfig, local_update
from lmrec.federated.tower import TowerLayout, centred, text_centre
from lmrec.text.cache import default_cache_dir
from lmrec.text.profiles import build_item_texts

_TEXT: dict[str, np.ndarray] = {}


def item_text(split: Split) -> np.ndarray:
    """The centred MiniLM item text vectors FedTwoTower trains on (encoded once, cached)."""
    if "ml" not in _TEXT:
        model = FedTwoTower(cache_dir=str(default_cache_dir()))
        raw = model._encode(build_item_texts(split.train, model.config.profile))
        _TEXT["ml"] = centred(raw, *text_centre(raw))
    return _TEXT["ml"]


def valid_ndcg(split: Split, items: np.ndarray, seed: int, choose: bool = False) -> float | list[float]:
    """Validation NDCG@10 with users folded in at λ 0.1; with ``choose``, also at the λ
    :meth:`FedMF.choose_fold_in` picks from its grid: ``[at 0.1, best, best λ]``."""
    model = FedMF(FedMFConfig(seed=seed))
    model._start_fit(split.train)
    model._set_items(items)
    if choose:
        scores = model.choose_fold_in(split)
        best = model.config.regularization
        return [round(scores[0.1], 4), round(scores[best], 4), best]
    return evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False).metrics[
        "ndcg@10"
    ]


def run(
    split: Split,
    partition: str = "occupation",
    clients: int = 10,
    rounds: int = 30,
    lr: float = 0.003,
    epochs: int = 1,
    batch: int = 256,
    server_lr: float = 1.0,
    momentum: float = 0.0,
    factors: int = 32,
    seed: int = 0,
    wd: float = 0.0,
    eval_every: int = 10,
    eps: float | None = None,
    clip: float = 1.0,
    fraction: float = 1.0,
    tower: str | None = None,
    choose: bool = False,
) -> list[tuple[int, float | list[float]]]:
    data = split.train
    spec: tuple[np.ndarray, TowerLayout] | None = None
    if tower is not None:
        text = item_text(split)
        spec = (text, TowerLayout(text.shape[1], data.n_items, factors, ids=tower == "sum"))
    inter = data.interactions
    cl = client_data(
        partition_users(data, partition, clients, seed=seed),
        inter["user_idx"].to_numpy().astype(np.int64),
        inter["item_idx"].to_numpy().astype(np.int64),
    )
    rng = np.random.default_rng(seed)
    items = (rng.standard_normal((data.n_items, factors + 1)) * 0.1).astype(np.float32)
    items[:, -1] = 0
    if spec is not None:
        items = spec[1].init(seed)
    users = [
        (np.random.default_rng([seed, k, 0xFED]).standard_normal((len(d.users), factors)) * 0.1).astype(
            np.float32
        )
        for k, d in enumerate(cl)
    ]
    local = LocalConfig(factors, lr, wd, epochs, batch, max_grad_norm=clip)
    noise = [0.0] * len(cl)
    if eps is not None:
        for k, d in enumerate(cl):
            noise[k] = client_noise(eps, 1 / data.n_users, d.n_records, batch, epochs * rounds)
    mom: np.ndarray | None = None
    out = []
    for r in range(1, rounds + 1):
        chosen = range(len(cl))
        if fraction < 1:
            chosen = sorted(
                np.random.default_rng([seed, r, 7]).choice(len(cl), int(len(cl) * fraction), replace=False)
            )
        tables, weights = [], []
        for k in chosen:
            d = cl[k]
            res = local_update(
                items,
                users[k],
                d.record_users,
                d.record_items,
                dataclasses.replace(local, noise_multiplier=noise[k]),
                np.random.default_rng([seed, k, r]),
                tower=spec,
            )
            users[k] = res.users
            tables.append(res.items)
            weights.append(d.n_records)
        w = np.asarray(weights, float)
        step = items - sum(wi * t for wi, t in zip(w, tables, strict=True)) / w.sum()
        if momentum > 0:
            mom = step if mom is None else momentum * mom + step
            step = mom
        items = (items - server_lr * step).astype(np.float32)
        if r % eval_every == 0 or r == rounds:
            table = items if spec is None else spec[1].table(items, spec[0])
            score = valid_ndcg(split, table, seed, choose)
            out.append((r, score if isinstance(score, list) else round(score, 4)))
    return out


def main() -> None:
    torch.set_num_threads(1)
    split = leave_last_out(load_dataset("ml-100k"))
    grid: list[dict[str, Any]] = json.loads(sys.argv[1])
    for params in grid:
        started = time.perf_counter()
        curve = run(split, **params)
        print(
            json.dumps({"params": params, "valid": curve, "sec": round(time.perf_counter() - started, 1)}),
            flush=True,
        )


if __name__ == "__main__":
    main()
