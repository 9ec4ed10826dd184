"""``fed_mf``: BPR matrix factorisation trained by federated learning, served like any lmrec model.

``fit`` partitions the users over simulated clients (:func:`lmrec.federated.partition_users`) and
runs Flower's simulation engine (:func:`lmrec.federated.simulation.simulate`): the item factors are
global and aggregated by a Flower strategy, the user factors live on the clients and never leave
them (FCF). What comes back is only the item table, in implicit's BPR layout, so the model *is* a
:class:`lmrec.models.mf.BPR`: at serving time a user's vector is folded in from the history the
query carries (BPR's Newton fold-in), and ``save``/``load``, ``lmrec evaluate`` and ``lmrec serve``
work unchanged.

Two things a deployment would do differently from this simulation, stated so nobody is surprised:
the artifact stores the training histories like every lmrec model (so known user ids can be
queried; a deployment would send the history with the query instead), and the popularity fallback
for an empty history uses the learnt item biases, not counts the server never sees.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Self

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.federated.clients import client_data
from lmrec.federated.config import FedMFConfig
from lmrec.federated.partition import partition_users
from lmrec.federated.server import FederatedRun, RoundLog
from lmrec.federated.simulation import simulate
from lmrec.models.mf import BPR


class FedMF(BPR):
    """Federated BPR-MF (Flower + Opacus); see the module docstring."""

    name = "fed_mf"
    Config = FedMFConfig  # type: ignore[assignment]  # a BPRConfig subclass: BPR reads its fields
    config: FedMFConfig

    def fit(
        self,
        data: Dataset,
        *,
        valid: pl.DataFrame | None = None,
        on_round: Callable[[RoundLog], None] | None = None,
        keep_messages: bool = False,
        server_eval: Callable[[int, np.ndarray], float | None] | None = None,
    ) -> Self:
        """Train by simulated federated learning on ``data``.

        ``valid`` (held-out interactions with ``user_idx``/``item_idx``, e.g. ``Split.valid``) gives
        each client validation targets for its own users: the clients report NDCG@10 every round.
        ``on_round`` receives each round's :class:`RoundLog`; ``keep_messages`` keeps every message
        the server received in ``self.run_.received`` (for inspection). ``server_eval(round, items)``
        measures each round's aggregated item table (simulation only; see :func:`simulate`).
        """
        self._start_fit(data)
        self._on_round = on_round
        self._keep = keep_messages
        self._valid = valid
        self._server_eval = server_eval
        try:
            self._fit(data)
        finally:
            self._on_round, self._valid, self._server_eval = None, None, None
        return self

    def _fit(self, data: Dataset) -> None:
        c = self.config
        owner = partition_users(data, c.partition, c.clients, seed=c.seed)
        inter = data.interactions
        valid = getattr(self, "_valid", None)
        clients = client_data(
            owner,
            inter["user_idx"].to_numpy().astype(np.int64),
            inter["item_idx"].to_numpy().astype(np.int64),
            None if valid is None else valid["user_idx"].to_numpy().astype(np.int64),
            None if valid is None else valid["item_idx"].to_numpy().astype(np.int64),
        )
        self.run_: FederatedRun = simulate(
            clients,
            data.n_items,
            data.n_users,
            c,
            on_round=getattr(self, "_on_round", None),
            keep_messages=getattr(self, "_keep", False),
            server_eval=getattr(self, "_server_eval", None),
        )
        self._set_items(self.run_.items)

    def with_items(self, items: np.ndarray) -> FedMF:
        """A copy of this fitted model serving ``items`` instead (e.g. one round's item table)."""
        other = copy.copy(self)
        other._set_items(items)
        return other

    def _set_items(self, items: np.ndarray) -> None:
        self.item_factors_ = np.ascontiguousarray(items, dtype=np.float32)
        # the fallback for an empty history: the learnt item bias, a function of the (possibly
        # DP) item table only; item counts are exactly what the server must not see
        self.popularity_ = self.item_factors_[:, -1].copy()

    def _get_extra(self) -> dict[str, Any]:
        run = getattr(self, "run_", None)
        if run is None:
            return dict(getattr(self, "_saved_run", {}))
        return {
            "epsilon": run.epsilon,
            "delta": run.delta,
            "rounds": [r.__dict__ for r in run.rounds],
        }

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self._set_items(tensors["item_factors"])
        self._saved_run = dict(extra)
