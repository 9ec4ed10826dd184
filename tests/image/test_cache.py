"""Picture vectors through the on-disk embedding cache (``lmrec.image.cache``)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from lmrec.data import Dataset
from lmrec.data.images import ItemImages
from lmrec.errors import LmrecError
from lmrec.image import ColorHistogramEncoder, cached_encode_images, image_key, item_image_vectors
from lmrec.text.cache import EmbeddingCache


class Counting(ColorHistogramEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def encode(self, images: Sequence, batch_size: int = 32, show_progress: bool | None = None) -> np.ndarray:
        self.seen += len(images)
        return super().encode(images, batch_size, show_progress)


def _jpeg(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (10, 15), colour).save(path, "JPEG")
    return path


def test_second_run_reads_the_cache_and_keys_are_file_hashes(tmp_path) -> None:
    a = _jpeg(tmp_path / "a.jpg", (250, 0, 0))
    b = _jpeg(tmp_path / "b.jpg", (0, 0, 250))
    cache, enc = EmbeddingCache(tmp_path / "cache"), Counting()
    first = cached_encode_images([a, b, a], enc, cache)
    assert enc.seen == 2 and cache.last_stats.hits == 0 and cache.last_stats.encoded == 2
    np.testing.assert_array_equal(first, ColorHistogramEncoder().encode([a, b, a]))
    # a fresh cache object on the same folder: everything is a hit, the encoder is not called
    cache2 = EmbeddingCache(tmp_path / "cache")
    again = cached_encode_images([b, a], enc, cache2)
    assert enc.seen == 2 and cache2.last_stats.hits == 2
    np.testing.assert_array_equal(again, first[[1, 0]])
    # a copy under another name is a hit; a changed file is a miss
    shutil.copyfile(a, tmp_path / "copy.jpg")
    _jpeg(b, (0, 250, 0))
    cached_encode_images([tmp_path / "copy.jpg", b], enc, cache2)
    assert enc.seen == 3 and cache2.last_stats.hits == 1
    assert image_key(a) == image_key(a.read_bytes()) != image_key(b)


def test_item_image_vectors_align_to_the_vocabulary(tmp_path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    _jpeg(folder / "b.jpg", (0, 200, 0))
    _jpeg(folder / "d.jpg", (200, 0, 0))
    inter = pl.DataFrame({"user_id": [1, 1, 2], "item_id": ["d", "a", "b"]})
    items = pl.DataFrame({"item_id": ["a", "b", "c", "d"]})
    data = Dataset.from_frames(inter, items=items)
    with pytest.raises(LmrecError, match="has no item pictures"):
        item_image_vectors(data)
    data = data.with_images(folder)
    vecs, has = item_image_vectors(data, ColorHistogramEncoder(), tmp_path / "cache")
    assert has.tolist() == [False, True, False, True] and vecs.shape == (4, 72)
    np.testing.assert_array_equal(vecs[1], ColorHistogramEncoder().encode([folder / "b.jpg"])[0])
    assert not vecs[0].any()
    # a feature matrix is used as given (normalised); the encoder is not needed
    feats = ItemImages.from_features(["c", "a"], np.array([[3.0, 4.0], [1.0, 0.0]]))
    vecs, has = item_image_vectors(data.with_images(feats))
    assert has.tolist() == [True, False, True, False]
    np.testing.assert_allclose(vecs[2], [0.6, 0.8])
