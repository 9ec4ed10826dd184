"""Plots of a federated run: validation NDCG@10 against rounds and against the ε spent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lmrec._atomic import atomic_write
from lmrec.federated.server import RoundLog


def plot_rounds(runs: Mapping[str, Sequence[RoundLog]], path: Path, *, central: float | None = None) -> Path:
    """One PNG: validation NDCG@10 per round (left) and against ε so far (right, DP runs only).

    ``runs`` maps a label to a run's round log; ``central`` draws the centrally trained model's
    validation NDCG@10 as a dashed line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_round, by_eps) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, rounds in runs.items():
        # the clients' own measurement where they evaluate; else the simulation's server-side one
        pts = [(r.round, r.valid_ndcg) for r in rounds if r.valid_ndcg is not None]
        if not pts:
            pts = [(r.round, r.server_ndcg) for r in rounds if r.server_ndcg is not None]
            label = f"{label}, folded in"
        if pts:
            by_round.plot(*zip(*pts, strict=True), marker=".", label=label)
        eps = [(r.epsilon, r.valid_ndcg) for r in rounds if r.valid_ndcg is not None and r.epsilon]
        if eps:
            by_eps.plot(*zip(*eps, strict=True), marker=".", label=label)
    for ax in (by_round, by_eps):
        if central is not None:
            ax.axhline(central, ls="--", c="grey", label="central")
        ax.set_ylabel("validation NDCG@10")
        ax.grid(alpha=0.3)
    by_round.set_xlabel("round")
    by_eps.set_xlabel("ε spent (Opacus RDP accountant)")
    if not any(r.epsilon for rounds in runs.values() for r in rounds):
        by_eps.text(0.5, 0.5, "no DP run", ha="center", va="center", transform=by_eps.transAxes)
    by_round.legend(fontsize=8)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def plot_epsilon(
    points: Mapping[float, Mapping[str, float]], path: Path, *, central: float | None = None
) -> Path:
    """One PNG: test NDCG@10 (mean ± 95% CI half-width, keys ``mean``/``ci95``) against the target ε;
    ``inf`` (no DP) is drawn at the right edge, ``central`` as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = sorted(e for e in points if e != float("inf"))
    right = 2 * max(finite) if finite else 1.0
    xs = finite + ([right] if float("inf") in points else [])
    keys = finite + ([float("inf")] if float("inf") in points else [])
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.errorbar(
        xs,
        [points[k]["mean"] for k in keys],
        yerr=[0.0 if points[k]["ci95"] != points[k]["ci95"] else points[k]["ci95"] for k in keys],
        marker="o",
        capsize=3,
        label="10 silos, record-level DP",
    )
    if central is not None:
        ax.axhline(central, ls="--", c="grey", label="central")
        ax.axhline(0.75 * central, ls=":", c="grey", label="0.75x central")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{k:g}" if k != float("inf") else "∞" for k in keys])
    ax.set_xlabel("ε at δ = 1/users (Opacus RDP accountant)")
    ax.set_ylabel("test NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
