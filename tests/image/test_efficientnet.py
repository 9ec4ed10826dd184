"""EfficientNet-Lite picture features (``lmrec.image.efficientnet``) and the concatenated encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmrec.errors import LmrecError
from lmrec.image import ConcatImageEncoder, ImageEncoder, MobileNetV2Encoder, get_image_encoder
from lmrec.image.efficientnet import EFFICIENTNET_LITE, EfficientNetLiteEncoder, lite_weights_path
from lmrec.image.encoder import sha256_file

#: the ImageNet classes nearest a film poster: "web site", "comic book", "book jacket"
POSTER_CLASSES = [916, 917, 921]


@pytest.mark.parametrize("name", sorted(EFFICIENTNET_LITE))
def test_weights_are_the_pinned_files(name: str) -> None:
    path = lite_weights_path(name)
    # the file name carries the first 8 hex digits of its sha256 (the upload's own claim)
    assert sha256_file(path) == EFFICIENTNET_LITE[name].sha256
    assert path.name.split("-")[-1] == EFFICIENTNET_LITE[name].sha256[:8] + ".pth"


def test_lite_vectors_offline_without_torchvision(posters, tmp_path: Path) -> None:
    enc = get_image_encoder("efficientnet-lite2", threads=1)
    assert isinstance(enc, EfficientNetLiteEncoder) and isinstance(enc, ImageEncoder)
    assert enc.dim == 1280 and "size=260" in enc.model_id and not enc.is_loaded
    flipped = tmp_path / "a_flip.jpg"
    Image.open(posters[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped, "JPEG", quality=90)
    vecs = enc.encode([*posters, flipped.read_bytes()], batch_size=2)
    assert vecs.shape == (4, 1280) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert (vecs >= 0).all()  # ReLU6 head
    sims = vecs @ vecs.T
    assert sims[0, 3] > max(sims[0, 1], sims[0, 2])  # a picture is nearest its mirror image
    assert "torchvision" not in sys.modules and "cv2" not in sys.modules


def test_converted_classifier_sees_posters_with_tf_scaling(data_home: Path) -> None:
    """The converted weights are ImageNet classifiers, and their input scaling is TF Lite's:
    real posters land on the poster-like classes, more so than under ImageNet mean/std scaling."""
    import torch

    files = sorted((data_home / "ml-100k-posters" / "images").glob("*.jpg"))[:24]
    enc = EfficientNetLiteEncoder("efficientnet-lite2", threads=1).load()
    net, size = enc._model.net, enc.spec.size
    from lmrec.image.encoder import _MEAN, _STD, open_rgb

    tf = np.stack([enc.preprocess(open_rgb(f)) for f in files])
    imagenet = np.stack(
        [
            (
                (
                    np.asarray(open_rgb(f).resize((size, size), Image.Resampling.BILINEAR), np.float32)
                    / 255.0
                    - _MEAN
                )
                / _STD
            ).transpose(2, 0, 1)
            for f in files
        ]
    ).astype(np.float32)
    with torch.inference_mode():
        mass = [
            float(net(torch.from_numpy(x)).softmax(-1)[:, POSTER_CLASSES].sum(-1).mean())
            for x in (tf, imagenet)
        ]
    assert mass[0] > 0.15 and mass[0] > mass[1]


def test_changed_lite_weights_are_refused() -> None:
    with pytest.raises(LmrecError, match="is not the pinned"):
        EfficientNetLiteEncoder("efficientnet-lite2", expected_sha256="0" * 64).load()
    with pytest.raises(LmrecError, match="unknown image encoder 'efficientnet-b7'"):
        get_image_encoder("efficientnet-b7")


def test_concatenation_averages_the_parts_cosines(posters) -> None:
    enc = get_image_encoder("mobilenetv2+efficientnet-lite2", threads=1)
    assert isinstance(enc, ConcatImageEncoder) and isinstance(enc, ImageEncoder)
    assert enc.dim == 2560 and enc.model_id.startswith("concat(mobilenetv2-imagenet@")
    assert "efficientnet-lite2" in enc.model_id
    parts = [MobileNetV2Encoder(threads=1), EfficientNetLiteEncoder("efficientnet-lite2", threads=1)]
    a, b = (p.encode(posters) for p in parts)
    v = enc.encode(posters)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v @ v.T, ((a @ a.T) + (b @ b.T)) / 2, atol=1e-5)
    with pytest.raises(LmrecError, match="at least two"):
        ConcatImageEncoder([parts[0]])
