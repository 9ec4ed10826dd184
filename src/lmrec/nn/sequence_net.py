"""The SASRec / BERT4Rec / UniSRec network: item representation, transformer, objectives.

:class:`SequenceNet` is the torch half of :class:`lmrec.models.sasrec.SequentialRecommender`
(which owns data, validation and persistence); it lives here so the model file stays about the
model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lmrec.nn.click import ClickHead
from lmrec.nn.item_repr import ItemRepresentation
from lmrec.nn.losses import (
    bce_with_negatives,
    full_softmax_ce,
    log_frequency,
    mixed_negatives,
    resolve_loss,
    sampled_softmax,
)
from lmrec.nn.sequence import (
    PAD,
    SequenceEncoder,
    contrastive_loss,
    item_tokens,
    last_state,
    pad_left,
    trim_padding,
)
from lmrec.nn.training import RecLightningModule

if TYPE_CHECKING:
    from lmrec.models.sasrec import SequentialConfig

__all__ = ["SequenceNet"]


class SequenceNet(RecLightningModule):
    """Item representation + transformer encoder (+ click head) with the training objectives.

    Batches come from :class:`~lmrec.nn.sequence.SequenceCollator`: ``inputs``/``targets`` hold item
    indices with :data:`~lmrec.nn.sequence.PAD` (and :data:`~lmrec.nn.sequence.MASK`); positions
    whose target is not ``PAD`` are predicted. ``view1``/``view2`` (CL4SRec) are optional.
    """

    known_idx: Tensor
    known_mask: Tensor
    item_log_freq: Tensor

    def __init__(
        self,
        cfg: SequentialConfig,
        n_items: int,
        text: Tensor | None,
        known: Tensor,
        *,
        causal: bool,
        image: Tensor | None = None,
        image_known: Tensor | None = None,
    ) -> None:
        super().__init__(cfg.train)
        self.cfg = cfg
        # with ``modalities`` the masked ID + text + picture tower, else the ID + text one of ``fusion``
        self.items = ItemRepresentation.from_config(
            cfg,
            n_items,
            text,
            padding_idx=0,
            n_extra_tokens=1,  # the mask token (BERT4Rec's [MASK], CL4SRec's item mask)
            known_items=known,
            image_embeddings=image,
            image_known=image_known,
        )
        self.encoder = SequenceEncoder(
            cfg.dim,
            max_len=cfg.max_len,
            n_blocks=cfg.n_blocks,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            ffn_mult=cfg.ffn_mult,
            causal=causal,
            attn_dropout=cfg.attn_dropout,
        )
        self.click = (
            ClickHead(cfg.dim, cfg.click_hidden, cfg.dropout, detach=cfg.click_detach)
            if cfg.click_head
            else None
        )
        known = known.to(torch.bool)
        #: the loss trained with (the config's ``"auto"`` resolved on the training catalogue's size)
        self.loss = resolve_loss(cfg.loss, int(known.sum()), full="full_ce", sampled="sampled_softmax")
        # items absent from training leave the softmax: as never-positive classes their vectors
        # (text vectors, for cold items) would only ever be pushed down
        self.register_buffer("known_mask", known.clone(), persistent=False)
        self.register_buffer("known_idx", torch.nonzero(known).flatten(), persistent=False)
        # log training frequency per item: the logQ of in-batch negatives (sampled softmax)
        self.register_buffer("item_log_freq", torch.zeros(n_items), persistent=False)

    # ------------------------------------------------------------------ encoding
    def embed(self, idx: Tensor) -> Tensor:
        return self.items(
            item_tokens(idx, item_offset=self.items.item_offset, mask_token=self.items.mask_token)
        )

    def states(self, idx: Tensor) -> Tensor:
        """(B, L) item indices (left padded) -> (B, L, dim) contextual states."""
        return self.encoder(self.embed(idx), idx != PAD)

    def item_table(self) -> Tensor:
        return self.items.all_items()

    def init_ids_from_text(self, text: np.ndarray) -> None:
        """Set the item ID embeddings to the top principal components of ``text`` (n_items, text_dim).

        Scaled to the ID table's initial standard deviation, so only the geometry changes: items
        whose profiles are alike start as neighbours, and training moves them from there.
        """
        emb = self.items.id_embedding
        if emb is None:
            raise ValueError("this item representation has no ID table (fusion='text_only')")
        x = np.asarray(text, dtype=np.float64)
        x = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        k = min(self.cfg.dim, vt.shape[0])
        z = np.zeros((x.shape[0], self.cfg.dim))
        z[:, :k] = x @ vt[:k].T
        z *= float(emb.weight.detach().std()) / max(float(z.std()), 1e-12)
        off = self.items.item_offset
        with torch.no_grad():
            emb.weight[off : off + x.shape[0]] = torch.from_numpy(z).to(emb.weight.dtype)

    def set_item_frequency(self, counts: np.ndarray) -> None:
        """Training interaction counts per item (the sampled softmax's logQ; training only)."""
        self.item_log_freq.copy_(log_frequency(counts).to(self.item_log_freq.device))

    def _sample(self, shape: tuple[int, ...]) -> Tensor:
        """Uniform random training items (never cold ones) of the given shape."""
        pick = torch.randint(0, len(self.known_idx), shape, device=self.known_idx.device)
        return self.known_idx[pick]

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        inputs, targets = batch["inputs"], batch["targets"]
        h = self.states(inputs)
        sel = targets != PAD
        q, t = h[sel], targets[sel]
        loss = self.ranking_loss(q, t)
        if self.click is not None and self.cfg.click_weight > 0:
            neg = self._sample((len(t), self.cfg.click_negatives))
            loss = loss + self.cfg.click_weight * self.click.loss(q, self.embed(t), self.embed(neg))
        if "view1" in batch and self.cfg.cl_weight > 0:
            z1 = last_state(self.states(batch["view1"]))
            z2 = last_state(self.states(batch["view2"]))
            loss = loss + self.cfg.cl_weight * contrastive_loss(z1, z2, temperature=self.cfg.cl_temperature)
        return loss

    def ranking_loss(self, q: Tensor, t: Tensor) -> Tensor:
        """Next/masked-item loss of states ``q (M, d)`` for target items ``t (M,)``."""
        cfg = self.cfg
        if self.loss == "full_ce":
            return full_softmax_ce(
                q, self.item_table(), t, item_mask=self.known_mask, label_smoothing=cfg.label_smoothing
            )
        pos = self.embed(t)
        if self.loss == "sampled_softmax":
            cand, cand_logq, pos_logq = mixed_negatives(
                t,
                self.known_idx,
                self.item_log_freq if cfg.logq_correction else None,
                in_batch=cfg.in_batch_negatives,
                uniform=cfg.n_negatives,
            )
            return sampled_softmax(
                q, pos, self.embed(cand), pos_ids=t, negative_ids=cand, logq=pos_logq, negative_logq=cand_logq
            )
        neg = self._sample((len(t),))
        return bce_with_negatives(q, pos, self.embed(neg))

    # ------------------------------------------------------------------ inference
    def device_(self) -> torch.device:
        return next(self.parameters()).device

    def encode_queries(self, seqs: Sequence[np.ndarray], batch_size: int = 256) -> Tensor:
        """(n, dim) query states of already prepared sequences (see ``SequentialRecommender._prepare``).

        Sequences are batched by length so that short histories are not padded to long ones.
        """
        device = self.device_()
        out = torch.empty(len(seqs), self.cfg.dim, device=device)
        order = np.argsort([len(s) for s in seqs], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            idx = trim_padding(pad_left([seqs[r] for r in rows], self.cfg.max_len))
            states = self.states(torch.from_numpy(idx).to(device))
            out[torch.from_numpy(rows).to(device)] = last_state(states).float()
        return out
