"""Picture vectors through the text layer's on-disk cache, keyed by model id + image-file hash.

The cache is :class:`lmrec.text.cache.EmbeddingCache` itself (safetensors shards + a JSON index per
model, atomic writes, a lock for writers): an image's key is the string ``"image-sha256:<hex>"`` of
its file bytes, so a renamed or copied file is still a hit and a changed file is a miss. Image and
text vectors never mix because the model id is part of the key (one directory per model).

:func:`item_image_vectors` is what the models call: one row per catalogue item, aligned to the
item vocabulary, and a mask of the items that have a picture.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmrec.image.encoder import ImageEncoder
from lmrec.text.cache import EmbeddingCache
from lmrec.text.encoder import l2_normalize

if TYPE_CHECKING:
    from lmrec.data.dataset import Dataset


def image_key(image: str | os.PathLike[str] | bytes) -> str:
    """The cache key of a picture: ``"image-sha256:<hex>"`` of the file's bytes."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return "image-sha256:" + hashlib.sha256(data).hexdigest()


def cached_encode_images(
    images: Sequence[str | os.PathLike[str] | bytes],
    encoder: ImageEncoder,
    cache: EmbeddingCache | str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> np.ndarray:
    """``encoder.encode(images)`` with cached pictures read from disk and only the rest encoded.

    ``images`` are file paths or file bytes. The encoder is not touched when every picture is cached
    (a lazily loaded model then never loads). With a cache, ``cache.last_stats`` counts the hits.
    """
    images = list(images)
    if cache is None:
        return encoder.encode(images, batch_size=batch_size, show_progress=show_progress)
    if not isinstance(cache, EmbeddingCache):
        cache = EmbeddingCache(cache)
    keys = [image_key(im) for im in images]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    return cache.lookup_or_encode(
        encoder.model_id,
        keys,
        lambda missing: encoder.encode(
            [images[first[k]] for k in missing], batch_size=batch_size, show_progress=show_progress
        ),
        dim=encoder.dim,
    )


def item_image_vectors(
    data: Dataset,
    encoder: ImageEncoder | None = None,
    cache: EmbeddingCache | str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, has_image)``: one L2-normalised row per item of ``data.item_vocab`` (zero where the
    item has no usable picture) and the boolean mask of items with one.

    Picture files are encoded with ``encoder`` (default: the shared MobileNetV2 encoder) through
    ``cache``; a feature matrix given with the dataset is used as it is (normalised), and
    ``encoder`` is then ignored. A dataset without pictures raises :class:`LmrecError`.
    """
    from lmrec.errors import LmrecError
    from lmrec.image.encoder import shared_image_encoder

    images = data.images
    if images is None:
        raise LmrecError(
            f"dataset {data.name!r} has no item pictures (load one with images, or Dataset.with_images)"
        )
    ids = images.item_ids
    idx = np.asarray([data.item_vocab.get(i) for i in ids], np.int64)
    keep = idx >= 0
    if images.features is not None:
        rows = l2_normalize(images.features[keep])
    else:
        enc = encoder if encoder is not None else shared_image_encoder()
        paths = [images.paths[i] for i, k in zip(ids, keep, strict=True) if k]
        rows = cached_encode_images(paths, enc, cache, batch_size=batch_size, show_progress=show_progress)
    dim = rows.shape[1] if rows.ndim == 2 and rows.shape[1] else (encoder.dim if encoder is not None else 0)
    out = np.zeros((data.n_items, dim), np.float32)
    has = np.zeros(data.n_items, bool)
    out[idx[keep]] = rows
    has[idx[keep]] = True
    return out, has


def centred_item_pictures(
    data: Dataset,
    encoder: str | ImageEncoder | None,
    cache: EmbeddingCache | str | os.PathLike[str] | None,
    *,
    model: str = "this model",
    center: bool = True,
    show_progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """What an item tower takes from the dataset's pictures: ``(vectors, has, center, source)``.

    ``vectors`` are the pictures' unit vectors after subtracting ``center``, the catalogue's mean
    picture vector (MobileNet features share a large common direction, so raw cosines are all high),
    zero rows where an item has no picture; ``has`` marks the items with one; ``source`` names the
    picture model (checked when new pictures come). ``encoder`` is a built encoder or a name for
    :func:`~lmrec.image.encoder.shared_image_encoder` (None: the default). ``center=False`` keeps the
    raw unit vectors (and a zero ``center``). The content model, two_tower and the sequence models
    all take their pictures through here.
    """
    from lmrec.errors import LmrecError
    from lmrec.image.encoder import shared_image_encoder

    if data.images is None:
        raise LmrecError(
            f"{model} modalities include 'image' but dataset {data.name!r} has no item pictures "
            "(Dataset.with_images, or a dataset with an images folder such as ml-100k-posters)"
        )
    enc = encoder if isinstance(encoder, ImageEncoder) else shared_image_encoder(encoder)
    raw, has = item_image_vectors(data, enc, cache, show_progress=show_progress)
    mean = raw[has].mean(axis=0) if center and has.any() else np.zeros(raw.shape[1], np.float32)
    vecs = np.zeros_like(raw)
    vecs[has] = l2_normalize(raw[has] - mean[None, :])
    source = enc.model_id if data.images.features is None else (data.images.model_id or data.images.source)
    return vecs, has, mean.astype(np.float32), source


def centred_new_pictures(
    files: Sequence[object],
    encoder: ImageEncoder,
    cache: EmbeddingCache | str | os.PathLike[str] | None,
    center: np.ndarray,
    fitted_source: str | None,
    *,
    model: str,
) -> tuple[np.ndarray, np.ndarray]:
    """New items' picture files as a fitted model's item tower takes them: unit vectors after
    subtracting the fit-time ``center`` (zero rows where a file is null or blank), and which rows
    have one. A model fitted with another picture model (``fitted_source``) is refused: the new
    vectors would land in a different space."""
    from lmrec.errors import LmrecError

    if fitted_source != encoder.model_id:
        raise LmrecError(
            f"this {model} model's picture vectors come from {fitted_source!r}, not the image "
            f"encoder {encoder.model_id!r}: new pictures would land in a different space; refit"
        )
    has = np.array([f is not None and bool(str(f).strip()) for f in files], bool)
    out = np.zeros((len(files), len(center)), np.float32)
    if has.any():
        rows = np.flatnonzero(has)
        raw = cached_encode_images([str(files[int(k)]) for k in rows], encoder, cache)
        out[rows] = l2_normalize(raw - center[None, :])
    return out, has


__all__ = [
    "cached_encode_images",
    "centred_item_pictures",
    "centred_new_pictures",
    "image_key",
    "item_image_vectors",
]
