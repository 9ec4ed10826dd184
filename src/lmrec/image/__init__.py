"""Item pictures as vectors: offline image encoders and their on-disk cache.

The twin of :mod:`lmrec.text` for the picture modality (see :mod:`lmrec.data.images` for how a
dataset carries pictures). Nothing here imports torch until a model actually encodes something.
"""

from lmrec.image.cache import cached_encode_images, image_key, item_image_vectors
from lmrec.image.encoder import (
    DEFAULT_IMAGE_MODEL,
    WEIGHTS_SHA256,
    ColorHistogramEncoder,
    ConcatImageEncoder,
    ImageEncoder,
    MobileNetV2Encoder,
    get_image_encoder,
    shared_image_encoder,
)

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "WEIGHTS_SHA256",
    "ColorHistogramEncoder",
    "ConcatImageEncoder",
    "ImageEncoder",
    "MobileNetV2Encoder",
    "cached_encode_images",
    "get_image_encoder",
    "image_key",
    "item_image_vectors",
    "shared_image_encoder",
]
