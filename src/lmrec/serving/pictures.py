"""Pictures of items added while serving (``POST /items`` with ``image``).

A picture arrives base64-encoded in the JSON body. It is decoded, checked to be an image Pillow can
read (JPEG, PNG, WebP or GIF), and written atomically, content-addressed (``<sha256>.<ext>``), into a
folder beside the event log (``<log name>-pictures``). Its path goes into the logged item, so a
restart re-adds the item with its picture, and ``lmrec retrain`` finds it in the ``image`` column.
Nothing is written for a picture that fails a check; the error names the item.
"""

from __future__ import annotations

import binascii
import hashlib
import io
from base64 import b64decode
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lmrec._atomic import atomic_write_bytes
from lmrec.serving.errors import ServingError
from lmrec.serving.schemas import MAX_PICTURE_BYTES

#: Pillow format -> file suffix of the pictures taken
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}


def picture_url(item_id: Any) -> str:
    """Where a client GETs an item's picture."""
    return f"/items/{quote(str(item_id), safe='')}/image"


def uses_pictures(model: Any) -> bool:
    """Whether a model scores items by their picture (a content model with the image modality)."""
    return "image" in (getattr(getattr(model, "config", None), "modalities", None) or ())


def pictures_dir(event_log: Path) -> Path:
    """Where a server keeps the pictures of added items: beside its event log."""
    return event_log.parent / f"{event_log.stem}-pictures"


def decode_picture(b64: str, item_id: Any) -> tuple[bytes, str]:
    """The picture's bytes and file suffix; a :class:`ServingError` naming ``item_id`` if it is not
    base64, too large or not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ServingError(f"item {item_id!r}: 'image' is not base64 data") from None
    if len(data) > MAX_PICTURE_BYTES:
        raise ServingError(
            f"item {item_id!r}: the picture is {len(data):,} bytes; at most {MAX_PICTURE_BYTES:,} are taken",
            413,
        )
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ServingError(f"item {item_id!r}: 'image' does not decode as a picture ({exc})") from None
    if fmt not in FORMATS:
        raise ServingError(
            f"item {item_id!r}: pictures must be JPEG, PNG, WebP or GIF, not {fmt or 'unknown'}"
        )
    return data, FORMATS[fmt]


def store_picture(data: bytes, suffix: str, folder: Path) -> Path:
    """Write a decoded picture atomically under its content hash; its path (an existing identical
    file is reused)."""
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    return path.resolve()


__all__ = ["FORMATS", "decode_picture", "picture_url", "pictures_dir", "store_picture", "uses_pictures"]
