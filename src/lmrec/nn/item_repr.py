"""Item representations shared by every neural model: an ID embedding fused with frozen LM text vectors.

API
---
``ItemRepresentation(n_items, dim, text_embeddings=None, *, fusion="sum", id_dropout=0.0,
padding_idx=0, n_extra_tokens=0, text_hidden=None, known_items=None)``

* **Token layout.** The module embeds *tokens*, not raw item indices, so sequence models get a
  padding row and special tokens without re-inventing the offset arithmetic:

  - ``padding_idx=0`` (default): token 0 is padding, item ``i`` is token ``i + 1``;
  - ``padding_idx=None``: no padding row, item ``i`` is token ``i`` (two-tower style);
  - ``n_extra_tokens`` learnable ID-only rows follow the items (e.g. BERT4Rec's ``[MASK]``):
    ``mask_token == first_extra_token == item_offset + n_items``.

  ``to_tokens(item_idx)`` converts internal item indices; ``item_offset`` is 1 or 0.
  Padding tokens always map to an exact zero vector (no bias leaks into attention pooling).
* ``forward(tokens, text_table=None) -> (..., dim)``: representation of each token (``text_table``
  optionally overrides the frozen text buffer, for a text encoder being fine-tuned).
* ``all_items(text_table=None) -> (n_items, dim)``: every real item in internal-index order (no padding/extras),
  the matrix a softmax over the catalogue or ``item_vectors()`` needs.
* ``text_only(text) -> (..., dim)``: project raw text vectors (same ``text_dim``) through the text path
  alone, e.g. a free-text query or a brand-new item's description.
* ``fusion``: ``"sum"`` (id + projected text), ``"gate"`` (a learned per-dimension sigmoid gate
  between the two), ``"text_only"`` (no ID table at all: a pure content model) or ``"id_only"``
  (ignores text; the ablation baseline). Without ``text_embeddings`` only ``"id_only"`` is valid.
* **ID dropout** (``id_dropout``): while training, each item's ID part is zeroed with this
  probability (per occurrence in ``forward``; per item in ``all_items``), without rescaling. The
  text path then learns to carry an item alone, which is exactly the situation of a cold item.
* **Cold items** (``known_items``, a bool mask over items, also settable with
  :meth:`set_known_items`): items with no training interactions never get a useful ID vector; worse,
  a softmax pushes their untrained IDs down as permanent negatives. Their ID part is therefore
  always zeroed, so they are represented by their text alone, in training and at inference.
  ``known_items`` is a buffer and is saved with the state dict.

The text matrix is a frozen buffer (float32, ``(n_items, text_dim)``, rows of zeros for items
without text); only the projection (and the ID table) learn. Fine-tuning the text encoder itself is
the job of the model that owns the encoder (see ``lmrec.models.two_tower``).

Modalities (ID + text + picture)
--------------------------------
``modalities`` (any of ``"id"``, ``"text"``, ``"image"``) switches to the **masked** item tower,
used for pictures: each part an item has is projected to ``dim`` (``image_embeddings``, frozen
like the text, through their own linear projection), and the parts are fused over the ones the
item *has*:

* ``fusion="sum"``: the sum of the present parts;
* ``fusion="gate"``: a per-dimension softmax gate over the present parts, ``w_m = softmax_m(G_m
  v_m)`` (a learned ``dim x dim`` gate per modality), ``sum_m w_m * v_m``; an item with one part is
  exactly that part.

Which parts an item has: the ID when it has training interactions (``known_items``) and is not
dropped out; the text where ``text_known`` (default every item); the picture where ``image_known``
(default: rows of ``image_embeddings`` that are not all zero). A missing part is *masked out* of
the fusion, never fused as a zero vector (whose projection would be the bias, "a picture that looks
like nothing"). **Modality dropout** (``modality_dropout``): while training, the text and the
picture part of each item occurrence are dropped, each with this probability (the ID keeps
``id_dropout``); an item whose every present part was dropped keeps one of them, drawn at random.
The fused tower thus learns to place an item from any subset of its parts: no picture, no text, or
no trained ID (a cold item). Without ``modalities`` the ID + text tower above is unchanged (its
``"gate"`` is the two-way sigmoid gate), so models and artifacts built before pictures load as
they were.

:meth:`add_items` appends catalogue items after training (cold: no ID part) to the buffers, for
models that serve new items without a refit.

The option names and the model-config check are in :mod:`lmrec.nn.item_repr_config` (no torch
there); the masked tower's fusion step in :mod:`lmrec.nn.masked_fusion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lmrec.nn.item_repr_config import (
    FUSION_MODALITIES,
    FUSIONS,
    MODALITIES,
    Fusion,
    ItemReprSettings,
    Modality,
    check_modalities,
)
from lmrec.nn.masked_fusion import fuse_present, keep_one_part, modality_gates


class ItemRepresentation(nn.Module):
    """ID embedding + projected frozen text embedding, with ID dropout for cold-start robustness."""

    text_table: Tensor
    id_known: Tensor
    text_known: Tensor
    image_table: Tensor
    image_known: Tensor

    def __init__(
        self,
        n_items: int,
        dim: int,
        text_embeddings: Tensor | None = None,
        *,
        fusion: Fusion = "sum",
        id_dropout: float = 0.0,
        padding_idx: int | None = 0,
        n_extra_tokens: int = 0,
        text_hidden: int | None = None,
        known_items: Tensor | None = None,
        init_std: float = 0.02,
        modalities: Sequence[str] | None = None,
        image_embeddings: Tensor | None = None,
        image_known: Tensor | None = None,
        text_known: Tensor | None = None,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_items <= 0 or dim <= 0:
            raise ValueError(f"n_items and dim must be positive, got {n_items}, {dim}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if padding_idx not in (0, None):
            raise ValueError(f"padding_idx must be 0 (items start at token 1) or None, got {padding_idx!r}")
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {id_dropout}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        #: the masked multi-modality tower (``modalities`` given) or the ID + text one
        self.masked = modalities is not None
        if modalities is not None:
            mods = tuple(modalities)
            if not mods or len(set(mods)) != len(mods) or set(mods) - set(MODALITIES):
                raise ValueError(f"modalities must be distinct values of {MODALITIES}, got {mods!r}")
            if fusion not in ("sum", "gate"):
                raise ValueError(f"with modalities, fusion must be 'sum' or 'gate', got {fusion!r}")
            if "image" in mods and image_embeddings is None:
                raise ValueError("modality 'image' needs image_embeddings")
        else:
            mods = FUSION_MODALITIES[fusion]
            if image_embeddings is not None or modality_dropout:
                raise ValueError("image_embeddings and modality_dropout need modalities (the masked tower)")
        if text_embeddings is None and "text" in mods:
            raise ValueError(f"fusion={fusion!r} needs text_embeddings; use fusion='id_only' without text")
        self.modalities: tuple[str, ...] = mods
        self.modality_dropout = float(modality_dropout)
        self.n_items = int(n_items)
        self.dim = int(dim)
        self.fusion: Fusion = fusion
        self.id_dropout = float(id_dropout)
        self.padding_idx = padding_idx
        self.item_offset = 0 if padding_idx is None else 1
        self.n_extra_tokens = int(n_extra_tokens)
        self.n_tokens = self.item_offset + self.n_items + self.n_extra_tokens

        self.use_id = "id" in mods
        self.use_text = "text" in mods
        self.use_image = "image" in mods
        if self.use_id:
            self.id_embedding: nn.Embedding | None = nn.Embedding(self.n_tokens, dim, padding_idx=padding_idx)
            nn.init.normal_(self.id_embedding.weight, std=init_std)
            if padding_idx is not None:
                with torch.no_grad():
                    self.id_embedding.weight[padding_idx].zero_()
        else:
            self.id_embedding = None
            if n_extra_tokens:
                # special tokens have no text: they need their own learnable rows even without IDs
                self.extra_embedding = nn.Parameter(torch.randn(n_extra_tokens, dim) * init_std)

        text_dim = 0
        if self.use_text:
            assert text_embeddings is not None
            text = torch.as_tensor(text_embeddings, dtype=torch.float32)
            if text.ndim != 2 or text.shape[0] != n_items:
                raise ValueError(
                    f"text_embeddings must have shape ({n_items}, text_dim), got {tuple(text.shape)}"
                )
            text_dim = text.shape[1]
            # one zero row per padding/extra token so tokens index the buffer directly
            table = torch.zeros(self.n_tokens, text_dim)
            table[self.item_offset : self.item_offset + n_items] = text
            self.register_buffer("text_table", table, persistent=True)
            if text_hidden:
                self.text_proj: nn.Module = nn.Sequential(
                    nn.Linear(text_dim, text_hidden), nn.GELU(), nn.Linear(text_hidden, dim)
                )
            else:
                self.text_proj = nn.Linear(text_dim, dim)
            if fusion == "gate" and not self.masked:
                self.gate = nn.Linear(2 * dim, dim)
                nn.init.zeros_(self.gate.weight)
                nn.init.zeros_(self.gate.bias)  # start as an even mix
        self.text_dim = text_dim

        image_dim = 0
        if self.use_image:
            assert image_embeddings is not None
            image = torch.as_tensor(image_embeddings, dtype=torch.float32)
            if image.ndim != 2 or image.shape[0] != n_items:
                raise ValueError(
                    f"image_embeddings must have shape ({n_items}, image_dim), got {tuple(image.shape)}"
                )
            image_dim = image.shape[1]
            table = torch.zeros(self.n_tokens, image_dim)
            table[self.item_offset : self.item_offset + n_items] = image
            self.register_buffer("image_table", table, persistent=True)
            has = (
                image.abs().sum(-1) > 0
                if image_known is None
                else torch.as_tensor(image_known, dtype=torch.bool)
            )
            if has.shape != (n_items,):
                raise ValueError(f"image_known must have shape ({n_items},), got {tuple(has.shape)}")
            self.register_buffer("image_known", self._token_mask(has), persistent=True)
            self.image_proj = nn.Linear(image_dim, dim)
        self.image_dim = image_dim
        if self.masked and self.use_text:
            has = (
                torch.ones(n_items, dtype=torch.bool)
                if text_known is None
                else torch.as_tensor(text_known, dtype=torch.bool)
            )
            if has.shape != (n_items,):
                raise ValueError(f"text_known must have shape ({n_items},), got {tuple(has.shape)}")
            self.register_buffer("text_known", self._token_mask(has), persistent=True)
        if self.masked and fusion == "gate" and len(mods) > 1:
            self.gates = modality_gates(mods, dim)

        token_known = torch.ones(self.n_tokens, dtype=torch.bool)
        if padding_idx is not None:
            token_known[padding_idx] = False
        self.register_buffer("id_known", token_known, persistent=True)
        if known_items is not None:
            self.set_known_items(known_items)

    @classmethod
    def from_config(
        cls, cfg: ItemReprSettings, n_items: int, text_embeddings: Tensor | None, **options: Any
    ) -> ItemRepresentation:
        """Built from a model config's ``dim``, ``fusion``, ``id_dropout`` and ``text_hidden``, and,
        when it has ``modalities`` set, the masked tower with its ``modality_dropout``; ``options``
        are the other keyword arguments (``padding_idx``, ``n_extra_tokens``, ``image_embeddings``,
        …). Without ``modalities`` the pictures are not used (the ID + text tower of ``fusion``)."""
        modalities = getattr(cfg, "modalities", None)
        if modalities is None:
            options.pop("image_embeddings", None)
            options.pop("image_known", None)
        else:
            options.update(modalities=modalities, modality_dropout=getattr(cfg, "modality_dropout", 0.0))
        return cls(
            n_items,
            cfg.dim,
            text_embeddings,
            fusion=cfg.fusion,
            id_dropout=cfg.id_dropout,
            text_hidden=cfg.text_hidden,
            **options,
        )

    def _token_mask(self, items: Tensor) -> Tensor:
        """A per-item bool mask as a per-token one (padding and extra tokens: False)."""
        out = torch.zeros(self.n_tokens, dtype=torch.bool)
        out[self.item_offset : self.item_offset + self.n_items] = items
        return out

    # ------------------------------------------------------------------ token helpers
    @property
    def first_extra_token(self) -> int:
        return self.item_offset + self.n_items

    @property
    def mask_token(self) -> int:
        """The first extra token (BERT4Rec's ``[MASK]``); needs ``n_extra_tokens >= 1``."""
        if self.n_extra_tokens < 1:
            raise ValueError("no extra tokens: build ItemRepresentation with n_extra_tokens >= 1")
        return self.first_extra_token

    def to_tokens(self, item_idx: Tensor) -> Tensor:
        """Internal item indices -> tokens (adds the padding offset)."""
        return item_idx + self.item_offset

    def set_known_items(self, known_items: Tensor) -> None:
        """Mark which items have training interactions; the others are served by text alone."""
        known = torch.as_tensor(known_items, dtype=torch.bool, device=self.id_known.device)
        if known.shape != (self.n_items,):
            raise ValueError(f"known_items must have shape ({self.n_items},), got {tuple(known.shape)}")
        with torch.no_grad():
            self.id_known[self.item_offset : self.item_offset + self.n_items] = known
            self.id_known[self.first_extra_token :] = True

    # ------------------------------------------------------------------ forward paths
    def _fuse(self, id_vec: Tensor | None, text_vec: Tensor | None) -> Tensor:
        if self.fusion == "id_only":
            assert id_vec is not None
            return id_vec
        assert text_vec is not None
        if self.fusion == "text_only":
            return text_vec
        assert id_vec is not None
        if self.fusion == "sum":
            return id_vec + text_vec
        g = torch.sigmoid(self.gate(torch.cat([id_vec, text_vec], dim=-1)))
        return g * id_vec + (1.0 - g) * text_vec

    def _id_keep(self, tokens: Tensor) -> Tensor:
        """Bool mask: which token occurrences keep their ID part (known, and not dropped out)."""
        keep = self.id_known[tokens]
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(tokens.shape, device=tokens.device) >= self.id_dropout)
        return keep

    def forward(self, tokens: Tensor, text_table: Tensor | None = None) -> Tensor:
        """(...) int tokens -> (..., dim). Padding tokens give exact zeros.

        ``text_table`` (``(n_tokens, text_dim)``) replaces the frozen text buffer for this call, e.g.
        with rows freshly computed by a text encoder that is being fine-tuned (gradients then flow
        into that encoder).
        """
        if self.masked:
            return self._masked_forward(tokens, text_table)
        id_vec = text_vec = None
        if self.id_embedding is not None:
            id_vec = self.id_embedding(tokens) * self._id_keep(tokens).unsqueeze(-1).to(
                self.id_embedding.weight.dtype
            )
        if self.use_text:
            table = self.text_table if text_table is None else text_table
            text_vec = self.text_proj(table[tokens])
        out = self._fuse(id_vec, text_vec)
        is_item = (tokens >= self.item_offset) & (tokens < self.first_extra_token)
        if self.n_extra_tokens and self.id_embedding is None:
            extra = (tokens - self.first_extra_token).clamp(min=0, max=self.n_extra_tokens - 1)
            out = torch.where(is_item.unsqueeze(-1), out, self.extra_embedding[extra].to(out.dtype))
            is_item = is_item | (tokens >= self.first_extra_token)
        elif self.n_extra_tokens:
            is_item = is_item | (tokens >= self.first_extra_token)
        # zero padding exactly (the text projection's bias would otherwise leak into it)
        return out * is_item.unsqueeze(-1).to(out.dtype)

    def _parts(self, tokens: Tensor, text_table: Tensor | None) -> tuple[list[Tensor], list[Tensor]]:
        """Each modality's projected vector and presence mask for ``tokens`` (dropout applied)."""
        vecs: list[Tensor] = []
        present: list[Tensor] = []
        drop = self.training and self.modality_dropout > 0
        for m in self.modalities:
            if m == "id":
                assert self.id_embedding is not None
                vecs.append(self.id_embedding(tokens))
                present.append(self._id_keep(tokens))
                continue
            if m == "text":
                table = self.text_table if text_table is None else text_table
                vecs.append(self.text_proj(table[tokens]))
                has = self.text_known[tokens]
            else:
                vecs.append(self.image_proj(self.image_table[tokens]))
                has = self.image_known[tokens]
            if drop:
                has = has & (torch.rand(tokens.shape, device=tokens.device) >= self.modality_dropout)
            present.append(has)
        if self.training and (self.id_dropout > 0 or drop) and len(present) > 1:
            # an item whose every present part was dropped keeps one of them, drawn at random
            present = keep_one_part(self._presence(tokens), present)
        return vecs, present

    def _presence(self, tokens: Tensor) -> list[Tensor]:
        """Which parts each token has, before any dropout (masked tower)."""
        out = []
        for m in self.modalities:
            if m == "id":
                out.append(self.id_known[tokens])
            elif m == "text":
                out.append(self.text_known[tokens])
            else:
                out.append(self.image_known[tokens])
        return out

    def _masked_forward(self, tokens: Tensor, text_table: Tensor | None) -> Tensor:
        vecs, present = self._parts(tokens, text_table)
        # the gates exist exactly when fusion is "gate" over more than one part
        gates = self.gates if self.fusion == "gate" and len(vecs) > 1 else None
        out = fuse_present(vecs, present, gates, self.modalities)
        if self.n_extra_tokens and self.id_embedding is None:
            is_extra = tokens >= self.first_extra_token
            extra = (tokens - self.first_extra_token).clamp(min=0, max=self.n_extra_tokens - 1)
            out = torch.where(is_extra.unsqueeze(-1), self.extra_embedding[extra].to(out.dtype), out)
        return out

    def all_items(self, text_table: Tensor | None = None) -> Tensor:
        """(n_items, dim): every real item, internal-index order; one ID-dropout draw per item."""
        tokens = torch.arange(self.item_offset, self.first_extra_token, device=self.id_known.device)
        return self.forward(tokens, text_table)

    def text_only(self, text: Tensor) -> Tensor:
        """Project raw text vectors through the text path alone (what a cold item gets)."""
        if not self.use_text:
            raise ValueError("this ItemRepresentation has no text path (fusion='id_only')")
        vec = self.text_proj(text.to(self.text_table.dtype))
        if self.masked:
            return vec  # the text part alone: the fusion of an item that has nothing else
        if self.fusion == "gate":
            return self._fuse(torch.zeros_like(vec), vec)
        return vec

    # ------------------------------------------------------------------ catalogue updates
    @torch.no_grad()
    def add_items(self, n_new: int) -> None:
        """Append ``n_new`` items after the last one: no ID part (they have no training
        interactions), no text, no picture until :meth:`set_content` gives them some."""
        if n_new < 0:
            raise ValueError(f"n_new must be >= 0, got {n_new}")
        if self.n_extra_tokens:
            raise ValueError("cannot append items after extra tokens (they would change token ids)")
        if not n_new:
            return

        def grow(buf: Tensor, fill: float | bool = 0) -> Tensor:
            return torch.cat([buf, buf.new_full((n_new, *buf.shape[1:]), fill)])

        self.n_items += n_new
        self.n_tokens += n_new
        if self.id_embedding is not None:
            old = self.id_embedding
            emb = nn.Embedding(self.n_tokens, self.dim, padding_idx=self.padding_idx)
            emb = emb.to(device=old.weight.device, dtype=old.weight.dtype)
            emb.weight.copy_(grow(old.weight.detach()))
            self.id_embedding = emb
        self.id_known = grow(self.id_known, False)
        if self.use_text:
            self.text_table = grow(self.text_table)
            if self.masked:
                self.text_known = grow(self.text_known, False)
        if self.use_image:
            self.image_table = grow(self.image_table)
            self.image_known = grow(self.image_known, False)

    @torch.no_grad()
    def set_content(
        self,
        item_idx: Tensor,
        *,
        text: Tensor | None = None,
        text_known: Tensor | None = None,
        image: Tensor | None = None,
        image_known: Tensor | None = None,
    ) -> None:
        """Replace the frozen text and/or picture rows of items (raw encoder vectors, as at build
        time) and, in the masked tower, which of them the items have."""
        tokens = self.to_tokens(torch.as_tensor(item_idx, dtype=torch.long, device=self.id_known.device))
        if text is not None and self.use_text:
            self.text_table[tokens] = text.to(self.text_table)
        if text_known is not None and self.masked and self.use_text:
            self.text_known[tokens] = torch.as_tensor(text_known, dtype=torch.bool, device=tokens.device)
        if image is not None and self.use_image:
            self.image_table[tokens] = image.to(self.image_table)
        if image_known is not None and self.use_image:
            self.image_known[tokens] = torch.as_tensor(image_known, dtype=torch.bool, device=tokens.device)

    def extra_repr(self) -> str:
        return (
            f"n_items={self.n_items}, dim={self.dim}, fusion={self.fusion}, text_dim={self.text_dim}, "
            f"id_dropout={self.id_dropout}, padding_idx={self.padding_idx}, n_extra_tokens={self.n_extra_tokens}"
            + (
                f", modalities={self.modalities}, image_dim={self.image_dim}, "
                f"modality_dropout={self.modality_dropout}"
                if self.masked
                else ""
            )
        )


__all__ = [
    "FUSIONS",
    "FUSION_MODALITIES",
    "MODALITIES",
    "Fusion",
    "ItemReprSettings",
    "ItemRepresentation",
    "Modality",
    "check_modalities",
]
