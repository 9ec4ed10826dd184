"""``fed_mf`` and ``fed_two_tower``: BPR matrix factorisation, and a two-tower model whose item
tower reads the public item text, trained by federated learning and served like any lmrec model.

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

The fold-in's ridge λ (``regularization``) is a serving-time setting: :meth:`FedMF.choose_fold_in`
picks it on a split's validation phase after training (``lmrec federate`` and the benchmark do). In
the simulation the driver holds the validation items; a deployment would have each client score the
few λ on its own users and report the NDCG only, like the clients' validation NDCG every round.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Self

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.split import Split
from lmrec.errors import LmrecError
from lmrec.federated.clients import client_data
from lmrec.federated.config import FedMFConfig, FedTwoTowerConfig
from lmrec.federated.partition import partition_users
from lmrec.federated.server import FederatedRun, RoundLog
from lmrec.federated.simulation import simulate
from lmrec.federated.tower import centred, project, text_centre
from lmrec.models.base import new_items_frame
from lmrec.models.mf import BPR
from lmrec.text.cache import cached_encode
from lmrec.text.encoder import TextEncoder, shared_encoder
from lmrec.text.profiles import build_item_texts, item_texts_from_frame

#: the fold-in λ :meth:`FedMF.choose_fold_in` tries: central and silo runs on ml-100k chose 0.01-0.03,
#: DP-SGD runs (noisier tables) 0.1 (validation, benchmarks/federated_tune.py; docs/federated.md)
FOLD_IN_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)


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
            text=self._simulate_text(),
        )
        self._set_items(self.run_.items)

    def _simulate_text(self) -> np.ndarray | None:
        """Public item text vectors for the simulation (two-tower); FedMF reads none."""
        return None

    def choose_fold_in(self, split: Split, grid: tuple[float, ...] = FOLD_IN_GRID) -> dict[float, float]:
        """Set the fold-in λ to the value in ``grid`` with the best validation NDCG@10 (``split``'s
        ``valid`` phase, users folded in from their training history; the first of equals wins) and
        return every λ's score. The item table is not touched: only how a user's vector is fitted
        to it at query time. The test phase is never read."""
        from lmrec.evaluation import evaluate

        if split.valid is None or not split.valid.height:
            raise LmrecError("choose_fold_in needs a split with validation interactions")
        if not grid:
            raise LmrecError("choose_fold_in needs at least one λ in grid")
        original = self.config
        scores: dict[float, float] = {}
        try:
            for lam in grid:
                self.config = original.model_validate({**original.model_dump(), "regularization": lam})
                res = evaluate(self, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
                scores[lam] = float(res.metrics["ndcg@10"])
        except BaseException:
            self.config = original  # a failed or interrupted search leaves the model as it was
            raise
        best = max(grid, key=lambda lam: scores[lam])
        self.config = original.model_validate({**original.model_dump(), "regularization": best})
        return scores

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


class FedTwoTower(FedMF):
    """Federated two-tower: a shared text item tower, local user vectors (Flower + Opacus).

    Item text is public, so every item's profile text is encoded once, centrally, by the frozen
    language model (the shared encoder and the ``cache_dir`` embedding cache, as the other text
    models) and every client gets the same vectors. The trainable item side (a projection of the
    text vector, plus an ID embedding per item with ``fusion="sum"``; :mod:`lmrec.federated.tower`)
    is global and aggregated by the Flower strategy; the user vectors stay on the clients and are
    never sent (FCF, as :class:`FedMF`). The result is served like FedMF: the item table the tower
    computes is a BPR item table and a user's vector is folded in from the history the query
    carries. Items without training interactions are scored through their text; ``add_items``
    places new catalogue items the same way, without a refit.

    What the clients receive besides the federated parameters is the public text matrix only; the
    server receives the federated parameters and the few metrics FedMF's clients send.
    """

    name = "fed_two_tower"
    Config = FedTwoTowerConfig  # type: ignore[assignment]  # a BPRConfig subclass: BPR reads its fields
    config: FedTwoTowerConfig

    def __init__(self, config: FedTwoTowerConfig | dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        #: the fitted tower: projection ``P`` ((text_dim + 1) x (factors + 1), bias row last)
        self.projection_ = np.zeros((0, 0), np.float32)
        #: the centred item text vectors (one row per item) the tower read
        self.item_text_ = np.zeros((0, 0), np.float32)
        #: the catalogue's mean text vector and centred norm at fit time (new items use them)
        self.text_centre_ = np.zeros(0, np.float32)
        self.text_scale_ = 1.0
        self.encoder_id_: str | None = None

    def _encoder(self) -> TextEncoder:
        """The process-wide encoder of the config, checked against the one the model was fit with."""
        enc = shared_encoder(self.config.encoder, self.config.encoder_device)
        if self.encoder_id_ is not None and enc.model_id != self.encoder_id_:
            raise LmrecError(
                f"this fed_two_tower model was trained on text vectors from {self.encoder_id_!r} but the "
                f"encoder is {enc.model_id!r}; set encoder to the training model"
            )
        return enc

    def _encode(self, texts: list[str]) -> np.ndarray:
        enc = self._encoder()
        vecs = np.asarray(cached_encode(texts, enc, self.config.cache_dir), dtype=np.float32)
        self.encoder_id_ = enc.model_id
        return vecs

    def _fit(self, data: Dataset) -> None:
        raw = self._encode(build_item_texts(data, self.config.profile))
        self.text_centre_, self.text_scale_ = text_centre(raw)
        self.item_text_ = centred(raw, self.text_centre_, self.text_scale_)
        super()._fit(data)
        assert self.run_.shared is not None
        self.projection_ = np.ascontiguousarray(self.run_.shared[: self.item_text_.shape[1] + 1])

    def _simulate_text(self) -> np.ndarray | None:
        return self.item_text_

    def add_items(self, items: pl.DataFrame) -> None:
        """Add new catalogue items (or new text for known ones) without a refit.

        ``items`` needs ``item_id`` plus the profile's text columns (``title``, ``genres``, ...). New
        ids are appended to the item vocabulary (existing indices never move) and placed by the
        trained projection of their text alone (they have no ID part); a known id keeps its ID part
        and gets the new text's projection.
        """
        self._check_fitted()
        assert self.item_vocab is not None
        items = new_items_frame(items, self.item_vocab)
        if items.height == 0:
            return
        ids = items["item_id"].to_list()
        text = centred(
            self._encode(item_texts_from_frame(items, self.config.profile)),
            self.text_centre_,
            self.text_scale_,
        )
        vocab = self.item_vocab.extend(ids)
        rows = vocab.indices(ids)
        n_old = len(self.item_vocab)
        table = np.zeros((len(vocab), self.item_factors_.shape[1]), np.float32)
        table[:n_old] = self.item_factors_
        all_text = np.zeros((len(vocab), self.item_text_.shape[1]), np.float32)
        all_text[:n_old] = self.item_text_
        # a known item keeps its ID part (its row minus its old text's projection); a new one has none
        old = project(all_text[rows], self.projection_)
        old[rows >= n_old] = 0.0
        table[rows] += project(text, self.projection_) - old
        all_text[rows] = text
        self.item_text_ = all_text
        self.item_vocab = vocab
        self._set_items(table)
        self._history_csr = None  # its shape follows the catalogue

    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            **super()._get_state(),
            "projection": self.projection_,
            "item_text": self.item_text_,
            "text_centre": self.text_centre_,
        }

    def _get_extra(self) -> dict[str, Any]:
        return {**super()._get_extra(), "encoder_model_id": self.encoder_id_, "text_scale": self.text_scale_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        extra = dict(extra)
        self.encoder_id_ = extra.pop("encoder_model_id", None)
        self.text_scale_ = float(extra.pop("text_scale", 1.0))
        self.projection_ = np.asarray(tensors["projection"], np.float32)
        self.item_text_ = np.asarray(tensors["item_text"], np.float32)
        self.text_centre_ = np.asarray(tensors["text_centre"], np.float32)
        super()._set_state(tensors, extra)
