"""Transformer blocks and batching for sequential recommenders (SASRec, BERT4Rec, CL4SRec).

Conventions shared by everything here:

* a behaviour sequence is a 1-d array of internal item indices, oldest first;
* batches are **left padded** (right aligned): the most recent item always sits in the last column,
  so the query vector of a sequence is simply the last output position and the positional embedding
  of a column means "distance from now", whatever the sequence length;
* padding is the token :data:`PAD` (-1) and the BERT/CL4SRec mask token is :data:`MASK` (-2): real
  items keep their own indices, so the same index tensors address the item table, the targets and
  the text embeddings without an offset; :func:`item_tokens` maps them to
  :class:`~lmrec.nn.item_repr.ItemRepresentation` tokens (padding row, learned mask row) at embedding time;
* a batch is padded to its own longest sequence, not to ``max_len``: ml-100k's median user has ~65
  events, so this alone makes an epoch several times cheaper than padding everything to 200.

Attention masks are boolean (``True`` = may attend). Every position may attend to itself, which keeps
padding rows from being fully masked (a softmax over nothing is NaN) without a special case; padded
outputs are never read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmrec.nn.losses import info_nce

#: padding token in index tensors
PAD = -1
#: mask token (BERT4Rec's [MASK], CL4SRec's item-mask augmentation)
MASK = -2

Augmentation = Literal["crop", "mask", "reorder"]


# ---------------------------------------------------------------------------------------- masks
def attention_mask(valid: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """(B, 1, L, L) boolean mask from a (B, L) ``valid`` (non-padding) mask.

    A query may attend to valid keys (and, if ``causal``, only to keys at or before it) and always
    to itself, so padding rows have one finite logit and never produce NaN.
    """
    n = valid.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=valid.device)
    allowed = valid[:, None, None, :].expand(-1, 1, n, -1)
    if causal:
        allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
    return allowed | eye


# ---------------------------------------------------------------------------------------- blocks
class MultiHeadSelfAttention(nn.Module):
    """Fused-QKV self-attention on :func:`torch.nn.functional.scaled_dot_product_attention`.

    SDPA picks the fastest kernel available (flash / memory-efficient on GPU, a fused CPU kernel
    otherwise), so this stays fast under mixed precision without hand-written softmax code.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block (attention, then a position-wise feed-forward net).

    Pre-LN rather than the original SASRec post-LN: it trains stably at lr 1e-3 without warm-up,
    which matters when the whole budget is a few dozen CPU epochs.
    """

    def __init__(
        self, dim: int, n_heads: int, dropout: float, ffn_mult: int = 4, attn_dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, n_heads, attn_dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class SequenceEncoder(nn.Module):
    """Positional embeddings + ``n_blocks`` transformer blocks + a final LayerNorm.

    Input: item embeddings (B, L, D) of a left-padded batch and its (B, L) ``valid`` mask, with
    ``L <= max_len``. Column ``j`` of a batch of width ``L`` gets position ``max_len - L + j``, so
    the newest item always has the last position embedding. ``causal=True`` is SASRec (each
    position sees the past only), ``False`` is BERT4Rec (bidirectional). ``dropout`` applies to the
    embeddings and residual branches; ``attn_dropout`` (off by default) to the attention weights,
    whose (B, heads, L, L) random mask is the single most expensive elementwise op on a CPU.
    """

    def __init__(
        self,
        dim: int,
        *,
        max_len: int,
        n_blocks: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
        ffn_mult: int = 4,
        causal: bool = True,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.causal = causal
        self.position = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.input_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, n_heads, dropout, ffn_mult) for _ in range(n_blocks)
        )
        self.final_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, L, D) contextual states; rows at padded positions are meaningless."""
        n = emb.shape[1]
        if n > self.max_len:
            raise ValueError(f"batch width {n} exceeds max_len={self.max_len}; truncate sequences first")
        pos = torch.arange(self.max_len - n, self.max_len, device=emb.device)
        # the input LayerNorm makes the encoder indifferent to the scale of the item representation
        # (ID embeddings, projected text vectors or their sum), so one recipe fits every fusion mode
        x = self.input_drop(self.input_norm(emb + self.position(pos)[None]))
        x = x * valid[..., None].to(x.dtype)
        mask = attention_mask(valid, causal=self.causal)
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)


def item_tokens(idx: torch.Tensor, *, item_offset: int = 1, mask_token: int | None = None) -> torch.Tensor:
    """Batch indices (items, :data:`PAD`, :data:`MASK`) -> :class:`~lmrec.nn.item_repr.ItemRepresentation` tokens.

    With the item representation's default layout (token 0 = padding, item ``i`` = token ``i + 1``)
    ``PAD + 1`` is already the padding token; the mask token is the representation's first extra token.
    """
    tokens = idx + item_offset
    if mask_token is not None:
        tokens = torch.where(idx == MASK, torch.full_like(tokens, mask_token), tokens)
    elif bool((idx == MASK).any()):
        raise ValueError("batch holds MASK tokens but the item representation has no mask token")
    return tokens


def contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 1.0, normalize: bool = True
) -> torch.Tensor:
    """CL4SRec's loss: two views of the same sequence are positives, other sequences in the batch negatives.

    Symmetric :func:`~lmrec.nn.losses.info_nce` with in-batch negatives (each view is the query once).
    ``normalize`` compares directions only (cosine similarity), which keeps the auxiliary loss from
    inflating the norms the next-item softmax relies on.
    """
    if normalize:
        z1 = F.normalize(z1.float(), dim=-1)
        z2 = F.normalize(z2.float(), dim=-1)
    return 0.5 * (info_nce(z1, z2, temperature=temperature) + info_nce(z2, z1, temperature=temperature))


# ---------------------------------------------------------------------------------------- batching
def pad_left(seqs: Sequence[np.ndarray], width: int | None = None, *, fill: int = PAD) -> np.ndarray:
    """Stack sequences right-aligned into an int64 (n, width) array, keeping each one's newest items.

    ``width`` defaults to the longest sequence; longer sequences are truncated from the left
    (oldest items dropped), which is how every query is cut to ``max_len`` at serving time.
    """
    if width is None:
        width = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), max(width, 1)), fill, dtype=np.int64)
    for r, s in enumerate(seqs):
        s = np.asarray(s, dtype=np.int64)[-width:] if width else np.zeros(0, np.int64)
        if len(s):
            out[r, out.shape[1] - len(s) :] = s
    return out


def trim_padding(tokens: np.ndarray) -> np.ndarray:
    """Drop leading all-padding columns so a batch is only as wide as its longest row."""
    filled = (tokens != PAD).any(axis=0)
    first = int(filled.argmax()) if filled.any() else tokens.shape[1] - 1
    return tokens[:, first:]


def windows(seqs: Sequence[np.ndarray], width: int, *, min_len: int = 2) -> list[np.ndarray]:
    """Cut each sequence into consecutive windows of at most ``width`` items, newest window first.

    Consecutive windows overlap by one item so that, when a window is used as (input, next-item
    target) pairs (``w[:-1] -> w[1:]``), every transition of a long history is trained on exactly
    once: SASRec's "all prefix positions" without discarding users' older events. Windows shorter
    than ``min_len`` are dropped.
    """
    out: list[np.ndarray] = []
    step = max(width - 1, 1)
    for s in seqs:
        s = np.asarray(s, dtype=np.int64)
        end = len(s)
        while end >= min_len:
            start = max(0, end - width)
            out.append(s[start:end])
            if start == 0:
                break
            end -= step
    return out


class SequenceDataset(torch.utils.data.Dataset[np.ndarray]):
    """A list of item-index windows; :class:`SequenceCollator` turns a list of them into tensors."""

    def __init__(self, seqs: Sequence[np.ndarray]) -> None:
        self.seqs = list(seqs)

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.seqs[i]


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar-length sequences, in random order, different every epoch.

    Sorting whole epochs by length would fix the batches' composition; instead each sequence's
    sort key is its length times a random factor in ``[1, 1 + jitter)``, so neighbours of similar
    length mix from epoch to epoch while a batch still pads to roughly its own length. On ml-100k
    (median window 65 items, max 200) this cuts the padded tokens per epoch about threefold.
    Randomness comes from torch's global RNG, so ``seed_everything`` makes epochs repeatable.

    ``sampler`` yields the dataset indices to batch (all of them, e.g. a ``SequentialSampler``; or one
    rank's shard). The signature follows :class:`torch.utils.data.BatchSampler` so that Lightning can
    swap in a ``DistributedSampler`` under DDP; ``lengths`` then default to the lengths of the
    sampler's dataset items.
    """

    def __init__(
        self,
        sampler: torch.utils.data.Sampler[int] | Sequence[int],
        batch_size: int,
        drop_last: bool = False,
        *,
        lengths: Sequence[int] | np.ndarray | None = None,
        shuffle: bool = True,
        jitter: float = 0.5,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if lengths is None:
            dataset = getattr(sampler, "dataset", None) or getattr(sampler, "data_source", None)
            if dataset is None:
                raise ValueError(
                    "BucketBatchSampler needs lengths, or a sampler with a .dataset of sequences"
                )
            lengths = [len(dataset[i]) for i in range(len(dataset))]
        self.sampler = sampler
        self.lengths = np.asarray(lengths, dtype=np.float64)
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.jitter = float(jitter)

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):  # type: ignore[no-untyped-def]
        idx = np.fromiter(iter(self.sampler), dtype=np.int64)
        lengths = self.lengths[idx]
        if self.shuffle:
            noise = torch.rand(len(idx), dtype=torch.float64).numpy()
            order = idx[np.argsort(lengths * (1.0 + self.jitter * noise), kind="stable")]
        else:
            order = idx[np.argsort(lengths, kind="stable")]
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        batches = [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]
        sequence = torch.randperm(len(batches)).tolist() if self.shuffle else range(len(batches))
        for b in sequence:
            yield batches[b].tolist()


def _batch_rng() -> np.random.Generator:
    """A numpy generator drawn from torch's global RNG, so seeding torch seeds augmentations too."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


# ---------------------------------------------------------------------------------------- augmentations
def crop(seq: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """A random contiguous sub-sequence of ``ceil(ratio * len)`` items (CL4SRec's item crop)."""
    n = len(seq)
    keep = max(1, math.ceil(ratio * n))
    start = int(rng.integers(0, n - keep + 1))
    return seq[start : start + keep]


def mask_items(seq: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Replace a random ``ratio`` of the items with :data:`MASK` (CL4SRec's item mask)."""
    out = seq.copy()
    n_mask = int(ratio * len(seq))
    if n_mask:
        out[rng.choice(len(seq), n_mask, replace=False)] = MASK
    return out


def reorder(seq: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Shuffle a random contiguous ``ratio`` of the sequence (CL4SRec's item reorder)."""
    n = len(seq)
    span = int(ratio * n)
    if span < 2:
        return seq.copy()
    start = int(rng.integers(0, n - span + 1))
    out = seq.copy()
    out[start : start + span] = rng.permutation(out[start : start + span])
    return out


@dataclass(frozen=True)
class AugmentationConfig:
    """Which CL4SRec augmentations to draw from and how strong each is."""

    kinds: tuple[Augmentation, ...] = ("crop", "mask", "reorder")
    crop_ratio: float = 0.6
    mask_ratio: float = 0.3
    reorder_ratio: float = 0.3

    def apply(self, seq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind == "crop":
            return crop(seq, self.crop_ratio, rng)
        if kind == "mask":
            return mask_items(seq, self.mask_ratio, rng)
        if kind == "reorder":
            return reorder(seq, self.reorder_ratio, rng)
        raise ValueError(f"unknown augmentation {kind!r}; choose crop, mask or reorder")


def augment_pair(
    seqs: Sequence[np.ndarray],
    aug: AugmentationConfig,
    width: int,
    rng: np.random.Generator,
    *,
    append_mask: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Two independently augmented, left-padded views of each sequence (the CL4SRec positive pair).

    ``append_mask`` ends each view with :data:`MASK`, where a bidirectional model reads its query
    state (BERT4Rec), so the contrastive loss shapes the same vector that serving uses.
    """

    def view(s: np.ndarray) -> np.ndarray:
        v = aug.apply(np.asarray(s), rng)
        return np.append(v[-(width - 1) :], MASK) if append_mask else v

    v1 = [view(s) for s in seqs]
    v2 = [view(s) for s in seqs]
    return trim_padding(pad_left(v1, width)), trim_padding(pad_left(v2, width))


@dataclass
class SequenceCollator:
    """Builds training batches: left-padded ``items`` plus, optionally, BERT masking and CL views.

    ``objective="next"`` (SASRec): ``items`` is (B, L+1); inputs are ``items[:, :-1]`` and targets
    ``items[:, 1:]``. ``objective="masked"`` (BERT4Rec): ``inputs`` has a random ``mask_prob`` of the
    items replaced by :data:`MASK` and ``targets`` holds the original item there and :data:`PAD`
    elsewhere; with probability ``last_mask_prob`` a row instead gets only its newest item masked, the
    exact situation the model faces at serving time (a trick from the BERT4Rec reference code).
    ``augment`` adds two CL4SRec views of each sequence (``view1``/``view2``).
    """

    width: int
    objective: Literal["next", "masked"] = "next"
    mask_prob: float = 0.2
    last_mask_prob: float = 0.1
    augment: AugmentationConfig | None = None

    def __call__(self, seqs: list[np.ndarray]) -> dict[str, torch.Tensor]:
        rng = _batch_rng()
        out: dict[str, torch.Tensor] = {}
        if self.objective == "next":
            items = trim_padding(pad_left(seqs, self.width + 1))
            inputs = items[:, :-1]
            # the first item of a sequence has no input before it: nothing predicts it
            targets = np.where(inputs == PAD, PAD, items[:, 1:])
            out["inputs"] = torch.from_numpy(inputs.copy())
            out["targets"] = torch.from_numpy(targets)
            context = [s[:-1] for s in seqs]
        else:
            items = trim_padding(pad_left(seqs, self.width))
            real = items != PAD
            masked = (rng.random(items.shape) < self.mask_prob) & real
            last_only = rng.random(len(items)) < self.last_mask_prob
            masked[last_only] = False
            masked[last_only, -1] = True
            # every row needs at least one prediction, otherwise it contributes nothing
            none = ~masked.any(axis=1)
            masked[none, -1] = True
            inputs = np.where(masked, MASK, items)
            targets = np.where(masked, items, PAD)
            out["inputs"] = torch.from_numpy(inputs)
            out["targets"] = torch.from_numpy(targets)
            context = list(seqs)
        if self.augment is not None:
            v1, v2 = augment_pair(
                context, self.augment, self.width, rng, append_mask=self.objective == "masked"
            )
            out["view1"] = torch.from_numpy(v1)
            out["view2"] = torch.from_numpy(v2)
        return out


def last_state(states: torch.Tensor) -> torch.Tensor:
    """The newest position's state of a left-padded batch: the sequence's query vector."""
    return states[:, -1]
