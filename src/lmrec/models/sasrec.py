"""SASRec: causal self-attention over a user's behaviour sequence (Kang & McAuley, 2018).

The variant trained here is the strong one from Klenitskiy & Vasilev (2023, "Turning Dross Into Gold
Loss: is BERT4Rec really better than SASRec?"): at **every** position of every training sequence the
model predicts the next item with a **full softmax over the catalogue** (cross-entropy), instead of
the original paper's one sampled negative with binary cross-entropy. For catalogues too large for a
full softmax, ``loss="sampled_softmax"`` scores the positive against negatives shared by the
batch (``n_negatives`` uniform draws plus the targets of up to ``in_batch_negatives`` positions,
logQ-corrected; see :func:`lmrec.nn.losses.mixed_negatives`); the default ``loss="auto"`` switches to it above
:data:`lmrec.nn.losses.FULL_SOFTMAX_MAX_ITEMS` training items. ``loss="bce"`` is the original
recipe, kept as an ablation.

This module also holds :class:`SequentialRecommender`, the machinery SASRec and
:class:`~lmrec.models.bert4rec.BERT4Rec` share: the item representation (ID embedding, or the
language-model text vector of the item's profile, or both fused: :mod:`lmrec.nn.item_repr`; or ID
embeddings initialised from the text vectors' principal components, ``init_from_text``), the
transformer encoder and batching (:mod:`lmrec.nn.sequence`), the optional CL4SRec contrastive
auxiliary loss, the optional click-probability head (:mod:`lmrec.nn.click`), training on the shared
Lightning path (:func:`lmrec.nn.training.fit_module`: seeded, CPU/GPU, mixed precision, early
stopping on validation NDCG@10) and serving.

Serving: both models are :class:`~lmrec.models.base.EmbeddingRecommender` subclasses. A query
vector is the encoder's state at the newest position of the query's item sequence (a known user's
training sequence followed by any extra ``history``), so an unseen user is served from a history
without retraining, and a known user's new events count at once. Item vectors are the output item
representations (tied with the input embeddings), so top-k and the serving ANN index are the
shared ones. Items with no training interactions are represented by their text alone (``fusion``
other than ``"id_only"``); with ``fusion="text_only"`` every item is, so items never seen in
training are ranked like any other.

Validation (:class:`~lmrec.models.neural.NeuralRecommender`): ``fit(data, valid=split.valid,
callbacks=...)`` early-stops on the validation users' NDCG@10 (their training sequence as the query,
full ranking, training items excluded). Without ``valid``, ``val_fraction`` holds out the last event
of that fraction of users from ``data`` itself (see :func:`lmrec.data.split.split_validation`); with
neither, training runs ``train.max_epochs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor
from torch.utils.data import DataLoader, SequentialSampler

from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.image.cache import centred_item_pictures
from lmrec.models.base import ModelConfig, QueryBatch, QueryLike, as_queries
from lmrec.models.neural import NeuralRecommender, ScoreFn
from lmrec.nn.item_repr_config import FUSION_MODALITIES, check_modalities
from lmrec.nn.sequence import (
    AugmentationConfig,
    BucketBatchSampler,
    SequenceCollator,
    SequenceDataset,
    windows,
)
from lmrec.nn.sequence_net import SequenceNet
from lmrec.nn.training import NeuralTrainConfig, seed_all
from lmrec.text.profiles import ProfileConfig

__all__ = ["SASRec", "SASRecConfig", "SequenceNet", "SequentialConfig", "SequentialRecommender"]

_SASREC_TRAIN = NeuralTrainConfig(max_epochs=100, batch_size=64, lr=1e-3, patience=10)


class SequentialConfig(ModelConfig):
    """Hyperparameters shared by SASRec and BERT4Rec (each model sets its own defaults)."""

    #: hidden width of item vectors and of the transformer
    dim: int = Field(default=64, ge=4)
    #: newest items of a sequence the encoder reads (older ones are cut off at serving time;
    #: in training, long histories are cut into consecutive windows, so no event is wasted)
    max_len: int = Field(default=200, ge=2)
    n_blocks: int = Field(default=2, ge=1)
    n_heads: int = Field(default=1, ge=1)
    #: feed-forward width as a multiple of ``dim``
    ffn_mult: int = Field(default=1, ge=1)
    #: dropout on embeddings and residual branches
    dropout: float = Field(default=0.3, ge=0.0, lt=1.0)
    #: dropout on attention weights (costly on CPU; off by default)
    attn_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: "full_ce": softmax over every training item; "sampled_softmax": the positive against
    #: ``n_negatives`` uniform samples shared by the batch (large catalogues); "bce": one sampled
    #: negative per position with binary cross-entropy (the original SASRec loss); "auto": full_ce up
    #: to ``lmrec.nn.losses.FULL_SOFTMAX_MAX_ITEMS`` training items, sampled_softmax above
    loss: Literal["auto", "full_ce", "sampled_softmax", "bce"] = "auto"
    n_negatives: int = Field(default=256, ge=1)
    #: sampled_softmax: the targets of up to this many sampled positions per batch are negatives too
    #: (in-batch negatives, ~ training frequency; 0: none). 1024 as for two_tower, on ml-latest-small
    #: validation NDCG@10: 512 .0526 (3 seeds), 1024 .0595 (2 seeds), the full softmax .0617
    in_batch_negatives: int = Field(default=1024, ge=0)
    #: sampled_softmax: subtract each item's log sampling probability from its logit (logQ)
    logq_correction: bool = True
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: item representation: "id_only" (ID embeddings), "sum"/"gate" (ID fused with projected text),
    #: "text_only" (text alone: items never seen in training are ranked too)
    fusion: Literal["id_only", "sum", "gate", "text_only"] = "id_only"
    #: what an item vector is made of: any of "id", "text", "image" (the dataset's item pictures),
    #: fused by ``fusion`` ("sum" or "gate") over the parts each item *has* (the masked tower of
    #: :class:`~lmrec.nn.item_repr.ItemRepresentation`). None: the tower ``fusion`` names
    modalities: tuple[Literal["id", "text", "image"], ...] | None = None
    #: with ``modalities``: probability of dropping an item's text or picture part during training
    modality_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: picture model: None = the offline ImageNet MobileNetV2 (:mod:`lmrec.image`; any
    #: ``get_image_encoder`` name, e.g. "mobilenetv2+efficientnet-lite2"); "histogram" for the
    #: model-free one. Ignored when the dataset's pictures come as a feature matrix
    image_encoder: str | None = None
    #: probability of zeroing an item's ID part during training (the text path learns to carry it)
    id_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: hidden width of a 2-layer text projection (None: one linear layer)
    text_hidden: int | None = Field(default=None, ge=1)
    #: initialise the ID embeddings from the item text vectors (their top principal components), so
    #: items with similar profiles start close; with ``fusion="id_only"`` text is used for this only
    init_from_text: bool = False
    #: text model: None = the bundled offline all-MiniLM-L6-v2; a sentence-transformers name or
    #: local directory; "hashing" for the model-free test encoder
    encoder: str | None = None
    #: device for the text encoder (None: CUDA when present)
    encoder_device: str | None = None
    #: how item profile texts are built (title, genres, ...)
    profile: ProfileConfig = ProfileConfig()
    #: on-disk embedding cache directory for item texts (None: encode at every fit)
    cache_dir: str | None = None
    #: CL4SRec auxiliary loss: two augmented views of each sequence must agree
    contrastive: bool = False
    cl_weight: float = Field(default=0.1, ge=0.0)
    cl_temperature: float = Field(default=0.5, gt=0.0)
    augmentations: tuple[Literal["crop", "mask", "reorder"], ...] = ("crop", "mask", "reorder")
    crop_ratio: float = Field(default=0.6, gt=0.0, le=1.0)
    mask_ratio: float = Field(default=0.3, ge=0.0, lt=1.0)
    reorder_ratio: float = Field(default=0.3, ge=0.0, le=1.0)
    #: train a click-probability head (p(click | history, candidate)) beside the ranking objective
    click_head: bool = False
    click_negatives: int = Field(default=4, ge=1)
    click_hidden: int = Field(default=64, ge=1)
    click_weight: float = Field(default=1.0, ge=0.0)
    #: keep the click loss from changing the encoder (the head learns on top of it)
    click_detach: bool = True
    #: fraction of users whose last event is held out for early stopping when fit() gets no valid
    val_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    #: queries encoded per forward pass at serving time
    infer_batch_size: int = Field(default=256, ge=1)
    #: how training runs (epochs, batch, lr, device, precision, DDP, early stopping, seed, ...)
    train: NeuralTrainConfig = _SASREC_TRAIN

    #: the model's own training defaults a partial ``train`` table is merged into
    _train_defaults_: ClassVar[NeuralTrainConfig] = _SASREC_TRAIN

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults(cls, v: Any) -> Any:
        # a partial [model.train] table overrides this model's defaults, not NeuralTrainConfig's
        if isinstance(v, dict):
            return {**cls._train_defaults_.model_dump(), **v}
        return v

    @property
    def parts(self) -> tuple[str, ...]:
        """The modalities an item vector is made of (``modalities``, else what ``fusion`` implies)."""
        return self.modalities if self.modalities is not None else FUSION_MODALITIES[self.fusion]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.contrastive and not self.augmentations:
            raise ValueError("contrastive=True needs at least one of augmentations: crop, mask, reorder")
        check_modalities(self.modalities, self.fusion, self.modality_dropout)
        if self.init_from_text and "id" not in self.parts:
            raise ValueError(f"init_from_text initialises ID embeddings; {list(self.parts)} has none")
        if self.id_dropout and ("id" not in self.parts or len(self.parts) < 2):
            raise ValueError(
                f"id_dropout needs the ID fused with another part (fusion 'sum' or 'gate'), not {list(self.parts)}"
            )
        return self


class SASRecConfig(SequentialConfig):
    """SASRec hyperparameters (see :class:`SequentialConfig`).

    Width and dropout were chosen on validation NDCG@10 only (ml-100k leave-last-out, lr 1e-3,
    early stopping; ``benchmarks/sequence.py --tune sasrec``): width 64 with dropout 0.3 scored
    .1124 / .1126 on seeds 42 / 1 against .1042 / .1046 for width 128 with dropout 0.4, the earlier
    default, which had been read off test numbers. One head and a feed-forward net as wide as the
    model (the original SASRec shape) cost less on a CPU. ``lmrec tune`` re-derives them per dataset.
    """

    dim: int = Field(default=64, ge=4)
    dropout: float = Field(default=0.3, ge=0.0, lt=1.0)


# ---------------------------------------------------------------------------------------- recommender
class SequentialRecommender(NeuralRecommender):
    """What SASRec and BERT4Rec share: fitting, serving, persistence, text and click APIs.

    Overridable hooks: ``_item_text`` (item text vectors, or None), ``_collator`` (training
    batches), ``_training_windows`` (training sequences), ``_make_net`` (the network),
    ``_prepare`` (a query's index sequence), ``_get_extra``/``_set_state`` (persistence).
    """

    Config: ClassVar[type[ModelConfig]] = SequentialConfig
    config: SequentialConfig
    supports = frozenset({"user", "history"})
    #: SASRec: causal attention, next-item targets; BERT4Rec: bidirectional, masked items
    causal: ClassVar[bool] = True
    objective: ClassVar[Literal["next", "masked"]] = "next"

    def __init__(self, config: SequentialConfig | dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: SequenceNet | None = None
        self._item_vecs: np.ndarray | None = None
        #: the item tower's picture vectors and has-picture mask (``"image"`` in ``modalities``)
        self._pictures: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ fit
    def _item_text(self, data: Dataset) -> np.ndarray | None:
        if "text" not in self.config.parts and not self.config.init_from_text:
            return None
        return self._encode_item_texts(data)

    def _item_pictures(self, data: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
        """Centred unit picture vectors and the has-picture mask, as two_tower's (``"image"`` in
        ``modalities``), through the shared image encoder and on-disk cache."""
        if "image" not in self.config.parts:
            return None
        vecs, has, _center, _source = centred_item_pictures(
            data, self.config.image_encoder, self.config.cache_dir, model=self.name
        )
        return vecs, has

    def _collator(self) -> SequenceCollator:
        cfg = self.config
        aug = None
        if cfg.contrastive:
            aug = AugmentationConfig(
                kinds=tuple(cfg.augmentations),
                crop_ratio=cfg.crop_ratio,
                mask_ratio=cfg.mask_ratio,
                reorder_ratio=cfg.reorder_ratio,
            )
        return SequenceCollator(width=cfg.max_len, objective=self.objective, augment=aug)

    def _training_windows(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        # next-item windows carry one extra item: inputs w[:-1], targets w[1:]
        return windows(seqs, self.config.max_len + 1, min_len=2)

    def _make_net(self, n_items: int, text: np.ndarray | None, known: np.ndarray) -> SequenceNet:
        """The network (no text table without a text part; ``known``: items seen in training;
        pictures from :attr:`_pictures`)."""
        return SequenceNet(
            self.config,
            n_items,
            None if text is None or "text" not in self.config.parts else torch.from_numpy(text),
            torch.from_numpy(known),
            causal=self.causal,
            **self._picture_tensors(),
        )

    def _picture_tensors(self) -> dict[str, Tensor]:
        if self._pictures is None:
            return {}
        vecs, has = self._pictures
        return {"image": torch.from_numpy(vecs), "image_known": torch.from_numpy(has)}

    def _build(
        self, data: Dataset, train: Dataset, text: np.ndarray | None
    ) -> tuple[SequenceNet, DataLoader]:
        cfg = self.config
        known = np.zeros(data.n_items, dtype=bool)
        known[train.interactions["item_idx"].to_numpy()] = True
        wins = self._training_windows(train.sequences())
        if not wins:
            raise LmrecError(
                f"{self.name}: no user has two or more training interactions; nothing to learn from"
            )
        self._pictures = self._item_pictures(data)
        seed_all(cfg.train.seed)  # before building the net, so initial weights repeat
        net = self._make_net(data.n_items, text, known)
        net.set_item_frequency(np.bincount(train.interactions["item_idx"].to_numpy(), minlength=data.n_items))
        if cfg.init_from_text:
            assert text is not None
            net.init_ids_from_text(text)
        return net, self._loader(wins)

    def _loader(self, wins: list[np.ndarray]) -> DataLoader[Any]:
        """Length-bucketed batches of training windows, collated by :meth:`_collator`."""
        cfg = self.config
        dataset = SequenceDataset(wins)
        return DataLoader(
            dataset,
            # under DDP Lightning re-creates this sampler around a DistributedSampler of the dataset
            batch_sampler=BucketBatchSampler(
                SequentialSampler(dataset), cfg.train.batch_size, lengths=[len(w) for w in wins]
            ),
            collate_fn=self._collator(),
            num_workers=cfg.train.num_workers,
            persistent_workers=cfg.train.num_workers > 0,
        )

    def _validation_scorer(self, train: Dataset) -> Callable[[SequenceNet], ScoreFn]:
        prepared = [self._prepare(s) for s in train.sequences()]

        def round_scorer(net: SequenceNet) -> ScoreFn:
            # the weights changed: item vectors cached by a recommend() call (e.g. from a
            # callback during training) must be recomputed
            self._item_vecs = None
            items = net.item_table().float()

            def score(users: np.ndarray) -> np.ndarray:
                q = net.encode_queries([prepared[u] for u in users], self.config.infer_batch_size)
                return (q @ items.T).cpu().numpy()

            return score

        return round_scorer

    def _finalise(self) -> None:
        super()._finalise()
        self._item_vecs = None

    # ------------------------------------------------------------------ serving
    def _prepare(self, seq: np.ndarray) -> np.ndarray:
        """The index sequence the encoder reads for a query (SASRec: the newest ``max_len`` items)."""
        return np.asarray(seq, dtype=np.int64)[-self.config.max_len :]

    def _net(self) -> SequenceNet:
        self._check_fitted()
        if self.net is None:
            raise LmrecError(f"{type(self).__name__} has no network: fit() or load() it first")
        return self.net

    def item_vectors(self) -> np.ndarray:
        if self._item_vecs is None:
            net = self._net()
            with torch.no_grad():
                was = net.training
                net.eval()
                self._item_vecs = net.item_table().float().cpu().numpy().astype(np.float32)
                net.train(was)
        return self._item_vecs

    def _states(self, seqs: Sequence[np.ndarray]) -> Tensor:
        net = self._net()
        was = net.training
        net.eval()
        try:
            with torch.no_grad():
                return net.encode_queries([self._prepare(s) for s in seqs], self.config.infer_batch_size)
        finally:
            net.train(was)

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        return self._states(batch.sequences).cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------ click probabilities
    def click_probability(
        self, queries: QueryLike | Iterable[QueryLike], items: Sequence[Any] | Sequence[Sequence[Any]]
    ) -> np.ndarray:
        """p(click) of candidate items for each query, from the click head (``click_head=True``).

        ``items`` is either one list of external item ids scored for every query (result
        ``(n_queries, len(items))``) or one equally long list per query (result
        ``(n_queries, n_candidates)``).
        """
        net = self._net()
        if net.click is None:
            raise LmrecError(f"{type(self).__name__} was trained without a click head: set click_head=True")
        assert self.item_vocab is not None
        qs = as_queries(queries)
        per_query = (
            len(items) > 0
            and not isinstance(items[0], (str, bytes))
            and isinstance(items[0], Sequence | np.ndarray)
        )
        if per_query:
            if len(items) != len(qs):
                raise ValueError(f"{len(items)} candidate lists for {len(qs)} queries")
            rows = [self.item_vocab.indices(list(c)) for c in items]
            if len({len(r) for r in rows}) > 1:
                raise ValueError("every query needs the same number of candidates")
            idx = np.stack(rows) if rows else np.zeros((0, 0), np.int64)
        else:
            idx = np.broadcast_to(self.item_vocab.indices(list(items)), (len(qs), len(items)))
        batch = self.encode_queries(qs)
        states = self._states(batch.sequences)
        was = net.training
        net.eval()
        try:
            with torch.no_grad():
                cand = torch.from_numpy(np.array(idx, dtype=np.int64)).to(states.device)
                vecs = net.embed(cand)
                p = net.click.probability(states[:, None, :], vecs)
        finally:
            net.train(was)
        return p.cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        net = self._net()
        return {
            k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
            for k, v in net.state_dict().items()
        }

    def _get_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"encoder_id": self.encoder_id_}
        if self.report_ is not None:
            rep = self.report_
            extra["training"] = {
                "n_epochs": rep.n_epochs,
                "best_epoch": rep.best_epoch,
                "best_metric": rep.best_metric,
                "stopped_early": rep.stopped_early,
                "fit_seconds": rep.fit_seconds,
                "mean_epoch_seconds": rep.mean_epoch_seconds,
                "accelerator": rep.accelerator,
                "precision": rep.precision,
                "strategy": rep.strategy,
                "world_size": rep.world_size,
            }
        return extra

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        n_items = self.n_items
        known = np.asarray(tensors["items.id_known"], dtype=bool)[1 : n_items + 1]
        text = None
        if "items.text_table" in tensors:
            text = np.asarray(tensors["items.text_table"], dtype=np.float32)[1 : n_items + 1]
        self._pictures = None
        if "items.image_table" in tensors:  # the saved picture vectors: no image encoder needed
            self._pictures = (
                np.asarray(tensors["items.image_table"], dtype=np.float32)[1 : n_items + 1],
                np.asarray(tensors["items.image_known"], dtype=bool)[1 : n_items + 1],
            )
        net = self._make_net(n_items, text, known)
        state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
        net.load_state_dict(state)
        self.net = net.eval()
        self.encoder_id_ = extra.get("encoder_id")
        self._item_vecs = None


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation (see the module docstring)."""

    name = "sasrec"
    Config = SASRecConfig
    config: SASRecConfig
    causal = True
    objective = "next"
