"""Content-based recommendation with a pretrained text encoder (zero-shot cold start).

Every item in the vocabulary, including catalogue items nobody has interacted with, gets a vector:
the encoded text of its profile (title, genres, tags, review snippets, ...; see
:mod:`lmrec.text.profiles`). A query becomes a vector in the same space:

* a user (known id, or an unseen user's history): the recency-weighted mean of the vectors of the
  items in the history, most recent items weighing most (exponential decay with a half-life counted
  in interactions, because timestamps are not comparable across users and catalogues);
* free text ("animated movie for young kids"): the encoded text;
* both: a blend, ``(1 - text_weight) * user + text_weight * text``, each part unit-normalised first.

Sentence encoders are anisotropic: all their vectors share a large common direction, so raw cosine
similarities between items of one catalogue sit in a narrow band and that shared direction dominates
a user's mean vector. With ``center=True`` (default) the catalogue's mean vector is subtracted from
every item, user and query vector before normalising, which leaves the directions that tell items
apart; on ml-latest-small's cold-item split this more than doubled cold-item NDCG@10 (0.083 -> 0.189,
mean of 3 seeds, benchmarks/cold_start.py). The mean is taken over the fitted catalogue's text
vectors (no interaction data) and fixed at fit time, so vectors added later stay comparable.

Recency decay (``recency_half_life``) suits sessions and drifting tastes; on a random cold-item split,
which has no time structure, switching it off scored slightly higher (NDCG@10 0.207 vs 0.189).

Pictures (``modalities``): with ``("image",)`` the item vectors are the item pictures' vectors
(:mod:`lmrec.image`: the offline ImageNet MobileNetV2 by default, through the same on-disk cache),
centred the same way; with ``("text", "image")`` an item's vector is the concatenation
``[sqrt(1 - w) * text, sqrt(w) * image]`` (``w = image_weight``), each part unit length, so the
cosine with a user's vector is ``(1 - w) * text cosine + w * picture cosine``: a late fusion that
keeps the model one embedding table (the ANN index serves it unchanged). An item with no usable
picture has a zero picture part: it is scored on its text alone. The picture model shares no space
with text, so a free-text query is scored on the text part only (and refused by a pictures-only
model).

Collaborative projection (``cf_projection``, the CB2CF idea; :mod:`lmrec.models.cf_projection`):
content cosine says which items *look* alike, not which items the same people take. With
``cf_projection=True`` the model also learns, on the warm items only (those with training
interactions), where an item's content vector (text, picture or both, as above) puts it among the
item factors of a truncated SVD of the binarised training interactions (``projection_factors`` of
them): by a ridge regression (``projection_method="ridge"``) or as the softmax-weighted mean of its
nearest warm items' factors (``"knn"``). Every item's vector becomes its *mapped* content vector,
so a cold item lands where warm items that look like it sit in the collaborative space; a query is
the SVD fold-in of its history, so a score is the SVD's predicted affinity with the mapped item.
Scores are then unnormalised dot products (the predicted popularity an item's look implies is part
of them). Free-text queries are refused in this mode (the text lands in the content space, not the
collaborative one); ``add_items`` maps new items' content vectors through the same map. On
ml-100k-posters' cold items the projection lifts picture-only and text NDCG@10 (docs/multimodal.md).

Scores are cosine similarities (all vectors unit length), so the model is an
:class:`~lmrec.models.base.EmbeddingRecommender` and the serving layer's ANN index serves it like
any other embedding model. Nothing is learned from interactions: fitting only encodes the item
profiles (through the on-disk embedding cache when ``cache_dir`` is set), which is why an item never
seen in training is as servable as a popular one, and why popularity-heavy metrics favour CF models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError, LmrecError
from lmrec.image.cache import centred_item_pictures, centred_new_pictures
from lmrec.image.encoder import ImageEncoder, shared_image_encoder
from lmrec.models.base import EmbeddingRecommender, QueryBatch, new_items_frame
from lmrec.models.cf_projection import CFProjection
from lmrec.models.content_config import ContentConfig
from lmrec.models.recency import recency_mean
from lmrec.text.cache import EmbeddingCache, cached_encode
from lmrec.text.encoder import TextEncoder, l2_normalize, shared_encoder
from lmrec.text.keywords import keyword_map, review_keywords
from lmrec.text.profiles import (
    build_item_texts,
    has_profile_text,
    item_texts_from_frame,
    query_text,
)


class ContentRecommender(EmbeddingRecommender):
    """Cosine similarity between a query vector and encoded item profiles.

    Serves known users, unseen users' histories, free-text queries and mixes of them, over every item
    in the vocabulary (cold items included). ``add_items`` encodes new catalogue items without
    refitting. ``text_encoder`` injects an already built :class:`~lmrec.text.encoder.TextEncoder` (it
    must be the model ``config.encoder`` names, so that a saved model can rebuild it).
    """

    name = "content"
    Config = ContentConfig
    config: ContentConfig
    supports = frozenset({"user", "history", "text"})

    def __init__(
        self,
        config: ContentConfig | Mapping[str, Any] | None = None,
        *,
        text_encoder: TextEncoder | None = None,
        picture_encoder: ImageEncoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        mods = self.config.modalities
        if not mods or len(set(mods)) != len(mods):
            raise LmrecError(f"modalities={mods!r}: give 'text', 'image' or both, once each")
        self._encoder = text_encoder
        self._image_encoder = picture_encoder
        #: mean picture vector of the catalogue at fit time (empty without the image modality)
        self.image_center_ = np.zeros(0, np.float32)
        self.image_encoder_id_: str | None = None
        #: width of the text part of an item vector (0 without the text modality)
        self.text_dim_ = 0
        self.item_vectors_: np.ndarray | None = None
        #: mean encoder vector of the catalogue at fit time (zeros when ``center`` is off)
        self.center_ = np.zeros(0, np.float32)
        self.encoder_id_: str | None = None
        #: review keyphrases per item (external id -> phrases), when ``keywords_per_item`` > 0
        self.keywords_: dict[Any, list[str]] = {}
        #: content -> collaborative map and the fold-in table (unfitted without ``cf_projection``)
        self.projection_ = self._empty_projection()
        #: query kind -> why this fitted model cannot serve it (set with ``supports`` after fit/load)
        self.unsupported_reason: dict[str, str] = {}

    def _empty_projection(self) -> CFProjection:
        c = self.config
        return CFProjection(
            c.projection_method,
            factors=c.projection_factors,
            ridge=c.projection_ridge,
            neighbours=c.projection_neighbours,
            temperature=c.projection_temperature,
        )

    # ------------------------------------------------------------------ encoder
    @property
    def encoder(self) -> TextEncoder:
        """The text encoder (created on first use; a loaded model only builds it for a text query)."""
        if self._encoder is None:
            self._encoder = shared_encoder(self.config.encoder, self.config.device)
        if self.encoder_id_ is not None and self._encoder.model_id != self.encoder_id_:
            raise LmrecError(
                f"this content model's item vectors come from {self.encoder_id_!r} but the encoder is "
                f"{self._encoder.model_id!r}: texts would land in a different vector space; refit, or "
                "install the same model version"
            )
        return self._encoder

    @property
    def picture_encoder(self) -> ImageEncoder:
        """The image encoder (``picture_encoder=`` injects a built one; it must be the one
        ``config.image_encoder`` names)."""
        if self._image_encoder is None:
            self._image_encoder = shared_image_encoder(self.config.image_encoder)
        return self._image_encoder

    def _weights(self) -> tuple[float, float]:
        """Scale of the text part and of the picture part of an item vector."""
        mods = self.config.modalities
        if "image" not in mods:
            return 1.0, 0.0
        if "text" not in mods:
            return 0.0, 1.0
        w = self.config.image_weight
        return math.sqrt(1.0 - w), math.sqrt(w)

    def _cache(self) -> EmbeddingCache | None:
        return EmbeddingCache(self.config.cache_dir) if self.config.cache_dir else None

    def encode_texts(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
        """Encode with this model's encoder (documents through the cache, if any)."""
        cache = self._cache() if kind == "document" else None
        return cached_encode(
            texts,
            self.encoder,
            cache,
            batch_size=self.config.batch_size,
            show_progress=self.config.show_progress,
            kind=kind,
        )

    # ------------------------------------------------------------------ fitting
    def _fit(self, data: Dataset) -> None:
        self.encoder_id_ = None
        self.image_encoder_id_ = None
        self.keywords_ = {}
        parts: list[np.ndarray] = []
        wt, wi = self._weights()
        self.text_dim_ = 0
        if "text" in self.config.modalities:
            self._fit_text(data)
            assert self.item_vectors_ is not None
            self.text_dim_ = self.item_vectors_.shape[1]
            parts.append(wt * self.item_vectors_)
        else:
            self.center_ = np.zeros(0, np.float32)
        if "image" in self.config.modalities:
            img, _has, self.image_center_, self.image_encoder_id_ = centred_item_pictures(
                data,
                self.picture_encoder,
                self._cache(),
                model="content",
                center=self.config.center,
                show_progress=self.config.show_progress,
            )
            parts.append(wi * img)
        self.item_vectors_ = np.concatenate(parts, axis=1).astype(np.float32) if len(parts) > 1 else parts[0]
        self.projection_ = self._empty_projection()
        if self.config.cf_projection:
            self._fit_projection(data)
        self._set_supports()

    def _set_supports(self) -> None:
        """Free text is served only in the text space: not by a pictures-only or projected model
        (the class attribute lists every kind a content model can serve)."""
        self.unsupported_reason = {}
        if "text" not in self.config.modalities:
            self.unsupported_reason["text"] = (
                f"this content model scores pictures only (modalities={self.config.modalities!r}): the picture "
                "model shares no space with text, so free-text queries need the text modality"
            )
        elif self._projected:
            self.unsupported_reason["text"] = (
                "this content model scores in a collaborative space (cf_projection=True): a free-text query "
                "lands in the text space, not that one; use a model without cf_projection for text queries"
            )
        text = "text" not in self.unsupported_reason
        self.supports = frozenset({"user", "history", *(("text",) if text else ())})  # type: ignore[misc]

    def _fit_projection(self, data: Dataset) -> None:
        """Content vectors -> SVD item factors, learned on warm items (module docstring)."""
        assert self.item_vectors_ is not None
        inter = data.interactions
        rows, cols = inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy()
        r = sp.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)), shape=(data.n_users, data.n_items))
        self.item_vectors_ = self.projection_.fit(self.item_vectors_, r, dataset=data.name)

    @property
    def _projected(self) -> bool:
        return self.projection_.fitted

    def _fit_text(self, data: Dataset) -> None:
        encoder = self.encoder
        keywords = None
        if self.config.keywords_per_item and data.reviews is not None and data.reviews.height:
            frame = review_keywords(
                data,
                encoder,
                top_n=self.config.keywords_per_item,
                diversity=self.config.keyword_diversity,
                cache=self._cache(),
                batch_size=self.config.batch_size,
                show_progress=self.config.show_progress,
            )
            self.keywords_ = keyword_map(frame)
            keywords = self.keywords_
        texts = build_item_texts(data, self.config.profile, keywords=keywords)
        raw = self.encode_texts(texts)
        self.center_ = raw.mean(axis=0) if self.config.center else np.zeros(raw.shape[1], np.float32)
        self.item_vectors_ = self._centred(raw)
        self.encoder_id_ = encoder.model_id

    def _centred(self, vectors: np.ndarray) -> np.ndarray:
        """Encoder vectors moved into this model's space: minus the catalogue mean, unit length."""
        return l2_normalize(vectors - self.center_[None, :]) if self.config.center else vectors

    def item_texts(self, data: Dataset) -> list[str]:
        """The profile texts this model encodes for ``data`` (for inspection and explanations)."""
        return build_item_texts(data, self.config.profile, keywords=self.keywords_ or None)

    # ------------------------------------------------------------------ vectors
    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        assert self.item_vectors_ is not None
        return self.item_vectors_

    def history_vector(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Unit vector of a time-ordered history of internal item indices (zeros for an empty one);
        with ``cf_projection``, the SVD fold-in of its distinct items (not unit length)."""
        if self._projected:
            return self.projection_.fold_in(items)
        extra = None
        if weights is not None and self.config.use_weights:
            extra = np.log1p(np.maximum(np.asarray(weights, np.float64), 0.0))
        return recency_mean(self.item_vectors(), items, self.config.recency_half_life, extra)

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        vecs = self.item_vectors()
        out = np.zeros((len(batch), vecs.shape[1]), np.float32)
        has_hist = np.zeros(len(batch), dtype=bool)
        for qi, seq in enumerate(batch.sequences):
            if len(seq):
                weights = None
                if self.config.use_weights:
                    row = batch.history[qi]
                    lookup = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
                    counts = np.bincount(seq, minlength=1)
                    weights = np.array([lookup.get(int(i), 1.0) / max(counts[i], 1) for i in seq])
                out[qi] = self.history_vector(seq, weights)
                has_hist[qi] = True
        text_rows = [i for i, t in enumerate(batch.texts) if t]
        if text_rows and "text" in self.unsupported_reason:
            raise LmrecError(self.unsupported_reason["text"])
        if text_rows:
            tv = self._centred(
                self.encoder.encode(
                    [query_text(batch.texts[i] or "") for i in text_rows],
                    batch_size=self.config.batch_size,
                    show_progress=False,
                    kind="query",
                )
            )
            tv = self._pad_text(tv)
            a = self.config.text_weight
            for j, qi in enumerate(text_rows):
                out[qi] = (1 - a) * out[qi] + a * tv[j] if has_hist[qi] else tv[j]
            out[text_rows] = l2_normalize(out[text_rows])
        return out

    def _pad_text(self, tv: np.ndarray) -> np.ndarray:
        """Text-part vectors as full item-space vectors (a zero picture part)."""
        width = self.item_vectors().shape[1]
        if width == tv.shape[1]:
            return tv
        out = np.zeros((len(tv), width), np.float32)
        out[:, : tv.shape[1]] = tv
        return out

    # ------------------------------------------------------------------ catalogue updates
    def add_items(self, items: pl.DataFrame) -> None:
        """Add new catalogue items (or new text for known ones) and encode them; no refit.

        ``items`` needs ``item_id`` plus the profile's text columns (``title``, ``description``,
        ``genres``, a ``tags`` or ``reviews`` column, ...) and, for a model with the image modality,
        an optional ``image`` column of picture files (null: no picture). New ids are appended to the
        item vocabulary (existing indices never move); known ids get their vector re-encoded.

        An item with only a picture, or only text, is servable at once: the missing part of its
        vector is zero, so it is scored on what it has. A picture that does not decode raises
        :class:`~lmrec.errors.LmrecError` naming the file.
        """
        self._check_fitted()
        assert self.item_vocab is not None and self.item_vectors_ is not None
        items = new_items_frame(items, self.item_vocab)
        if items.height == 0:
            return
        width = self.projection_.content_dim if self._projected else self.item_vectors_.shape[1]
        vecs = np.zeros((items.height, width), np.float32)
        wt, wi = self._weights()
        if "text" in self.config.modalities:
            texts = item_texts_from_frame(items, self.config.profile)
            # the fitted mean: existing vectors stay valid
            tv = wt * self._centred(self.encode_texts(texts))
            if "image" in self.config.modalities:
                # no text (the profile would be a bare id): scored on the picture alone
                tv[~has_profile_text(items, self.config.profile)] = 0.0
            vecs[:, : self.text_dim_] = tv
        if "image" in self.config.modalities and "image" in items.columns:
            vecs[:, self.text_dim_ :] = wi * self._new_pictures(items["image"].to_list())
        elif "text" not in self.config.modalities:
            raise DataError(
                "new items need an 'image' column of picture files: this content model scores pictures only",
                column="image",
            )
        vocab = self.item_vocab.extend(items["item_id"].to_list())
        rows = vocab.indices(items["item_id"].to_list())
        if self._projected:
            vecs = self.projection_.map(vecs)  # a new item is cold: it lands where look-alike warm items sit
            self.projection_.extend(len(vocab))  # new items have no interactions: no fold-in part
        table = np.zeros((len(vocab), self.item_vectors_.shape[1]), np.float32)
        table[: len(self.item_vectors_)] = self.item_vectors_
        table[rows] = vecs
        self.item_vocab = vocab
        self.item_vectors_ = table
        self._history_csr = None  # its shape follows the catalogue

    def _new_pictures(self, files: list[Any]) -> np.ndarray:
        """Centred unit picture vectors of new items' files (zero rows where the file is null)."""
        vecs, _has = centred_new_pictures(
            files,
            self.picture_encoder,
            self._cache(),
            self.image_center_,
            self.image_encoder_id_,
            model="content",
        )
        return vecs

    def item_keywords(self, item_id: Any) -> list[str]:
        """Review keyphrases of one item (empty when the model was fitted without keywords)."""
        self._check_fitted()
        assert self.item_vocab is not None
        self.item_vocab.index(item_id)  # unknown ids raise, naming the id
        key = int(item_id) if self.item_vocab.kind == "int" else str(item_id)
        return list(self.keywords_.get(key, []))

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        assert self.item_vectors_ is not None
        return {
            "item_vectors": self.item_vectors_,
            "center": self.center_,
            "image_center": self.image_center_,
            **self.projection_.state(),
        }

    def _get_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "encoder_model_id": self.encoder_id_,
            "image_encoder_model_id": self.image_encoder_id_,
            "text_dim": self.text_dim_,
        }
        if self.keywords_:
            extra["keywords"] = {str(k): v for k, v in self.keywords_.items()}
        return extra

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.item_vectors_ = tensors["item_vectors"].astype(np.float32, copy=False)
        dim = self.item_vectors_.shape[1]
        self.center_ = tensors.get("center", np.zeros(dim, np.float32)).astype(np.float32, copy=False)
        self.encoder_id_ = extra.get("encoder_model_id")
        self.image_encoder_id_ = extra.get("image_encoder_model_id")
        self.image_center_ = tensors.get("image_center", np.zeros(0, np.float32)).astype(
            np.float32, copy=False
        )
        self.projection_ = self._empty_projection()
        self.projection_.load_state(tensors)
        self._set_supports()
        self.text_dim_ = int(extra.get("text_dim") or (dim if "text" in self.config.modalities else 0))
        kind = self.item_vocab.kind if self.item_vocab is not None else "str"
        self.keywords_ = {
            (int(k) if kind == "int" else k): list(v) for k, v in extra.get("keywords", {}).items()
        }
        if self.item_vocab is not None and len(self.item_vectors_) != len(self.item_vocab):
            raise LmrecError(
                f"saved content model has {len(self.item_vectors_)} item vectors for {len(self.item_vocab)} items"
            )


__all__ = ["ContentConfig", "ContentRecommender"]
