"""Contrastive two-tower retrieval: a text-fused item tower and a history-encoding user tower.

Item tower
    :class:`~lmrec.nn.item_repr.ItemRepresentation`: an ID embedding fused (``"sum"`` or
    ``"gate"``) with the frozen language-model embedding of the item's profile text (title, genres,
    ... built by :func:`lmrec.text.build_item_texts`, encoded once through the text cache) through a
    learned projection. ID dropout makes the text path carry an item on its own, and items with no
    training interactions are represented by text alone, so cold items get sensible vectors without
    retraining. ``fusion="id_only"`` is the ablation without text. Optionally (``lora_rank > 0``,
    meant for a GPU) the text encoder itself is fine-tuned with LoRA adapters (``peft``): item text
    vectors are then recomputed by the adapted encoder at the end of each epoch.

User tower
    :class:`~lmrec.nn.towers.HistoryEncoder` over the representations of the user's most recent
    ``max_len`` items (recency-weighted pooling + MLP, or a small causal transformer), plus an
    optional projected profile text of the user's attributes. It has no user-ID table, so an unseen
    user is served from a history alone, and a known user's new events count immediately. A free-text
    query is appended to the history as a "virtual item" embedded by the text path only.

Training
    Next-item prediction over the training sequences: every position of a history window predicts the
    item that followed it (one forward pass gives a training example per interaction). A share of
    the windows (``shuffle_prob``, default 0.2) is randomly reordered first, which mixes in a
    set-style objective ("which other items does this user take?"): measured on ml-100k it helps
    (test NDCG@10 .111 vs .106 without) and it makes the tower robust when histories carry no real
    order. ``future_window > 1`` predicts a random one of the next few items instead. Both towers
    are L2-normalised and scores are cosine similarities over a learned (or fixed) temperature.
    ``loss="full_softmax"`` uses the whole training catalogue as negatives (exact and, below ~50k
    items, cheap); ``loss="sampled_softmax"`` is InfoNCE with in-batch negatives (the batch's distinct
    positive items, logQ-corrected by their training frequency) plus ``n_negatives`` uniformly
    sampled items and optional hard negatives mined by text similarity (``hard_negatives``). Training
    runs on the shared Lightning path (:func:`lmrec.nn.training.fit_module`): CPU or GPU, mixed
    precision on GPU, DDP by configuration, seeded, early stopping on validation NDCG@10 with the
    best weights restored.

Validation
    ``fit(data, valid=frame)`` early-stops on the given held-out interactions (e.g. ``Split.valid``);
    ``fit(data)`` holds out the last interaction of ``val_fraction`` of the users from ``data`` itself
    (leak-free; those events still belong to the served history). ``val_fraction=0`` trains for
    ``train.max_epochs`` without early stopping.

Inference goes through the shared :class:`~lmrec.models.base.EmbeddingRecommender` path
(``query_vectors @ item_vectors.T`` + the shared top-k); when the catalogue has at least
``ann_threshold`` items, ``recommend`` uses the faiss index of :mod:`lmrec.serving.index` instead.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.base import EmbeddingRecommender, ModelConfig, QueryBatch, QueryLike
from lmrec.nn.item_repr import ItemRepresentation
from lmrec.nn.losses import full_softmax_ce, info_nce
from lmrec.nn.towers import HistoryEncoder
from lmrec.nn.training import (
    NeuralTrainConfig,
    RecLightningModule,
    TrainingReport,
    ValidationData,
    fit_module,
    ranking_metrics,
    seed_all,
    split_validation,
)
from lmrec.text.profiles import ProfileConfig

_DEFAULT_TRAIN = NeuralTrainConfig(max_epochs=60, batch_size=128, lr=2e-3, weight_decay=0.0, patience=5)


class TwoTowerConfig(ModelConfig):
    """Hyperparameters of :class:`TwoTower` (one place; the CLI and TOML configs use these names)."""

    #: width of both towers
    dim: int = Field(default=64, ge=4)
    #: item tower: "sum" | "gate" of ID and projected text; "text_only"; "id_only" (no text at all)
    fusion: Literal["sum", "gate", "text_only", "id_only"] = "sum"
    #: probability of zeroing an item's ID part during training (so text alone can carry cold items)
    id_dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: hidden width of a 2-layer text projection (None: one linear layer)
    text_hidden: int | None = Field(default=None, ge=1)
    #: user tower: "pool" (recency-weighted pooling + MLP) or "transformer" (small causal transformer)
    user_encoder: Literal["pool", "transformer"] = "pool"
    n_layers: int = Field(default=2, ge=1)
    n_heads: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: most recent history items the user tower reads
    max_len: int = Field(default=50, ge=2)
    #: add the projected profile text of the user's attributes (data.users) to the user tower
    user_text: bool = False
    #: each position predicts a random one of the next ``future_window`` items (1: the next item
    #: only). Wider windows teach the user tower the user's taste rather than the exact next step.
    future_window: int = Field(default=1, ge=1)
    #: probability that a training window's items are randomly reordered: a set-style objective
    #: ("which other items does this user take?") that trains every history item as an input
    shuffle_prob: float = Field(default=0.2, ge=0.0, le=1.0)
    #: "full_softmax": every training item is a negative; "sampled_softmax": InfoNCE (see module doc)
    loss: Literal["full_softmax", "sampled_softmax"] = "full_softmax"
    #: uniformly sampled extra negatives per batch (sampled_softmax)
    n_negatives: int = Field(default=512, ge=0)
    #: subtract log(sampling probability) from sampled logits (sampled_softmax)
    logq_correction: bool = True
    #: hard negatives per positive, drawn from its most text-similar items (sampled_softmax; needs text)
    hard_negatives: int = Field(default=0, ge=0)
    #: how many text neighbours per item the hard negatives are drawn from
    hard_negative_pool: int = Field(default=50, ge=1)
    #: softmax temperature (initial value when learned)
    temperature: float = Field(default=0.05, gt=0.0)
    learn_temperature: bool = True
    #: fraction of users whose last interaction is held out for early stopping when fit() gets no valid
    val_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    #: text model: None = the bundled offline all-MiniLM-L6-v2, a sentence-transformers name or local dir,
    #: "hashing" for the model-free test encoder
    encoder: str | None = None
    #: device for the text encoder (None: CUDA when present)
    encoder_device: str | None = None
    #: how item profile texts are built
    profile: ProfileConfig = ProfileConfig()
    #: on-disk embedding cache directory (None: encode every time)
    cache_dir: str | None = None
    #: LoRA rank for fine-tuning the text encoder itself (0: frozen encoder); needs peft, meant for GPU
    lora_rank: int = Field(default=0, ge=0)
    lora_alpha: float = Field(default=16.0, gt=0.0)
    #: learning rate of the LoRA adapters
    lora_lr: float = Field(default=1e-4, gt=0.0)
    #: items per LoRA training step (sampled from the batch's positives)
    lora_batch: int = Field(default=64, ge=2)
    #: catalogue size from which recommend() uses a faiss index (0: never)
    ann_threshold: int = Field(default=200_000, ge=0)
    #: how training runs (epochs, batch, lr, device, precision, DDP, early stopping, seed, ...)
    train: NeuralTrainConfig = _DEFAULT_TRAIN

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults(cls, v: Any) -> Any:
        # a partial [model.train] table overrides this model's defaults, not NeuralTrainConfig's
        if isinstance(v, dict):
            return {**_DEFAULT_TRAIN.model_dump(), **v}
        return v

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.hard_negatives and self.fusion == "id_only":
            raise ValueError(
                "hard_negatives are mined by text similarity and need a text fusion, not 'id_only'"
            )
        if self.lora_rank and self.fusion == "id_only":
            raise ValueError("lora_rank fine-tunes the text encoder; fusion='id_only' uses no text")
        return self


# ---------------------------------------------------------------------------------------- LoRA
class LoraTextEncoder(nn.Module):
    """A trainable copy of the sentence-transformer with LoRA adapters (``peft``) on its attention.

    The item profile texts are tokenised once and kept as buffers, so a training step only indexes
    them. ``encode_items(idx)`` returns L2-normalised text vectors with gradients into the adapters;
    ``adapter_state()`` is the (small) set of adapter tensors a saved model keeps for text queries.
    """

    def __init__(
        self,
        model_path: str,
        rank: int,
        alpha: float,
        texts: list[str] | None = None,
        max_seq_length: int = 64,
    ) -> None:
        super().__init__()
        try:
            from peft import LoraConfig, get_peft_model
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as exc:
            raise LmrecError(
                f"two_tower lora_rank > 0 needs {exc.name}: pip install peft sentence-transformers"
            ) from exc
        import transformers.utils.logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar inside a fit
        try:
            st = SentenceTransformer(model_path, device="cpu", local_files_only=Path(model_path).exists())
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        st.max_seq_length = min(int(st.max_seq_length or max_seq_length), max_seq_length)
        backbone: nn.Module = st[0].auto_model  # type: ignore[assignment]
        names = {n.rsplit(".", 1)[-1] for n, _ in backbone.named_modules()}
        targets = [t for t in ("query", "value", "q_proj", "v_proj", "q_lin", "v_lin") if t in names]
        if not targets:
            raise LmrecError(f"two_tower LoRA: no attention projections (query/value) found in {model_path}")
        lora = LoraConfig(
            r=rank,
            lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
            target_modules=targets,
            lora_dropout=0.0,
            bias="none",
        )
        st[0].auto_model = get_peft_model(backbone, lora)
        self.st = st
        self._token_keys: list[str] = []
        if texts is not None:
            feats = self._tokenize(texts)
            for k, v in feats.items():
                if isinstance(v, Tensor):
                    self.register_buffer(f"tok_{k}", v, persistent=False)
                    self._token_keys.append(k)

    def _tokenize(self, texts: list[str]) -> dict[str, Any]:
        # sentence-transformers >= 6 renamed tokenize() to preprocess()
        fn = getattr(self.st, "preprocess", None) or self.st.tokenize
        return dict(fn(texts))

    def _embed(self, feats: dict[str, Tensor]) -> Tensor:
        mask = feats["attention_mask"]
        width = int(mask.sum(1).max().item()) if mask.numel() else 1
        feats = {k: v[:, :width] for k, v in feats.items()}
        return F.normalize(self.st(feats)["sentence_embedding"].float(), dim=-1)

    def encode_items(self, idx: Tensor) -> Tensor:
        """Text vectors of items ``idx`` (internal indices) from the adapted encoder."""
        return self._embed({k: getattr(self, f"tok_{k}")[idx] for k in self._token_keys})

    def encode_texts(self, texts: list[str]) -> Tensor:
        feats = self._tokenize(texts)
        device = next(self.parameters()).device
        return self._embed({k: v.to(device) for k, v in feats.items() if isinstance(v, Tensor)})

    def adapter_state(self) -> dict[str, np.ndarray]:
        from peft import get_peft_model_state_dict

        return {
            k: v.detach().cpu().numpy() for k, v in get_peft_model_state_dict(self.st[0].auto_model).items()
        }

    def load_adapter_state(self, state: dict[str, np.ndarray]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(
            self.st[0].auto_model, {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
        )


# ---------------------------------------------------------------------------------------- network
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
        item_log_freq: Tensor | None = None,
        user_profiles: Tensor | None = None,
        text_neighbours: Tensor | None = None,
    ) -> None:
        super().__init__(cfg.train)
        self.cfg = cfg
        self.n_items = n_items
        self.items = ItemRepresentation(
            n_items,
            cfg.dim,
            text,
            fusion=cfg.fusion,
            id_dropout=cfg.id_dropout,
            padding_idx=0,
            text_hidden=cfg.text_hidden,
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
        inputs = self._item_inputs(text_table)  # one ID-dropout draw per step, shared by both towers
        items_out = self.item_outputs(inputs)
        q = self._user_states(inputs[tokens], tokens > 0, users)
        tau = self.temperature
        if self.cfg.loss == "full_softmax":
            return full_softmax_ce(q, items_out, targets, temperature=tau, item_mask=self.train_items)
        keep = targets >= 0
        q, pos_ids = q[keep], targets[keep]
        pos = items_out[pos_ids]
        # in-batch negatives: the batch's distinct positives, sampled ~ training frequency
        cand_ids = torch.unique(pos_ids)
        cand_logq = self.item_log_freq[cand_ids] if self.cfg.logq_correction else None
        pos_logq = self.item_log_freq[pos_ids] if self.cfg.logq_correction else None
        if self.cfg.n_negatives:
            pool = torch.nonzero(self.train_items).squeeze(1)
            uni = pool[torch.randint(len(pool), (self.cfg.n_negatives,), device=pool.device)]
            cand_ids = torch.cat([cand_ids, uni])
            if cand_logq is not None:
                # uniform sampling: q = n_uniform / n_train_items for every uniform draw
                uni_logq = torch.full(
                    (len(uni),), math.log(self.cfg.n_negatives / len(pool)), device=uni.device
                )
                cand_logq = torch.cat([cand_logq, uni_logq])
        hard = hard_ids = None
        if self.cfg.hard_negatives and self.text_neighbours.shape[1]:
            pick = torch.randint(
                self.text_neighbours.shape[1], (len(pos_ids), self.cfg.hard_negatives), device=q.device
            )
            hard_ids = self.text_neighbours[pos_ids.unsqueeze(1), pick]
            hard = items_out[hard_ids]
        return info_nce(
            q,
            pos,
            items_out[cand_ids],
            temperature=tau,
            in_batch=False,
            pos_ids=pos_ids,
            candidate_ids=cand_ids,
            logq=pos_logq,
            candidate_logq=cand_logq,
            hard_negatives=hard,
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


# ---------------------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=4)
def _shared_encoder(name: str | None, device: str | None) -> Any:
    from lmrec.text.encoder import get_encoder

    return get_encoder(name, device=device)


def _windows(seqs: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _left_pad(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    out = np.zeros((len(seqs), max_len), np.int64)
    for r, s in enumerate(seqs):
        s = s[-max_len:]
        if len(s):
            out[r, max_len - len(s) :] = s + 1
    return out


# ---------------------------------------------------------------------------------------- model
class TwoTower(EmbeddingRecommender):
    """Contrastive two-tower recommender with language-model item text (see the module docstring)."""

    name = "two_tower"
    Config = TwoTowerConfig
    config: TwoTowerConfig
    supports = frozenset({"user", "history", "text"})

    def __init__(self, config: TwoTowerConfig | dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: TwoTowerNet | None = None
        self.report_: TrainingReport | None = None
        self.encoder_id_: str | None = None
        self._item_vecs: np.ndarray | None = None
        self._valid: pl.DataFrame | None = None
        self._lora_state: dict[str, np.ndarray] | None = None
        self._lora_encoder: LoraTextEncoder | None = None

    # ------------------------------------------------------------------ fit
    def fit(self, data: Dataset, valid: pl.DataFrame | None = None) -> Self:
        """Fit on ``data``; ``valid`` (held-out interactions, e.g. ``Split.valid``) drives early stopping."""
        self._valid = valid
        try:
            return super().fit(data)
        finally:
            self._valid = None

    @property
    def encoder(self) -> Any:
        enc = _shared_encoder(self.config.encoder, self.config.encoder_device)
        if self.encoder_id_ is not None and enc.model_id != self.encoder_id_:
            raise LmrecError(
                f"this two_tower model was trained on text vectors from {self.encoder_id_!r} but the "
                f"encoder is {enc.model_id!r}; set encoder to the training model"
            )
        return enc

    def _encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        from lmrec.text.cache import cached_encode

        cache = self.config.cache_dir if kind == "document" else None
        return np.asarray(cached_encode(texts, self.encoder, cache, kind=kind), dtype=np.float32)

    def _item_profile_texts(self, data: Dataset) -> list[str]:
        from lmrec.text.profiles import build_item_texts

        return build_item_texts(data, self.config.profile)

    def _encoder_path(self) -> str:
        enc = self.encoder
        local = getattr(enc, "local_dir", None)
        path = str(local) if local is not None else getattr(enc, "name_or_path", None)
        if path is None:
            raise LmrecError(f"two_tower lora_rank > 0 needs a sentence-transformers encoder, not {enc!r}")
        return path

    def _item_text(self, data: Dataset) -> np.ndarray | None:
        if self.config.fusion == "id_only":
            return None
        vecs = self._encode(self._item_profile_texts(data))
        self.encoder_id_ = self.encoder.model_id
        return vecs

    def _user_profiles(self, data: Dataset) -> np.ndarray | None:
        if not self.config.user_text or data.users is None:
            return None
        from lmrec.text.profiles import build_user_texts

        # attributes only (max_items=0): the history encoder already reads the items
        return self._encode(build_user_texts(data, max_items=0))

    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        seed_all(cfg.train.seed)
        train, valid = split_validation(data, self._valid, cfg.val_fraction, seed=cfg.train.seed)
        t0 = time.perf_counter()
        text = self._item_text(data)
        self.text_seconds_ = time.perf_counter() - t0
        profiles = self._user_profiles(data)
        n_items = data.n_items
        counts = np.bincount(train.interactions["item_idx"].to_numpy(), minlength=n_items).astype(np.float64)
        known = counts > 0
        log_freq = np.log(np.maximum(counts, 1e-12) / max(counts.sum(), 1.0))
        neighbours = None
        if cfg.hard_negatives and text is not None:
            neighbours = _text_neighbours(text, known, cfg.hard_negative_pool)
        net = TwoTowerNet(
            cfg,
            n_items,
            None if text is None else torch.from_numpy(text),
            item_log_freq=torch.from_numpy(log_freq).float(),
            user_profiles=None if profiles is None else torch.from_numpy(profiles),
            text_neighbours=None if neighbours is None else torch.from_numpy(neighbours),
        )
        net.items.set_known_items(torch.from_numpy(known))
        net.train_items.copy_(torch.from_numpy(known))
        self.net = net

        seqs = train.sequences()
        x, y, owners = _windows(seqs, cfg.max_len)
        loader = DataLoader(
            TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(owners)),
            batch_size=cfg.train.batch_size,
            shuffle=True,
            num_workers=cfg.train.num_workers,
            persistent_workers=cfg.train.num_workers > 0,
        )
        val_cb = None
        if valid is not None:
            val_cb = self._validator(train, seqs, valid)
        if cfg.lora_rank:
            net.text_encoder = LoraTextEncoder(
                self._encoder_path(), cfg.lora_rank, cfg.lora_alpha, self._item_profile_texts(data)
            )
        self.report_ = fit_module(net, loader, val_cb, cfg.train)
        self._finalise()

    def _validator(self, train: Dataset, seqs: list[np.ndarray], valid: ValidationData) -> Any:
        tokens_all = _left_pad(seqs, self.config.max_len)
        seen = train.csr("binary")

        def val(net: TwoTowerNet) -> float:
            net.refresh_text()
            inputs = net._item_inputs()
            items_out = net.item_outputs(inputs)
            device = items_out.device

            def score(users: np.ndarray) -> Tensor:
                tok = torch.from_numpy(tokens_all[users]).to(device)
                u = torch.from_numpy(users).to(device)
                return net.encode_users(tok, u, inputs) @ items_out.T

            return ranking_metrics(score, valid, seen, k=10)["ndcg@10"]

        return val

    def _finalise(self) -> None:
        assert self.net is not None
        self.net = self.net.cpu().eval()
        self._lora_state = None
        if self.net.text_encoder is not None:
            # the restored best weights include that epoch's text buffer; re-encode with its adapters,
            # keep the small adapter tensors for text queries and drop the encoder copy from the net
            self.net.refresh_text()
            self._lora_state = self.net.text_encoder.adapter_state()
            self._lora_encoder = self.net.text_encoder.eval()
            self.net.text_encoder = None
        with torch.no_grad():
            self._inputs = self.net._item_inputs()
            self._item_vecs = self.net.item_outputs(self._inputs).numpy().astype(np.float32)

    # ------------------------------------------------------------------ inference
    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        assert self._item_vecs is not None
        return self._item_vecs

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        self._check_fitted()
        assert self.net is not None
        tokens = torch.from_numpy(_left_pad(batch.sequences, self.config.max_len))
        users = torch.from_numpy(np.asarray(batch.user_idx, dtype=np.int64))
        extra = None
        if any(batch.texts):
            if self.config.fusion == "id_only":
                raise LmrecError(
                    "this two_tower model has no text path (fusion='id_only'): it cannot serve text queries"
                )
            rows = [i for i, t in enumerate(batch.texts) if t]
            texts = [batch.texts[i] or "" for i in rows]
            with torch.no_grad():
                if self._lora_state is not None:
                    vec_t = self._query_lora_encoder().encode_texts(texts)
                else:
                    vec_t = torch.from_numpy(self._encode(texts, kind="query"))
                proj = self.net.items.text_only(vec_t)
            extra = torch.full((len(batch), self.config.dim), float("nan"))
            extra[torch.as_tensor(rows)] = proj
        if self.net.user_profiles is not None and len(users):
            users = torch.where(users < self.net.user_profiles.shape[0], users, -1)
        with torch.no_grad():
            q = self.net.encode_users(tokens, users, self._inputs, extra)
        return q.numpy().astype(np.float32)

    def _query_lora_encoder(self) -> LoraTextEncoder:
        """The LoRA-adapted encoder for text queries (rebuilt from the saved adapters after load)."""
        if self._lora_encoder is None:
            assert self._lora_state is not None
            enc = LoraTextEncoder(self._encoder_path(), self.config.lora_rank, self.config.lora_alpha)
            enc.load_adapter_state(self._lora_state)
            self._lora_encoder = enc.eval()
        return self._lora_encoder

    def recommend(
        self,
        queries: QueryLike | Iterable[QueryLike],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        items: Iterable[Any] | None = None,
        exclude: Iterable[Any] | None = None,
        batch_size: int = 1024,
    ) -> pl.DataFrame:
        """As :meth:`Recommender.recommend`; large catalogues (>= ``ann_threshold``) go through faiss."""
        self._check_fitted()
        if not self.config.ann_threshold or self.n_items < self.config.ann_threshold:
            return super().recommend(
                queries, k, exclude_seen=exclude_seen, items=items, exclude=exclude, batch_size=batch_size
            )
        return self._recommend_ann(queries, k, exclude_seen=exclude_seen, items=items, exclude=exclude)

    def _recommend_ann(
        self,
        queries: QueryLike | Iterable[QueryLike],
        k: int,
        *,
        exclude_seen: bool,
        items: Iterable[Any] | None,
        exclude: Iterable[Any] | None,
    ) -> pl.DataFrame:
        from lmrec.models.base import as_queries
        from lmrec.serving.index import VectorIndex

        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        assert self.item_vocab is not None
        if getattr(self, "_ann", None) is None:
            self._ann = VectorIndex(self.item_vectors(), kind="hnsw", seed=self.config.train.seed)
        qs = as_queries(queries)
        batch = self.encode_queries(qs)
        qv = self.query_vectors(batch)
        allowed = None
        if items is not None:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[self.item_vocab.indices(list(items))] = True
        banned = self.item_vocab.indices(list(exclude)) if exclude is not None else np.zeros(0, np.int64)
        idx = np.full((len(qs), k), -1, np.int64)
        val = np.full((len(qs), k), -np.inf, np.float32)
        for r in range(len(qs)):
            ex = banned
            if exclude_seen:
                h = batch.history
                ex = np.concatenate([banned, h.indices[h.indptr[r] : h.indptr[r + 1]].astype(np.int64)])
            i, v = self._ann.search(qv[r : r + 1], int(k), exclude=ex, allowed=allowed)
            idx[r, : i.shape[1]], val[r, : v.shape[1]] = i[0], v[0]
        val[idx < 0] = -np.inf
        return self._to_frame(qs, np.maximum(idx, 0), val, offset=0)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        assert self.net is not None
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        assert self._item_vecs is not None
        state["item_vectors"] = self._item_vecs
        for k, v in (self._lora_state or {}).items():
            state[f"lora.{k}"] = v
        return state

    def _get_extra(self) -> dict[str, Any]:
        assert self.net is not None
        return {
            "n_items": self.net.n_items,
            "text_dim": self.net.items.text_dim,
            "profile_dim": 0 if self.net.user_profiles is None else int(self.net.user_profiles.shape[1]),
            "n_profiles": 0 if self.net.user_profiles is None else int(self.net.user_profiles.shape[0]),
            "encoder_model_id": self.encoder_id_,
            "report": None if self.report_ is None else self.report_.to_dict(),
        }

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        n_items = int(extra["n_items"])
        text_dim = int(extra["text_dim"])
        text = torch.zeros(n_items, text_dim) if text_dim else None
        profiles = (
            torch.zeros(int(extra["n_profiles"]), int(extra["profile_dim"]))
            if extra.get("profile_dim")
            else None
        )
        net = TwoTowerNet(self.config, n_items, text, user_profiles=profiles)
        state = {
            k.removeprefix("net."): torch.from_numpy(np.array(v))
            for k, v in tensors.items()
            if k.startswith("net.")
        }
        missing, unexpected = net.load_state_dict(state, strict=False)
        allowed_missing = {"item_log_freq", "text_neighbours"}
        if unexpected or set(missing) - allowed_missing:
            raise LmrecError(
                f"two_tower: saved state does not match the config (missing {missing}, unexpected {unexpected})"
            )
        self.net = net.eval()
        self.encoder_id_ = extra.get("encoder_model_id")
        self._item_vecs = np.ascontiguousarray(tensors["item_vectors"], dtype=np.float32)
        # the text buffer already holds the fine-tuned item vectors; adapters serve text queries
        lora = {k.removeprefix("lora."): v for k, v in tensors.items() if k.startswith("lora.")}
        self._lora_state = lora or None
        self._lora_encoder = None
        with torch.no_grad():
            self._inputs = self.net._item_inputs()


def _text_neighbours(text: np.ndarray, known: np.ndarray, pool: int) -> np.ndarray:
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
