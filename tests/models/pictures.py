"""Test pictures shared by the picture-model tests: each carries its checkerboard group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw_group_picture(i: int, path: Path, rng: np.random.Generator) -> None:
    """A noisy JPEG that carries item ``i``'s checkerboard group (even: red + circle, odd: blue + box)."""
    base = (200, 40, 40) if i % 2 == 0 else (40, 40, 200)
    im = Image.new("RGB", (24, 36), tuple(int(c + rng.integers(-30, 30)) for c in base))
    d = ImageDraw.Draw(im)
    if i % 2 == 0:
        d.ellipse((4, 8, 20, 24), fill=(250, 250, 250))
    else:
        d.rectangle((2, 2, 21, 12), fill=(10, 10, 10))
    im.save(path, "JPEG")
