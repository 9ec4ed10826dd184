"""The options of an :class:`~lmrec.nn.item_repr.ItemRepresentation`, as model configs name them.

The ``fusion`` values (:data:`FUSIONS`) and the ``modalities`` (:data:`MODALITIES`) an item tower
can be built with, the parts each legacy ``fusion`` fuses (:data:`FUSION_MODALITIES`), the check a
model config runs on its ``modalities`` / ``fusion`` / ``modality_dropout`` fields
(:func:`check_modalities`), and the config fields
:meth:`ItemRepresentation.from_config <lmrec.nn.item_repr.ItemRepresentation.from_config>` reads
(:class:`ItemReprSettings`). Nothing here needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

Fusion = Literal["sum", "gate", "text_only", "id_only"]
FUSIONS: tuple[str, ...] = ("sum", "gate", "text_only", "id_only")
Modality = Literal["id", "text", "image"]
MODALITIES: tuple[str, ...] = ("id", "text", "image")
#: the parts each legacy ``fusion`` value fuses (the tower without ``modalities``)
FUSION_MODALITIES: dict[str, tuple[str, ...]] = {
    "sum": ("id", "text"),
    "gate": ("id", "text"),
    "text_only": ("text",),
    "id_only": ("id",),
}


def check_modalities(modalities: Sequence[str] | None, fusion: str, modality_dropout: float) -> None:
    """A model config's ``modalities`` / ``fusion`` / ``modality_dropout`` as the masked tower takes
    them; a :class:`ValueError` naming the fields otherwise (pydantic reports it per field)."""
    if modalities is not None:
        mods = list(modalities)
        if not mods or len(set(mods)) != len(mods):
            raise ValueError(f"modalities={mods!r}: give 'id', 'text' and/or 'image', once each")
        if fusion not in ("sum", "gate"):
            raise ValueError(
                f"fusion={fusion!r} names its own modalities; with modalities={mods!r} fusion must be 'sum' or 'gate'"
            )
    if modality_dropout:
        if modalities is None:
            raise ValueError(
                "modality_dropout needs modalities (e.g. ['id', 'text', 'image']); the ID + text "
                "tower of fusion alone has id_dropout"
            )
        if len(modalities) < 2 or not {"text", "image"} & set(modalities):
            raise ValueError(
                f"modality_dropout drops text or picture parts, with another part left to carry "
                f"the item; modalities={list(modalities)!r} has none to drop"
            )


class ItemReprSettings(Protocol):
    """The config fields :meth:`ItemRepresentation.from_config` reads (a model config has them)."""

    @property
    def dim(self) -> int: ...
    @property
    def fusion(self) -> Fusion: ...
    @property
    def id_dropout(self) -> float: ...
    @property
    def text_hidden(self) -> int | None: ...


__all__ = [
    "FUSIONS",
    "FUSION_MODALITIES",
    "MODALITIES",
    "Fusion",
    "ItemReprSettings",
    "Modality",
    "check_modalities",
]
