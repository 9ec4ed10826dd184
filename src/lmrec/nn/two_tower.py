"""The two-tower network: item tower, user tower and the training objectives, plus its batching.

:class:`TwoTowerNet` is the torch part of :class:`lmrec.models.two_tower.TwoTower` (see that
module's docstring for the model): an :class:`~lmrec.nn.item_repr.ItemRepresentation` item tower, a
:class:`~lmrec.nn.towers.HistoryEncoder` user tower, cosine scores over a learned temperature, a full
or sampled softmax (in-batch + uniform + text-mined hard negatives, logQ-corrected), window
shuffling and future-window targets, and optional LoRA fine-tuning of the text encoder
(:mod:`lmrec.nn.lora`). It reads its hyperparameters from the model's ``TwoTowerConfig``.

:func:`next_item_windows` cuts training sequences into left-padded (input, target) windows,
:func:`left_pad` builds the user tower's token rows, :func:`text_neighbours` mines hard-negative
candidates by text similarity.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmrec.errors import LmrecError
from lmrec.nn.item_repr import ItemRepresentation
from lmrec.nn.lora import LoraTextEncoder
from lmrec.nn.losses import full_softmax_ce, info_nce, mixed_negatives, resolve_loss
from lmrec.nn.towers import HistoryEncoder
from lmrec.nn.training import RecLightningModule

if TYPE_CHECKING:
    from lmrec.models.two_tower_config import TwoTowerConfig

__all__ = ["TwoTowerNet", "left_pad", "next_item_windows", "text_neighbours"]


class TwoTowerNet(RecLightningModule):
    """The torch part of :class:`TwoTower` (item tower, user tower, loss)."""

    item_log_freq: Tensor
    text_neighbours: Tensor
    train_items: Tensor
    user_profiles: Tensor | None

    def __init__(
        self,
        cfg: TwoTowerConfig,
        n_items: int,
        text: Tensor | None,
        *,
        loss: str | None = None,
        item_log_freq: Tensor | None = None,
        user_profiles: Tensor | None = None,
        text_neighbours: Tensor | None = None,
        image: Tensor | None = None,
        image_known: Tensor | None = None,
    ) -> None:
        super().__init__(cfg.train)
        self.cfg = cfg
        self.n_items = n_items
        #: the loss trained with: ``loss``, else the config's (``"auto"`` resolved on ``n_items``)
        self.loss = loss or resolve_loss(cfg.loss, n_items, full="full_softmax", sampled="sampled_softmax")
        # with ``modalities`` the masked ID + text + picture tower, else the ID + text one of ``fusion``
        self.items = ItemRepresentation.from_config(
            cfg, n_items, text, padding_idx=0, image_embeddings=image, image_known=image_known
        )
        self.encoder = HistoryEncoder(
            cfg.dim,
            cfg.max_len,
            kind=cfg.user_encoder,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
        )
        self.user_head = nn.Linear(cfg.dim, cfg.dim)
        self.item_head = nn.Linear(cfg.dim, cfg.dim)
        if user_profiles is not None:
            self.register_buffer("user_profiles", user_profiles.float(), persistent=True)
            self.profile_proj: nn.Linear | None = nn.Linear(user_profiles.shape[1], cfg.dim)
        else:
            self.user_profiles = None
            self.profile_proj = None
        init = math.log(1.0 / cfg.temperature)
        self.log_inv_temp = nn.Parameter(torch.tensor(init), requires_grad=cfg.learn_temperature)
        # log training frequency per item (logQ correction of in-batch negatives)
        freq = item_log_freq if item_log_freq is not None else torch.zeros(n_items)
        self.register_buffer("item_log_freq", freq.float(), persistent=False)
        nb = text_neighbours if text_neighbours is not None else torch.zeros(n_items, 0, dtype=torch.long)
        self.register_buffer("text_neighbours", nb.long(), persistent=False)
        self.register_buffer("train_items", torch.ones(n_items, dtype=torch.bool), persistent=True)
        #: set by TwoTower when fine-tuning the text encoder (lora_rank > 0)
        self.text_encoder: LoraTextEncoder | None = None

    # ------------------------------------------------------------------ pieces
    @torch.no_grad()
    def add_items(self, n_new: int) -> None:
        """Append ``n_new`` cold catalogue items (never trained on); see
        :meth:`ItemRepresentation.add_items`. Their content comes with ``items.set_content``."""
        self.items.add_items(n_new)
        self.n_items += n_new
        self.train_items = torch.cat([self.train_items, self.train_items.new_zeros(n_new)])
        self.item_log_freq = torch.cat([self.item_log_freq, self.item_log_freq.new_zeros(n_new)])
        nb = self.text_neighbours
        self.text_neighbours = torch.cat([nb, nb.new_zeros(n_new, nb.shape[1])])

    @property
    def temperature(self) -> Tensor:
        # clamp like CLIP: 1/100 <= temperature <= 1
        return torch.exp(-self.log_inv_temp.clamp(0.0, math.log(100.0)))

    def _item_inputs(self, text_table: Tensor | None = None) -> Tensor:
        """(n_items + 1, dim): row 0 is padding, the token layout the history encoder indexes."""
        table = self.items.all_items(text_table)
        return torch.cat([table.new_zeros(1, table.shape[1]), table], dim=0)

    def item_outputs(self, inputs: Tensor) -> Tensor:
        """(n_items, dim) L2-normalised item tower output from the input table."""
        return F.normalize(self.item_head(inputs[1:]), dim=-1)

    def _user_states(self, seq: Tensor, valid: Tensor, users: Tensor | None) -> Tensor:
        h = self.encoder(seq, valid)
        if self.profile_proj is not None and self.user_profiles is not None and users is not None:
            known = users >= 0
            prof = self.user_profiles[users.clamp(min=0)] * known.unsqueeze(-1).to(self.user_profiles.dtype)
            h = h + self.profile_proj(prof).unsqueeze(1) * valid.any(-1, keepdim=True).unsqueeze(-1).to(
                h.dtype
            )
        return F.normalize(self.user_head(h), dim=-1)

    def encode_users(
        self,
        tokens: Tensor,
        users: Tensor | None = None,
        inputs: Tensor | None = None,
        extra: Tensor | None = None,
    ) -> Tensor:
        """(B, L) left-padded tokens -> (B, dim) normalised query vectors (state after the last item).

        ``extra`` (B, dim) with NaN rows for "none" is appended as a virtual last item (text queries).
        """
        inputs = self._item_inputs() if inputs is None else inputs
        seq = inputs[tokens]
        valid = tokens > 0
        if extra is not None:
            has = ~torch.isnan(extra).any(-1)
            if has.any():
                shifted = torch.cat([seq[:, 1:], torch.nan_to_num(extra).unsqueeze(1)], dim=1)
                shifted_valid = torch.cat([valid[:, 1:], has.unsqueeze(1)], dim=1)
                seq = torch.where(has[:, None, None], shifted, seq)
                valid = torch.where(has[:, None], shifted_valid, valid)
        return self._user_states(seq, valid, users)[:, -1]

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        tokens, targets, users = batch
        if self.cfg.shuffle_prob > 0:
            tokens, targets = self._shuffle_windows(tokens, targets)
        if self.cfg.future_window > 1:
            targets = self._future_targets(targets)
        text_table = self._fresh_text(targets) if self.text_encoder is not None else None
        if self.loss == "full_softmax":
            inputs = self._item_inputs(text_table)  # one ID-dropout draw per step, shared by both towers
            items_out = self.item_outputs(inputs)
            q = self._user_states(inputs[tokens], tokens > 0, users)
            return full_softmax_ce(
                q, items_out, targets, temperature=self.temperature, item_mask=self.train_items
            )
        return self._sampled_loss(tokens, targets, users, text_table)

    def _sampled_loss(
        self, tokens: Tensor, targets: Tensor, users: Tensor, text_table: Tensor | None
    ) -> Tensor:
        """InfoNCE over in-batch, uniform and hard negatives, computing only the items it touches.

        The item tower runs once over the distinct items of the step (history tokens, positives and
        every negative), with one ID-dropout draw per item shared by both towers, so a step costs
        the same on a 10k- and a 1M-item catalogue.
        """
        cfg = self.cfg
        keep = targets >= 0
        pos_ids = targets[keep]
        pool = torch.nonzero(self.train_items).squeeze(1)
        cand_ids, cand_logq, pos_logq = mixed_negatives(
            pos_ids,
            pool,
            self.item_log_freq if cfg.logq_correction else None,
            in_batch=cfg.in_batch_negatives,
            uniform=cfg.n_negatives,
        )
        hard_ids = None
        if cfg.hard_negatives and self.text_neighbours.shape[1]:
            pick = torch.randint(
                self.text_neighbours.shape[1], (len(pos_ids), cfg.hard_negatives), device=pos_ids.device
            )
            hard_ids = self.text_neighbours[pos_ids.unsqueeze(1), pick]
        history = tokens[tokens > 0] - 1
        parts = [history, pos_ids, cand_ids] + ([hard_ids.reshape(-1)] if hard_ids is not None else [])
        touched = torch.unique(torch.cat(parts))  # sorted item indices
        rows = self.items(self.items.to_tokens(touched), text_table)  # (U, dim)
        # local token layout: 0 = padding, 1 + j = touched[j]
        local_inputs = torch.cat([rows.new_zeros(1, rows.shape[1]), rows], dim=0)
        local_tokens = torch.where(tokens > 0, torch.searchsorted(touched, (tokens - 1).clamp(min=0)) + 1, 0)
        q = self._user_states(local_inputs[local_tokens], tokens > 0, users)[keep]
        out = F.normalize(self.item_head(rows), dim=-1)

        def local(ids: Tensor) -> Tensor:
            return out[torch.searchsorted(touched, ids)]

        return info_nce(
            q,
            local(pos_ids),
            local(cand_ids),
            temperature=self.temperature,
            in_batch=False,
            pos_ids=pos_ids,
            candidate_ids=cand_ids,
            logq=pos_logq,
            candidate_logq=cand_logq,
            hard_negatives=None if hard_ids is None else local(hard_ids),
            hard_negative_ids=hard_ids,
        )

    def _shuffle_windows(self, tokens: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Randomly reorder the items of a ``shuffle_prob`` share of the windows (padding stays left)."""
        b, n = tokens.shape
        full = torch.cat([tokens - 1, targets[:, -1:]], dim=1)  # (B, L+1) items, -1 = padding
        valid = full >= 0
        pick = torch.rand(b, 1, device=tokens.device) < self.cfg.shuffle_prob
        keys = torch.where(
            valid,
            1.0 + torch.rand(full.shape, device=tokens.device),
            torch.zeros_like(full, dtype=torch.float),
        )
        order = torch.where(
            pick, keys.argsort(dim=1), torch.arange(n + 1, device=tokens.device).expand(b, -1)
        )
        full = full.gather(1, order)
        return full[:, :n] + 1, torch.where(full[:, 1:] >= 0, full[:, 1:], torch.full_like(full[:, 1:], -100))

    def _future_targets(self, targets: Tensor) -> Tensor:
        """Replace each target by a random one of the next ``future_window`` targets in its window."""
        n = targets.shape[1]
        offset = torch.randint(0, self.cfg.future_window, targets.shape, device=targets.device)
        idx = (torch.arange(n, device=targets.device) + offset).clamp(max=n - 1)
        # windows are left-padded, so every position after a valid one is valid too
        return torch.where(targets >= 0, targets.gather(1, idx), targets)

    # ------------------------------------------------------------------ LoRA fine-tuning
    def _fresh_text(self, targets: Tensor) -> Tensor:
        """The text buffer with some of the batch's positives re-encoded by the adapted encoder.

        Gradients reach the adapters through those rows; the other rows are the (slightly stale)
        vectors of the last refresh. The fresh rows are also written back into the buffer.
        """
        assert self.text_encoder is not None
        uniq = torch.unique(targets[targets >= 0])
        chosen = uniq[torch.randperm(len(uniq), device=uniq.device)[: self.cfg.lora_batch]]
        fresh = self.text_encoder.encode_items(chosen)
        buffer = self.items.text_table
        rows = chosen + self.items.item_offset
        table = buffer.index_put((rows,), fresh.to(buffer.dtype))
        with torch.no_grad():
            buffer[rows] = fresh.detach().to(buffer.dtype)
        return table

    @torch.no_grad()
    def refresh_text(self, batch_size: int = 256) -> None:
        """Re-encode every item's text with the adapted encoder (end of epoch / before validation)."""
        if self.text_encoder is None:
            return
        was = self.text_encoder.training
        self.text_encoder.eval()
        buffer = self.items.text_table
        for start in range(0, self.n_items, batch_size):
            idx = torch.arange(start, min(start + batch_size, self.n_items), device=buffer.device)
            buffer[idx + self.items.item_offset] = self.text_encoder.encode_items(idx).to(buffer.dtype)
        self.text_encoder.train(was)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = self.optimizer_groups(exclude_prefixes=("text_encoder.",))
        if self.text_encoder is not None:
            adapters = [p for p in self.text_encoder.parameters() if p.requires_grad]
            groups.append({"params": adapters, "lr": self.cfg.lora_lr, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, lr=self.train_cfg.lr)


# ---------------------------------------------------------------------------------------- data helpers
def next_item_windows(seqs: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each sequence into left-padded (input, target) windows of ``max_len`` positions.

    Windows are taken from the end backwards with stride ``max_len``, so each interaction after the
    first is a target exactly once. Inputs are tokens (item + 1, 0 = padding); targets are item
    indices, -100 where there is nothing to predict.
    """
    ins, outs, owners = [], [], []
    for u, s in enumerate(seqs):
        n = len(s)
        if n < 2:
            continue
        end = n
        while end > 1:
            start = max(0, end - max_len - 1)
            w = s[start:end]
            x = np.zeros(max_len, np.int64)
            y = np.full(max_len, -100, np.int64)
            x[max_len - (len(w) - 1) :] = w[:-1] + 1
            y[max_len - (len(w) - 1) :] = w[1:]
            ins.append(x)
            outs.append(y)
            owners.append(u)
            end = start + 1  # the next window's last target is this window's first input
    if not ins:
        raise LmrecError("two_tower: no user has two or more training interactions; nothing to learn from")
    return np.stack(ins), np.stack(outs), np.asarray(owners, np.int64)


def left_pad(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    out = np.zeros((len(seqs), max_len), np.int64)
    for r, s in enumerate(seqs):
        s = s[-max_len:]
        if len(s):
            out[r, max_len - len(s) :] = s + 1
    return out


def text_neighbours(text: np.ndarray, known: np.ndarray, pool: int) -> np.ndarray:
    """For every item, ``pool`` most text-similar *training* items (hard-negative candidates)."""
    cand = np.flatnonzero(known)
    pool = min(pool, max(len(cand) - 1, 1))
    t = torch.from_numpy(text)
    t = F.normalize(t, dim=-1)
    out = np.empty((len(text), pool), np.int64)
    ct = t[torch.from_numpy(cand)]
    for start in range(0, len(text), 2048):
        sims = t[start : start + 2048] @ ct.T
        rows = torch.arange(start, min(start + 2048, len(text)))
        # an item is not its own hard negative
        self_col = torch.from_numpy(np.searchsorted(cand, rows.numpy()))
        is_self = (self_col < len(cand)) & (torch.from_numpy(cand)[self_col.clamp(max=len(cand) - 1)] == rows)
        sims[torch.nonzero(is_self).squeeze(1), self_col[is_self]] = -torch.inf
        out[start : start + len(rows)] = cand[torch.topk(sims, pool, dim=1).indices.numpy()]
    return out
