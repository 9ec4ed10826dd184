"""UniSRec's text adaptor: parametric whitening experts mixed by a softmax gate (Hou et al., 2022).

Frozen language-model vectors of item texts are anisotropic (they crowd into a narrow cone) and
their scale and mean differ from one catalogue, or one encoder, to another. UniSRec fixes both with
a learned, cheap transform instead of fine-tuning the language model:

* :class:`ParametricWhitening`: ``y = (x - b) W``, a learned bias ``b`` (initialised to the mean of
  the text vectors, so training starts from centred inputs) and a linear projection ``W`` to the
  model width. It is "whitening" with parameters learned from the recommendation loss rather than
  estimated from the covariance, which keeps it differentiable and domain-adaptable.
* :class:`MoEAdaptor`: ``k`` whitening experts and a gate ``g(x) = softmax(x G)``; the output is
  ``sum_j g_j(x) * expert_j(x)``. Different experts can specialise on different regions of the text
  space (e.g. different source domains during multi-domain pre-training), and the gate routes each
  item to its own blend.

Both are plain ``nn.Module`` s mapping ``(..., text_dim) -> (..., dim)``; :class:`MoEAdaptor` drops in
as the text path of :class:`~lmrec.nn.item_repr.ItemRepresentation` (its ``text_proj``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

__all__ = ["MoEAdaptor", "ParametricWhitening"]


class ParametricWhitening(nn.Module):
    """``(dropout(x) - b) W``: learned centring, then a projection without bias (UniSRec's PWLayer)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0, init_std: float = 0.02) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"in_dim and out_dim must be positive, got {in_dim}, {out_dim}")
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(in_dim))
        self.proj = nn.Linear(in_dim, out_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.dropout(x) - self.bias)


class MoEAdaptor(nn.Module):
    """``sum_j softmax(x G)_j * whitening_j(x)`` over ``n_experts`` :class:`ParametricWhitening` experts.

    The gate starts at zero (an even mix), so at initialisation the adaptor is the mean of its
    experts and the gate learns to route only when the loss asks for it.
    """

    def __init__(self, in_dim: int, out_dim: int, n_experts: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        self.n_experts = int(n_experts)
        self.experts = nn.ModuleList(ParametricWhitening(in_dim, out_dim, dropout) for _ in range(n_experts))
        self.gate = nn.Parameter(torch.zeros(in_dim, n_experts))

    @property
    def whitening_experts(self) -> list[ParametricWhitening]:
        return [cast(ParametricWhitening, e) for e in self.experts]

    def init_bias(self, mean: Tensor) -> None:
        """Start every expert's whitening bias at ``mean`` (the text vectors' mean)."""
        mean = torch.as_tensor(mean, dtype=self.gate.dtype, device=self.gate.device)
        if mean.shape != (self.in_dim,):
            raise ValueError(f"mean must have shape ({self.in_dim},), got {tuple(mean.shape)}")
        with torch.no_grad():
            for e in self.whitening_experts:
                e.bias.copy_(mean)

    def init_whitening(self, text: Tensor, *, noise: float = 0.01, eps: float = 0.1) -> None:
        """Start every expert as PCA whitening of ``text`` (rows: item vectors): bias = the mean,
        projection = the top ``out_dim`` principal directions scaled to unit variance.

        Training then starts from centred, decorrelated text vectors, whose cosine similarities
        already rank items like a content model, instead of from a random projection. ``eps`` (a
        share of the mean variance added to every direction's) keeps near-empty directions from
        being amplified; ``noise`` (relative) lets the experts differ.
        """
        x = torch.as_tensor(text, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"text must have shape (n, {self.in_dim}), got {tuple(x.shape)}")
        mean = x.mean(dim=0)
        _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
        k = min(self.out_dim, vt.shape[0])
        var = s[:k] ** 2 / max(x.shape[0] - 1, 1)
        # regularised (``eps``): directions of almost no variance are not blown up into noise
        std = (var + eps * var.mean()).sqrt().clamp(min=1e-12)
        w = torch.zeros(self.out_dim, self.in_dim, dtype=torch.float64)
        w[:k] = vt[:k] / std[:, None]
        w *= 0.1  # unit-variance outputs would be large next to the other embeddings; scale matters not
        with torch.no_grad():
            for e in self.whitening_experts:
                e.bias.copy_(mean.to(e.bias.dtype))
                jitter = noise * w.std() * torch.randn_like(w)
                e.proj.weight.copy_((w + jitter).to(e.proj.weight.dtype))

    def gates(self, x: Tensor) -> Tensor:
        """(..., n_experts) mixing weights (each row sums to 1)."""
        return torch.softmax(x @ self.gate.to(x.dtype), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.stack([e(x) for e in self.whitening_experts], dim=-2)  # (..., k, out_dim)
        return (self.gates(x).unsqueeze(-1) * out).sum(dim=-2)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, n_experts={self.n_experts}"
