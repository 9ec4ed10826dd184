"""Contrastive two-tower retrieval: a text-fused item tower and a history-encoding user tower.

Item tower
    :class:`~lmrec.nn.item_repr.ItemRepresentation`: an ID embedding fused (``"sum"`` or
    ``"gate"``) with the frozen language-model embedding of the item's profile text (title, genres,
    ... built by :func:`lmrec.text.build_item_texts`, encoded once through the text cache) through a
    learned projection. ID dropout makes the text path carry an item on its own, and items with no
    training interactions are represented by text alone, so cold items get sensible vectors without
    retraining. ``fusion="id_only"`` is the ablation without text. Optionally (``lora_rank > 0``,
    meant for a GPU) the text encoder itself is fine-tuned with LoRA adapters (``peft``): item text
    vectors are then recomputed by the adapted encoder at the end of each epoch.

Pictures (``modalities``)
    ``modalities=["id", "text", "image"]`` (any non-empty subset) builds the masked item tower of
    :class:`~lmrec.nn.item_repr.ItemRepresentation`: the ID embedding, the projected text vector and
    the projected picture vector (the dataset's item pictures through the shared image encoder and
    on-disk cache, :mod:`lmrec.image`, centred on the catalogue's mean picture like the content
    model's) are fused by ``fusion`` ("sum", or "gate": a per-dimension softmax gate) over the parts
    an item *has*. An item without a picture, without text, or without a trained ID (a cold item)
    has that part masked out, not fused as a zero vector. ``modality_dropout`` drops the text and
    picture parts of items during training (the ID has ``id_dropout``), so the tower learns to place
    an item from whichever parts it has. Without ``modalities`` the ID + text tower named by
    ``fusion`` is unchanged. ``add_items`` places new catalogue items from their text and picture
    (an ``image`` column of files) without a refit.

User tower
    :class:`~lmrec.nn.towers.HistoryEncoder` over the representations of the user's most recent
    ``max_len`` items (recency-weighted pooling + MLP, or a small causal transformer), plus an
    optional projected profile text of the user's attributes. It has no user-ID table, so an unseen
    user is served from a history alone, and a known user's new events count immediately. A free-text
    query is appended to the history as a "virtual item" embedded by the text path only.

Training (the network and its batching: :mod:`lmrec.nn.two_tower`)
    Next-item prediction over the training sequences: every position of a history window predicts the
    item that followed it (one forward pass gives a training example per interaction). A share of
    the windows (``shuffle_prob``, default 0.2) is randomly reordered first, which mixes in a
    set-style objective ("which other items does this user take?") and makes the tower robust when
    histories carry no real order. The default is a starting point: choose it on validation data
    for each dataset (``lmrec tune``), never on test results. ``future_window > 1`` predicts a random one of the next few items instead. Both towers
    are L2-normalised and scores are cosine similarities over a learned (or fixed) temperature.
    ``loss="full_softmax"`` uses the whole training catalogue as negatives (exact; its cost grows
    with the catalogue); ``loss="sampled_softmax"`` is InfoNCE with in-batch negatives (the distinct
    positive items of up to ``in_batch_negatives`` sampled positions, logQ-corrected by their
    training frequency) plus ``n_negatives`` uniformly sampled items and optional hard negatives
    mined by text similarity (``hard_negatives``); a sampled step computes the item tower for the
    items it touches only, so its cost does not grow with the catalogue. The default ``"auto"``
    takes the full softmax up to :data:`lmrec.nn.losses.FULL_SOFTMAX_MAX_ITEMS` training items and
    the sampled one above (the threshold's measurements are in that constant's note). Training
    runs on the shared Lightning path (:func:`lmrec.nn.training.fit_module`): CPU or GPU, mixed
    precision on GPU, DDP by configuration, seeded, early stopping on validation NDCG@10 with the
    best weights restored.

Validation
    ``fit(data, valid=frame, callbacks=...)`` (:class:`~lmrec.models.neural.NeuralRecommender`)
    early-stops on the given held-out interactions (e.g. ``Split.valid``); ``fit(data)`` holds out
    the last interaction of ``val_fraction`` of the users from ``data`` itself (leak-free; those
    events still belong to the served history). ``val_fraction=0`` trains for ``train.max_epochs``
    without early stopping. The LoRA encoder lives in :mod:`lmrec.nn.lora`.

Inference goes through the shared :class:`~lmrec.models.base.EmbeddingRecommender` path
(``query_vectors`` and ``item_vectors`` ranked by :mod:`lmrec.ranking`: exact by default, a faiss
index with ``model.set_ranker(IndexRanker())`` for large catalogues).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError, LmrecError
from lmrec.image.cache import centred_item_pictures, centred_new_pictures
from lmrec.image.encoder import shared_image_encoder
from lmrec.models.base import QueryBatch, new_items_frame
from lmrec.models.neural import NeuralRecommender, ScoreFn
from lmrec.models.two_tower_config import TwoTowerConfig
from lmrec.nn.lora import LoraTextEncoder
from lmrec.nn.losses import log_frequency, resolve_loss
from lmrec.nn.two_tower import TwoTowerNet, left_pad, next_item_windows, text_neighbours
from lmrec.text.profiles import has_profile_text, item_texts_from_frame


class TwoTower(NeuralRecommender):
    """Contrastive two-tower recommender with language-model item text and, optionally, item
    pictures (see the module docstring)."""

    name = "two_tower"
    Config = TwoTowerConfig
    config: TwoTowerConfig
    supports = frozenset({"user", "history", "text"})

    def __init__(self, config: TwoTowerConfig | dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: TwoTowerNet | None = None
        self._item_vecs: np.ndarray | None = None
        self._lora_state: dict[str, np.ndarray] | None = None
        self._lora_encoder: LoraTextEncoder | None = None
        #: mean picture vector of the catalogue at fit time (new pictures are centred on it)
        self.image_center_ = np.zeros(0, np.float32)
        #: the picture model the item picture vectors came from (checked when new pictures come)
        self.image_encoder_id_: str | None = None
        if "text" not in self.config.parts:
            # no text path (``fusion="id_only"``, or modalities without "text"): free text has nowhere
            # to land, so the model does not list it (``lmrec serve``'s warm-up asks every kind listed)
            self.supports = frozenset({"user", "history"})  # type: ignore[misc]
            self.unsupported_reason = {"text": self._no_text_path()}

    def _no_text_path(self) -> str:
        return (
            f"this two_tower model has no text path (modalities {list(self.config.parts)}): "
            "it cannot serve text queries"
        )

    # ------------------------------------------------------------------ fit
    def _encoder_path(self) -> str:
        enc = self.encoder
        local = getattr(enc, "local_dir", None)
        path = str(local) if local is not None else getattr(enc, "name_or_path", None)
        if path is None:
            raise LmrecError(f"two_tower lora_rank > 0 needs a sentence-transformers encoder, not {enc!r}")
        return path

    def _item_text(self, data: Dataset) -> np.ndarray | None:
        if "text" not in self.config.parts:
            return None
        vecs = self._encode(self._item_profile_texts(data))
        self.encoder_id_ = self.encoder.model_id
        return vecs

    def _item_images(self, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Centred unit picture vectors, one row per item (zeros where none), and the has-picture
        mask, through the shared image encoder and the on-disk cache (as the content model)."""
        vecs, has, self.image_center_, self.image_encoder_id_ = centred_item_pictures(
            data, self.config.image_encoder, self.config.cache_dir, model="two_tower"
        )
        return vecs, has

    def _user_profiles(self, data: Dataset) -> np.ndarray | None:
        if not self.config.user_text or data.users is None:
            return None
        from lmrec.text.profiles import build_user_texts

        # attributes only (max_items=0): the history encoder already reads the items
        return self._encode(build_user_texts(data, max_items=0))

    def _build(
        self, data: Dataset, train: Dataset, text: np.ndarray | None
    ) -> tuple[TwoTowerNet, DataLoader]:
        cfg = self.config
        profiles = self._user_profiles(data)
        n_items = data.n_items
        counts = np.bincount(train.interactions["item_idx"].to_numpy(), minlength=n_items).astype(np.float64)
        known = counts > 0
        neighbours = None
        if cfg.hard_negatives and text is not None:
            neighbours = text_neighbours(text, known, cfg.hard_negative_pool)
        image = has_image = None
        self.image_center_, self.image_encoder_id_ = np.zeros(0, np.float32), None
        if "image" in cfg.parts:
            image, has_image = self._item_images(data)
        net = TwoTowerNet(
            cfg,
            n_items,
            None if text is None else torch.from_numpy(text),
            loss=resolve_loss(cfg.loss, int(known.sum()), full="full_softmax", sampled="sampled_softmax"),
            item_log_freq=log_frequency(counts),
            user_profiles=None if profiles is None else torch.from_numpy(profiles),
            text_neighbours=None if neighbours is None else torch.from_numpy(neighbours),
            image=None if image is None else torch.from_numpy(image),
            image_known=None if has_image is None else torch.from_numpy(has_image),
        )
        net.items.set_known_items(torch.from_numpy(known))
        net.train_items.copy_(torch.from_numpy(known))
        x, y, owners = next_item_windows(train.sequences(), cfg.max_len)
        loader = DataLoader(
            TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(owners)),
            batch_size=cfg.train.batch_size,
            shuffle=True,
            num_workers=cfg.train.num_workers,
            persistent_workers=cfg.train.num_workers > 0,
        )
        if cfg.lora_rank:
            net.text_encoder = LoraTextEncoder(
                self._encoder_path(), cfg.lora_rank, cfg.lora_alpha, self._item_profile_texts(data)
            )
        return net, loader

    def _validation_scorer(self, train: Dataset) -> Callable[[TwoTowerNet], ScoreFn]:
        tokens_all = left_pad(train.sequences(), self.config.max_len)

        def round_scorer(net: TwoTowerNet) -> ScoreFn:
            net.refresh_text()
            inputs = net._item_inputs()
            items_out = net.item_outputs(inputs)
            device = items_out.device

            def score(users: np.ndarray) -> np.ndarray:
                tok = torch.from_numpy(tokens_all[users]).to(device)
                u = torch.from_numpy(users).to(device)
                return (net.encode_users(tok, u, inputs) @ items_out.T).float().cpu().numpy()

            return score

        return round_scorer

    def _finalise(self) -> None:
        super()._finalise()
        assert self.net is not None
        self._lora_state = None
        if self.net.text_encoder is not None:
            # the restored best weights include that epoch's text buffer; re-encode with its adapters,
            # keep the small adapter tensors for text queries and drop the encoder copy from the net
            self.net.refresh_text()
            self._lora_state = self.net.text_encoder.adapter_state()
            self._lora_encoder = self.net.text_encoder.eval()
            self.net.text_encoder = None
        with torch.no_grad():
            self._inputs = self.net._item_inputs()
            self._item_vecs = self.net.item_outputs(self._inputs).numpy().astype(np.float32)

    # ------------------------------------------------------------------ inference
    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        assert self._item_vecs is not None
        return self._item_vecs

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        self._check_fitted()
        assert self.net is not None
        tokens = torch.from_numpy(left_pad(batch.sequences, self.config.max_len))
        users = torch.from_numpy(np.asarray(batch.user_idx, dtype=np.int64))
        extra = None
        if any(batch.texts):
            if "text" not in self.config.parts:
                raise LmrecError(self._no_text_path())
            rows = [i for i, t in enumerate(batch.texts) if t]
            texts = [batch.texts[i] or "" for i in rows]
            with torch.no_grad():
                if self._lora_state is not None:
                    vec_t = self._query_lora_encoder().encode_texts(texts)
                else:
                    vec_t = torch.from_numpy(self._encode(texts, kind="query"))
                proj = self.net.items.text_only(vec_t)
            extra = torch.full((len(batch), self.config.dim), float("nan"))
            extra[torch.as_tensor(rows)] = proj
        if self.net.user_profiles is not None and len(users):
            users = torch.where(users < self.net.user_profiles.shape[0], users, -1)
        with torch.no_grad():
            q = self.net.encode_users(tokens, users, self._inputs, extra)
        return q.numpy().astype(np.float32)

    def _query_lora_encoder(self) -> LoraTextEncoder:
        """The LoRA-adapted encoder for text queries (rebuilt from the saved adapters after load)."""
        if self._lora_encoder is None:
            assert self._lora_state is not None
            enc = LoraTextEncoder(self._encoder_path(), self.config.lora_rank, self.config.lora_alpha)
            enc.load_adapter_state(self._lora_state)
            self._lora_encoder = enc.eval()
        return self._lora_encoder

    def _text_vectors(self, texts: list[str]) -> np.ndarray:
        """Item profile texts as the item tower's raw text vectors (the LoRA encoder when tuned)."""
        if self._lora_state is not None:
            with torch.no_grad():
                return self._query_lora_encoder().encode_texts(texts).float().numpy()
        return self._encode(texts)

    # ------------------------------------------------------------------ catalogue updates
    def add_items(self, items: pl.DataFrame) -> None:
        """Add new catalogue items (or new content for known ones) without a refit.

        ``items`` needs ``item_id`` plus the profile's text columns (``title``, ``genres``, ...)
        and, for a model with the ``"image"`` modality, an optional ``image`` column of picture
        files (null: no picture). New ids are appended to the item vocabulary (existing indices
        never move). A new item has no trained ID, so the item tower places it from its text and
        picture alone; with ``modalities`` a part it lacks (no picture, or no text in any profile
        field) is masked out of the fusion, so an item with only a picture is recommendable at once.
        A known id keeps its ID part and gets the new text/picture.
        """
        self._check_fitted()
        assert self.net is not None and self.item_vocab is not None
        parts = self.config.parts
        if parts == ("id",):
            raise LmrecError(
                "this two_tower model places items by their trained ID only (fusion='id_only'): "
                "a new item has none; fit with a text or picture modality to add items"
            )
        items = new_items_frame(items, self.item_vocab)
        if items.height == 0:
            return
        if "text" not in parts and "image" not in items.columns:
            raise DataError(
                "new items need an 'image' column of picture files: this two_tower model reads no text",
                column="image",
            )
        ids = items["item_id"].to_list()
        vocab = self.item_vocab.extend(ids)
        idx = torch.from_numpy(vocab.indices(ids))
        content: dict[str, torch.Tensor] = {}
        if "text" in parts:
            content["text"] = torch.from_numpy(
                self._text_vectors(item_texts_from_frame(items, self.config.profile))
            )
            content["text_known"] = torch.from_numpy(has_profile_text(items, self.config.profile))
        if "image" in parts:
            files = items["image"].to_list() if "image" in items.columns else [None] * items.height
            vecs, has = self._new_pictures(files)
            content["image"], content["image_known"] = torch.from_numpy(vecs), torch.from_numpy(has)
        self.net.add_items(len(vocab) - len(self.item_vocab))
        self.net.items.set_content(idx, **content)
        self.item_vocab = vocab
        with torch.no_grad():
            self._inputs = self.net._item_inputs()
            self._item_vecs = self.net.item_outputs(self._inputs).numpy().astype(np.float32)
        self._history_csr = None  # its shape follows the catalogue

    def _new_pictures(self, files: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Centred unit picture vectors of new items' files and which rows have one (null: none)."""
        encoder = shared_image_encoder(self.config.image_encoder)
        return centred_new_pictures(
            files,
            encoder,
            self.config.cache_dir,
            self.image_center_,
            self.image_encoder_id_,
            model="two_tower",
        )

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        assert self.net is not None
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        assert self._item_vecs is not None
        state["item_vectors"] = self._item_vecs
        if self.image_center_.size:
            state["image_center"] = self.image_center_
        for k, v in (self._lora_state or {}).items():
            state[f"lora.{k}"] = v
        return state

    def _get_extra(self) -> dict[str, Any]:
        assert self.net is not None
        return {
            "n_items": self.net.n_items,
            "text_dim": self.net.items.text_dim,
            "profile_dim": 0 if self.net.user_profiles is None else int(self.net.user_profiles.shape[1]),
            "n_profiles": 0 if self.net.user_profiles is None else int(self.net.user_profiles.shape[0]),
            "encoder_model_id": self.encoder_id_,
            "image_dim": self.net.items.image_dim,
            "image_encoder_model_id": self.image_encoder_id_,
            "report": None if self.report_ is None else self.report_.to_dict(),
        }

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        n_items = int(extra["n_items"])
        text_dim = int(extra["text_dim"])
        text = torch.zeros(n_items, text_dim) if text_dim else None
        profiles = (
            torch.zeros(int(extra["n_profiles"]), int(extra["profile_dim"]))
            if extra.get("profile_dim")
            else None
        )
        image_dim = int(extra.get("image_dim") or 0)
        net = TwoTowerNet(
            self.config,
            n_items,
            text,
            user_profiles=profiles,
            image=torch.zeros(n_items, image_dim) if image_dim else None,
        )
        state = {
            k.removeprefix("net."): torch.from_numpy(np.array(v))
            for k, v in tensors.items()
            if k.startswith("net.")
        }
        missing, unexpected = net.load_state_dict(state, strict=False)
        allowed_missing = {"item_log_freq", "text_neighbours"}
        if unexpected or set(missing) - allowed_missing:
            raise LmrecError(
                f"two_tower: saved state does not match the config (missing {missing}, unexpected {unexpected})"
            )
        self.net = net.eval()
        self.encoder_id_ = extra.get("encoder_model_id")
        self.image_encoder_id_ = extra.get("image_encoder_model_id")
        self.image_center_ = np.asarray(tensors.get("image_center", np.zeros(0, np.float32)), np.float32)
        self._item_vecs = np.ascontiguousarray(tensors["item_vectors"], dtype=np.float32)
        # the text buffer already holds the fine-tuned item vectors; adapters serve text queries
        lora = {k.removeprefix("lora."): v for k, v in tensors.items() if k.startswith("lora.")}
        self._lora_state = lora or None
        self._lora_encoder = None
        with torch.no_grad():
            self._inputs = self.net._item_inputs()
