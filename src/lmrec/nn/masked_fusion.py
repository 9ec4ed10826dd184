"""The fusion step of the masked multi-modality item tower (:class:`~lmrec.nn.item_repr.ItemRepresentation`
built with ``modalities``).

Each part an item has (ID, text, picture) arrives projected to ``dim`` with a presence mask; the
parts are fused over the present ones only (:func:`fuse_present`): their sum, or a per-dimension
softmax gate over them, ``w_m = softmax_m(G_m v_m)``, with one zero-initialised ``dim x dim`` gate a
modality (:func:`modality_gates`). Under ID or modality dropout an item whose every present part was
dropped keeps one of them, drawn at random (:func:`keep_one_part`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def modality_gates(modalities: Sequence[str], dim: int) -> nn.ModuleDict:
    """One gate per modality; zero init: an even mix of the parts an item has."""
    gates = {m: nn.Linear(dim, dim) for m in modalities}
    for g in gates.values():
        nn.init.zeros_(g.weight)
        nn.init.zeros_(g.bias)
    return nn.ModuleDict(gates)


def keep_one_part(had: list[Tensor], present: list[Tensor]) -> list[Tensor]:
    """``present`` (each part's mask after dropout) with one part, drawn at random among those in
    ``had`` (the masks before dropout), put back for every token that lost all of its parts."""
    had_all = torch.stack(had, dim=-1)
    now = torch.stack(present, dim=-1)
    lost = had_all.any(-1) & ~now.any(-1)
    if lost.any():
        draw = torch.where(had_all, torch.rand(had_all.shape, device=had_all.device), -1.0)
        keep = F.one_hot(draw.argmax(-1), len(present)).bool() & lost.unsqueeze(-1)
        present = list((now | keep).unbind(-1))
    return present


def fuse_present(
    vecs: list[Tensor], present: list[Tensor], gates: nn.ModuleDict | None, modalities: Sequence[str]
) -> Tensor:
    """Fuse the parts over those present (a token with none, e.g. padding, gives exact zeros): their
    sum when ``gates`` is ``None`` or there is one part, else the softmax gate of ``gates`` (one per
    name in ``modalities``, in the order of ``vecs``)."""
    masks = [p.unsqueeze(-1).to(v.dtype) for v, p in zip(vecs, present, strict=True)]
    if gates is None or len(vecs) == 1:
        return sum((v * m for v, m in zip(vecs, masks, strict=True)), torch.zeros_like(vecs[0]))
    logits = torch.stack([gates[name](v) for name, v in zip(modalities, vecs, strict=True)])
    mask = torch.stack(masks)  # (M, ..., 1)
    logits = logits.masked_fill(mask == 0, float("-inf"))
    # a token with no part at all: every logit -inf; give it zero weights instead of NaN
    weights = torch.nan_to_num(torch.softmax(logits, dim=0), nan=0.0)
    return (weights * torch.stack(vecs)).sum(0)


__all__ = ["fuse_present", "keep_one_part", "modality_gates"]
