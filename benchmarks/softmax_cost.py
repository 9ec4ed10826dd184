"""What one training step costs with a full vs a sampled softmax as the catalogue grows.

The evidence behind ``lmrec.nn.losses.FULL_SOFTMAX_MAX_ITEMS`` (the catalogue size above which
``loss="auto"`` trains two_tower and SASRec with a sampled softmax). For each catalogue size, a
two_tower and a SASRec network with their shipped defaults (batch, window, width; two_tower's item
tower fuses an ID with a 384-dim text vector as MiniLM gives) take ``--steps`` optimiser steps on
batches whose items follow a Zipf law, once with each loss. Reported: milliseconds per step and the
implied one-epoch time on 20M interactions (20M target positions / positions per step).

Run::

    python benchmarks/softmax_cost.py --items 2k 10k 27k 100k 1M --threads 2 --out runs/softmax_cost

Prints JSON, then a Markdown table; ``--out`` also writes ``softmax_cost.json``/``.md``/``.png``.
Step times are wall clock on a possibly shared machine: the JSON records the load average.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import parse_count

EPOCH_POSITIONS = 20_000_000


def _zipf_items(rng: np.random.Generator, n_items: int, shape: tuple[int, ...]) -> np.ndarray:
    """Item indices with popularity ~ 1 / rank (a power law like real catalogues)."""
    p = 1.0 / np.arange(1, n_items + 1)
    return rng.choice(n_items, size=shape, p=p / p.sum())


def _two_tower(n_items: int, loss: str, rng: np.random.Generator) -> tuple[Any, Any]:
    from lmrec.models.two_tower import TwoTowerConfig
    from lmrec.nn.two_tower import TwoTowerNet

    cfg = TwoTowerConfig(loss=loss)
    text = torch.randn(n_items, 384)
    net = TwoTowerNet(cfg, n_items, text, loss=loss)
    b, n = cfg.train.batch_size, cfg.max_len

    def batch() -> tuple[torch.Tensor, ...]:
        seq = torch.from_numpy(_zipf_items(rng, n_items, (b, n + 1)))
        return seq[:, :-1] + 1, seq[:, 1:], torch.arange(b)

    return net, batch


def _sasrec(n_items: int, loss: str, rng: np.random.Generator) -> tuple[Any, Any]:
    from lmrec.models.sasrec import SASRecConfig
    from lmrec.nn.sequence_net import SequenceNet

    cfg = SASRecConfig(loss=loss)
    net = SequenceNet(cfg, n_items, None, torch.ones(n_items, dtype=torch.bool), causal=True)
    b, n = cfg.train.batch_size, cfg.max_len

    def batch() -> dict[str, torch.Tensor]:
        seq = torch.from_numpy(_zipf_items(rng, n_items, (b, n + 1)))
        return {"inputs": seq[:, :-1], "targets": seq[:, 1:]}

    return net, batch


def time_steps(model: str, n_items: int, loss: str, steps: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net, make_batch = (_two_tower if model == "two_tower" else _sasrec)(n_items, loss, rng)
    net.train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    batches = [make_batch() for _ in range(steps + 2)]
    positions = int(
        np.prod(batches[0][1].shape if isinstance(batches[0], tuple) else batches[0]["targets"].shape)
    )
    times = []
    for i, bt in enumerate(batches):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        net.compute_loss(bt).backward()
        opt.step()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t0)
    ms = 1000 * float(np.median(times))
    return {
        "model": model,
        "n_items": n_items,
        "loss": loss,
        "ms_per_step": round(ms, 1),
        "positions_per_step": positions,
        "epoch_20M_min": round(EPOCH_POSITIONS / positions * ms / 1000 / 60, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", nargs="+", default=["2k", "10k", "27k", "100k"], type=parse_count)
    p.add_argument("--models", nargs="+", default=["two_tower", "sasrec"], choices=["two_tower", "sasrec"])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-full-items", type=parse_count, default=parse_count("300k"),
                   help="skip the full softmax above this many items (its logits no longer fit)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    full = {"two_tower": "full_softmax", "sasrec": "full_ce"}
    rows = []
    load = round(os.getloadavg()[0], 2)
    for model in args.models:
        for n in args.items:
            for loss in (full[model], "sampled_softmax"):
                if loss != "sampled_softmax" and n > args.max_full_items:
                    continue
                row = time_steps(model, n, loss, args.steps, args.seed)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    doc = {
        "benchmark": "softmax_cost",
        "settings": {"steps": args.steps, "threads": args.threads, "seed": args.seed},
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_before": load,
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
        "rows": rows,
    }
    lines = [
        "| model | items | loss | ms/step | positions/step | 20M-epoch min |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['n_items']:,} | {r['loss']} | {r['ms_per_step']} | "
                     f"{r['positions_per_step']:,} | {r['epoch_20M_min']} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(json.dumps(doc, indent=2))
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "softmax_cost.json").write_text(json.dumps(doc, indent=2) + "\n")
        (args.out / "softmax_cost.md").write_text(text)
        _plot(rows, args.out / "softmax_cost.png")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for key in dict.fromkeys((r["model"], r["loss"]) for r in rows):
        pts = sorted((r["n_items"], r["ms_per_step"]) for r in rows if (r["model"], r["loss"]) == key)
        ax.plot(*zip(*pts, strict=True), marker="o", label=f"{key[0]} {key[1]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the catalogue")
    ax.set_ylabel("ms per training step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
