"""Shared fixtures of the image tests: three small synthetic posters."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw


def poster(path: Path, colour: tuple[int, int, int], shape: str) -> Path:
    im = Image.new("RGB", (46, 69), colour)
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse((8, 20, 38, 50), fill=(255, 255, 255))
    else:
        d.rectangle((5, 5, 40, 30), fill=(0, 0, 0))
    im.save(path, "JPEG", quality=90)
    return path


@pytest.fixture()
def posters(tmp_path: Path) -> list[Path]:
    return [
        poster(tmp_path / "a.jpg", (200, 30, 30), "circle"),
        poster(tmp_path / "b.jpg", (30, 30, 200), "box"),
        poster(tmp_path / "c.jpg", (30, 180, 30), "circle"),
    ]
