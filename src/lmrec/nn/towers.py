"""User-side encoders: a history of item representations -> one vector per prefix.

API
---
``HistoryEncoder(dim, max_len, *, kind="pool"|"transformer", n_layers=1, n_heads=2, dropout=0.1,
ffn_mult=2)``

``forward(seq, valid) -> (B, L, dim)``: ``seq (B, L, dim)`` are item representations of a
*left-padded* window (oldest first, most recent item at position ``L - 1``), ``valid (B, L)`` marks
real items. Output position ``t`` summarises items ``0..t`` only (causal), so one pass yields a
training example per position; at inference take the last position (:meth:`encode_last`).

* ``kind="pool"``: recency-weighted attention pooling. Position ``t`` averages the valid items
  ``s <= t`` with weights ``softmax(a[t - s])``, ``a`` a learned score per distance (initialised
  to a gentle decay), then a residual feed-forward block. Cheap, order-aware, no content
  attention: the "pooled + MLP" user tower.
* ``kind="transformer"``: learned absolute positions + ``n_layers`` pre-LayerNorm causal
  self-attention blocks (SASRec's encoder), using ``scaled_dot_product_attention``.

Positions with no valid item at or before them produce zeros. Both kinds end with a LayerNorm.

``CausalTransformerBlock(dim, n_heads, dropout, ffn_mult)`` is exported for sequence models that want
the same block with their own masking.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EncoderKind = Literal["pool", "transformer"]


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(self.norm(x))


class CausalTransformerBlock(nn.Module):
    """Pre-LN self-attention + feed-forward; ``attn_mask (B, 1, L, L)`` bool, True = may attend."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.1, ffn_mult: int = 2) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)
        self.ffn = _FeedForward(dim, ffn_mult, dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, n, d)))
        return self.ffn(x)


class HistoryEncoder(nn.Module):
    """Causal encoder over a left-padded window of item representations (see module docstring)."""

    def __init__(
        self,
        dim: int,
        max_len: int,
        *,
        kind: EncoderKind = "pool",
        n_layers: int = 1,
        n_heads: int = 2,
        dropout: float = 0.1,
        ffn_mult: int = 2,
    ) -> None:
        super().__init__()
        if kind not in ("pool", "transformer"):
            raise ValueError(f"kind must be 'pool' or 'transformer', got {kind!r}")
        self.dim = dim
        self.max_len = max_len
        self.kind: EncoderKind = kind
        self.input_drop = nn.Dropout(dropout)
        if kind == "pool":
            # a[Δ] for Δ = 0..max_len-1; a mild decay start: recent items count more
            self.recency = nn.Parameter(-0.05 * torch.arange(max_len, dtype=torch.float32))
            self.ffn = _FeedForward(dim, ffn_mult, dropout)
        else:
            self.position = nn.Embedding(max_len, dim)
            nn.init.normal_(self.position.weight, std=0.02)
            self.blocks = nn.ModuleList(
                CausalTransformerBlock(dim, n_heads, dropout, ffn_mult) for _ in range(n_layers)
            )
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, seq: Tensor, valid: Tensor) -> Tensor:
        b, n, _ = seq.shape
        if n > self.max_len:
            raise ValueError(f"window length {n} exceeds max_len {self.max_len}")
        pos = torch.arange(n, device=seq.device)
        causal = pos.unsqueeze(1) >= pos.unsqueeze(0)  # (L, L): t attends to s <= t
        allowed = causal.unsqueeze(0) & valid.unsqueeze(1)  # (B, L, L)
        has_any = allowed.any(-1)  # (B, L): some valid item at or before t
        x = self.input_drop(seq)
        if self.kind == "pool":
            dist = (pos.unsqueeze(1) - pos.unsqueeze(0)).clamp(min=0)
            logits = self.recency[dist].unsqueeze(0).expand(b, n, n)
            logits = logits.masked_fill(~allowed, -1e9)
            w = torch.softmax(logits.float(), dim=-1).to(x.dtype) * has_any.unsqueeze(-1).to(x.dtype)
            h = self.ffn(torch.bmm(w, x))
        else:
            # shift positions so the most recent item always has the last position embedding
            h = x + self.position(pos + (self.max_len - n)).unsqueeze(0)
            eye = torch.eye(n, dtype=torch.bool, device=seq.device).unsqueeze(0)
            mask = (allowed | eye).unsqueeze(1)  # self-attention keeps padded rows finite
            for block in self.blocks:
                h = block(h, mask)
        h = self.final_norm(h)
        return h * has_any.unsqueeze(-1).to(h.dtype)

    def encode_last(self, seq: Tensor, valid: Tensor) -> Tensor:
        """(B, L, dim) -> (B, dim): the encoding after the most recent item (position L - 1)."""
        return self.forward(seq, valid)[:, -1]
