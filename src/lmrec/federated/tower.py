"""The item tower of federated two-tower (``fed_two_tower``): what the server aggregates, and the
local torch module that trains it.

Item text is public, so every item's frozen language-model vector ``t_i`` (MiniLM by default,
through the shared encoder and the embedding cache) is computed once, centrally, and every client
gets the same matrix. What is learnt and federated is the *trainable* item side:

    v_i = [t_i, 1] · P  (+ e_i with ``fusion="sum"``),   P: (text_dim + 1) x (factors + 1)

a linear projection of the text vector (its last row is a bias shared by all items) plus, with
``fusion="sum"``, a per-item ID embedding ``e_i`` (lmrec's two_tower fuses ID and projected text the
same way). ``v_i`` has implicit's BPR layout: ``factors`` columns and an item-bias column, so the
resulting item table is served by BPR's fold-in like :class:`lmrec.federated.FedMF`'s. The user side
is FedMF's: one vector per user, on the client only, never sent.

All of the federated parameters travel as **one** float32 matrix, ``P`` stacked over the ID table
(:class:`TowerLayout`): the message layout, Flower's strategies (FedAvg/FedAvgM/FedProx/FedAdam act
entry by entry), Flower's DP clipping (a norm over every entry) and SecAgg+ (one masked vector) are
therefore exactly FedMF's. With ``fusion="text_only"`` only ``P`` travels: 385 x 33 numbers with
MiniLM and 32 factors, against FedMF's 1682 x 33 item table on ml-100k, and under DP-SGD the noise
lands on those few shared numbers rather than on every item's row.

Items without training interactions (cold) are placed by their text: their ID row (``"sum"``)
starts at zero and moves only when the item is drawn as a sampled negative (and, under DP-SGD, by
the noise every entry receives); items added after training (``FedTwoTower.add_items``) have no ID
part at all, ``v_i = [t_i, 1] · P``. ``text_only`` has no ID part for any item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lmrec.federated.ghost import RecordEmbedding

#: the scale of the initial projection and ID entries (FedMF starts its item table at N(0, 0.1²))
INIT_STD = 0.1


def text_centre(text: np.ndarray) -> tuple[np.ndarray, float]:
    """The catalogue's mean text vector and the mean norm of the centred vectors.

    Sentence encoders are anisotropic (every vector shares a large common direction; see
    :mod:`lmrec.models.content`): centring leaves the directions that tell items apart, and unit
    mean norm makes ``INIT_STD`` give the projected vectors FedMF's initial scale. Both statistics
    are of the public catalogue text only, never of interactions, and are fixed at fit time so that
    items added later are placed in the same space.
    """
    t = np.asarray(text, np.float64)
    centre = t.mean(0)
    norm = float(np.linalg.norm(t - centre, axis=1).mean())
    return centre.astype(np.float32), max(norm, 1e-12)


def centred(text: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """``(text - centre) / scale`` in float32 (see :func:`text_centre`)."""
    return ((np.asarray(text, np.float32) - centre) / np.float32(scale)).astype(np.float32)


@dataclass(frozen=True)
class TowerLayout:
    """How the federated item-tower parameters sit in the one matrix that travels.

    Rows ``0 .. text_dim - 1``: the projection's weights (``P`` without its last row); row
    ``text_dim``: the projection's bias; rows after it, with ``ids``: the ``n_items`` ID rows.
    Every row is ``factors + 1`` wide (the last column feeds the item bias).
    """

    text_dim: int
    n_items: int
    factors: int
    ids: bool

    @property
    def shape(self) -> tuple[int, int]:
        return (self.text_dim + 1 + (self.n_items if self.ids else 0), self.factors + 1)

    def init(self, seed: int) -> np.ndarray:
        """The starting parameters: a random projection, zero bias row and bias column, zero IDs
        (so an item starts where its text puts it)."""
        out = np.zeros(self.shape, np.float32)
        rng = np.random.default_rng(seed)
        out[: self.text_dim, :-1] = rng.standard_normal((self.text_dim, self.factors)) * INIT_STD
        return out

    def split(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(P, ID table or None)`` of a packed matrix (checked against the layout)."""
        if packed.shape != self.shape:
            raise ValueError(f"item-tower parameters have shape {packed.shape}, the layout {self.shape}")
        proj = packed[: self.text_dim + 1]
        return proj, (packed[self.text_dim + 1 :] if self.ids else None)

    def table(self, packed: np.ndarray, text: np.ndarray) -> np.ndarray:
        """The item table ``[t_i, 1] · P (+ e_i)`` in BPR's layout (``n_items x (factors + 1)``)."""
        proj, ids = self.split(packed)
        table = project(text, proj)
        if ids is not None:
            table += ids
        return table.astype(np.float32)


def project(text: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """``[t, 1] · P`` for text vectors ``t`` (rows) and a projection ``P`` with its bias row last."""
    return (text.astype(np.float32) @ proj[:-1] + proj[-1]).astype(np.float32)


class TowerBPR(nn.Module):
    """A client's BPR model over the item tower: local user table, frozen public text, the federated
    projection (and ID table). ``forward(users, pairs)`` is the BPR logit of (positive, negative),
    like :class:`lmrec.federated.local._BPR`'s, so the same local loop and DP-SGD train it.

    The text table is a frozen ``nn.Embedding`` (no gradient, nothing for Opacus to clip), the
    projection an ``nn.Linear`` and the IDs a :class:`~lmrec.federated.ghost.RecordEmbedding`:
    layers Opacus's ghost clipping computes per-record gradient norms for.
    """

    def __init__(self, users: np.ndarray, packed: np.ndarray, text: np.ndarray, layout: TowerLayout) -> None:
        super().__init__()
        self.layout = layout
        proj, ids = layout.split(packed)
        self.users = RecordEmbedding.from_pretrained(torch.from_numpy(users.copy()), freeze=False)
        self.text = nn.Embedding.from_pretrained(torch.from_numpy(np.ascontiguousarray(text, np.float32)))
        self.proj = nn.Linear(layout.text_dim, layout.factors + 1)
        with torch.no_grad():
            self.proj.weight.copy_(torch.from_numpy(proj[:-1].T.copy()))
            self.proj.bias.copy_(torch.from_numpy(proj[-1].copy()))
        self.ids = (
            RecordEmbedding.from_pretrained(torch.from_numpy(ids.copy()), freeze=False)
            if ids is not None
            else None
        )

    def forward(self, users: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        u = self.users(users)  # (B, f)
        v = self.proj(self.text(pairs))  # (B, 2, f + 1)
        if self.ids is not None:
            v = v + self.ids(pairs)
        d = v[:, 0] - v[:, 1]
        return (u * d[:, :-1]).sum(-1) + d[:, -1]

    def shared(self) -> list[torch.Tensor]:
        """The federated parameters (what the server aggregates), in packing order."""
        out: list[torch.Tensor] = [self.proj.weight, self.proj.bias]
        if self.ids is not None:
            out.append(self.ids.weight)
        return out

    def packed(self) -> np.ndarray:
        """The federated parameters as the one matrix of :class:`TowerLayout`."""
        parts = [self.proj.weight.detach().T, self.proj.bias.detach()[None, :]]
        if self.ids is not None:
            parts.append(self.ids.weight.detach())
        return np.ascontiguousarray(torch.cat(parts).numpy(), dtype=np.float32)
