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
        pts = [(r.round, r.valid_ndcg) for r in rounds if r.valid_ndcg is not None]
        if pts:
            by_round.plot(*zip(*pts, strict=True), marker=".", label=label)
        eps = [(r.epsilon, r.valid_ndcg) for r in rounds if r.valid_ndcg is not None and r.epsilon]
        if eps:
            by_eps.plot(*zip(*eps, strict=True), marker=".", label=label)
    for ax in (by_round, by_eps):
        if central is not None:
            ax.axhline(central, ls="--", c="grey", label="central")
        ax.set_ylabel("validation NDCG@10 (clients' own factors)")
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
