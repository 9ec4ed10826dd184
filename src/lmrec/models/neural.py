"""What every neural lmrec model shares: ``fit`` with validation and callbacks, text, early stopping.

:class:`NeuralRecommender` is the base of two-tower, SASRec and BERT4Rec (and of models built on
them). It declares the widened ``fit`` once::

    fit(data, *, valid=None, callbacks=()) -> self

``valid`` is a frame of held-out interactions (``Split.valid``) that drives early stopping; without
it the config's ``val_fraction`` holds out users' last events from ``data``
(:func:`lmrec.data.split.split_validation`); with neither, training runs ``train.max_epochs``
epochs. ``callbacks`` are extra Lightning callbacks, run after the early-stopping one: after each
validation round ``trainer.callback_metrics["val_ndcg@10"]`` holds the metric, so a callback can
trace or prune (an exception it raises leaves ``fit`` unchanged). ``report_``
(:class:`~lmrec.nn.training.TrainingReport`) records what happened; ``report_.best_epoch`` is the
number of epochs behind the kept weights.

The skeleton, in order: seed; split off validation data; encode the item texts once
(:meth:`_item_text`, through the process-wide :func:`lmrec.text.encoder.shared_encoder` and the
on-disk cache); :meth:`_build` the network and the training batches (the subclass's part); train
with :func:`lmrec.nn.training.fit_module`, validating with full-ranking NDCG@10
(:func:`lmrec.evaluation.metrics.validation_metrics`) over the scores :meth:`_validation_scorer`
gives; :meth:`_finalise` the trained network for serving.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.split import ValidationData, split_validation
from lmrec.errors import LmrecError
from lmrec.evaluation.metrics import validation_metrics
from lmrec.models.base import EmbeddingRecommender
from lmrec.nn.training import RecLightningModule, TrainingReport, fit_module, seed_all
from lmrec.text.encoder import TextEncoder, shared_encoder

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback

__all__ = ["NeuralRecommender", "ScoreFn"]

#: ``score_fn(user_idx) -> (B, n_items)`` scores of the network in its current state
ScoreFn = Callable[[np.ndarray], np.ndarray]


class NeuralRecommender(EmbeddingRecommender):
    """Base of the Lightning-trained models (see the module docstring).

    Subclasses write :meth:`_build` and :meth:`_validation_scorer` (plus the usual
    ``query_vectors``/``item_vectors`` and persistence hooks); their config has ``train``
    (:class:`~lmrec.nn.training.NeuralTrainConfig`), ``val_fraction``, ``encoder``,
    ``encoder_device``, ``profile`` and ``cache_dir``.
    """

    config: Any

    def __init__(self, config: Any = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: RecLightningModule | None = None
        self.report_: TrainingReport | None = None
        #: the text model the item vectors came from (checked when text is encoded after loading)
        self.encoder_id_: str | None = None
        self.text_seconds_: float = 0.0

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        data: Dataset,
        *,
        valid: pl.DataFrame | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> Self:
        """Fit on ``data``; ``valid`` (held-out interactions, e.g. ``Split.valid``) drives early
        stopping and ``callbacks`` (Lightning) run after the early-stopping callback."""
        self._start_fit(data)
        self._train(data, valid, tuple(callbacks))
        return self

    def _fit(self, data: Dataset) -> None:
        self._train(data, None, ())

    def _train(self, data: Dataset, valid: pl.DataFrame | None, callbacks: Sequence[Callback]) -> None:
        cfg = self.config
        seed_all(cfg.train.seed)
        train, val_data = split_validation(data, valid, cfg.val_fraction, seed=cfg.train.seed)
        t0 = time.perf_counter()
        text = self._item_text(data)
        self.text_seconds_ = time.perf_counter() - t0
        net, loader = self._build(data, train, text)
        self.net = net
        val_cb = self._validator(train, val_data) if val_data is not None else None
        self.report_ = fit_module(net, loader, val_cb, cfg.train, callbacks=callbacks)
        self._finalise()

    @abstractmethod
    def _build(
        self, data: Dataset, train: Dataset, text: np.ndarray | None
    ) -> tuple[RecLightningModule, Any]:
        """The network and the training dataloader, from ``train`` (validation events removed).

        ``data`` is the whole fit data (its vocabularies size the item tables); ``text`` is
        :meth:`_item_text`'s result.
        """

    @abstractmethod
    def _validation_scorer(self, train: Dataset) -> Callable[[Any], ScoreFn]:
        """Called once per fit: returns ``round(net) -> score_fn``, called at every validation.

        ``score_fn(user_idx)`` scores every item for internal users, their ``train`` history as
        the query; seen items are masked and ranked by the shared path afterwards.
        """

    def _validator(self, train: Dataset, valid: ValidationData) -> Callable[[Any], float]:
        seen = train.csr("binary")
        scorer = self._validation_scorer(train)

        def val(net: Any) -> float:
            return validation_metrics(scorer(net), valid, seen, k=10)["ndcg@10"]

        return val

    def _finalise(self) -> None:
        """Make the trained network ready to serve (default: on CPU, in eval mode)."""
        assert self.net is not None
        self.net = self.net.cpu().eval()

    # ------------------------------------------------------------------ text
    def _item_text(self, data: Dataset) -> np.ndarray | None:
        """(n_items, text_dim) item profile vectors, or None when the model reads no text."""
        return self._encode_item_texts(data)

    def _text_encoder(self) -> TextEncoder:
        """The process-wide encoder of the config's ``encoder`` / ``encoder_device``."""
        return shared_encoder(self.config.encoder, self.config.encoder_device)

    @property
    def encoder(self) -> TextEncoder:
        """The text encoder, checked against the one the model was trained with."""
        enc = self._text_encoder()
        if self.encoder_id_ is not None and enc.model_id != self.encoder_id_:
            raise LmrecError(
                f"this {self.name} model was trained on text vectors from {self.encoder_id_!r} but the "
                f"encoder is {enc.model_id!r}; set encoder to the training model"
            )
        return enc

    def _item_profile_texts(self, data: Dataset) -> list[str]:
        from lmrec.text.profiles import build_item_texts

        return build_item_texts(data, self.config.profile)

    def _encode(
        self, texts: list[str], kind: str = "document", encoder: TextEncoder | None = None
    ) -> np.ndarray:
        """Encode ``texts`` (documents go through the on-disk cache ``cache_dir``; queries never)."""
        from lmrec.text.cache import cached_encode

        cache = self.config.cache_dir if kind == "document" else None
        enc = self.encoder if encoder is None else encoder
        return np.asarray(cached_encode(texts, enc, cache, kind=kind), dtype=np.float32)

    def _encode_item_texts(self, data: Dataset) -> np.ndarray:
        """Every item's profile text, encoded (cached); records which encoder made the vectors."""
        enc = self._text_encoder()
        vecs = self._encode(self._item_profile_texts(data), encoder=enc)
        self.encoder_id_ = enc.model_id
        return vecs
