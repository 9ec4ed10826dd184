"""One client's local training step of federated BPR matrix factorisation, in torch.

The client holds the interactions of its users and their user factors; the server sends the item
factors ``V`` (``n_items x (factors + 1)``: the last column is an item bias, implicit's BPR layout,
so the fold-in of :class:`lmrec.models.mf.BPR` serves the result). A local update is a few epochs of
BPR on the client's records, one record = one (user, item) interaction with a freshly sampled
negative item:

    loss = softplus(-(u · (v_i - v_j) + b_i - b_j)),  weight decay λ on every factor

and returns the new ``V``; the user factors are kept on the client (FCF, Ammad-ud-din et al. 2019)
and never leave it. For federated two-tower (:mod:`lmrec.federated.tower`) ``V`` is computed from the
public item text by the federated projection (and ID table), and those parameters are what is trained
and returned instead.

With ``noise_multiplier > 0`` the step is record-level DP-SGD through Opacus: Poisson-sampled
batches, each record's gradient (over the user *and* item factors it touches) clipped to
``max_grad_norm`` and Gaussian noise added. The user factors are inside the DP module on purpose:
they are a function of every local record and they shape the item gradients of later steps, so only
when they too are produced by the DP mechanism is the item-factor release covered by the
accountant. Per-record gradient norms come from Opacus's ghost clipping, which never builds the
``batch x n_items x dim`` per-sample gradient of the item table that its ``hooks`` mode would; for
the embedding tables Opacus takes them from :mod:`lmrec.federated.ghost`'s closed form.
"""

from __future__ import annotations

import collections
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lmrec.federated.ghost import RecordEmbedding, register
from lmrec.federated.tower import TowerBPR, TowerLayout


@dataclass(frozen=True)
class LocalConfig:
    """Hyperparameters of one local update (set by the server for every round)."""

    factors: int
    learning_rate: float
    regularization: float
    epochs: int
    batch_size: int
    #: 0: no DP; else Opacus's Gaussian noise multiplier (σ / clipping norm)
    noise_multiplier: float = 0.0
    #: per-record clipping norm (DP only)
    max_grad_norm: float = 1.0
    #: "adam" (fresh moments every round) or "sgd"
    optimizer: str = "adam"
    #: FedProx's proximal term μ/2 |V - V_global|² (0: off)
    proximal_mu: float = 0.0


class _BPR(nn.Module):
    """User and item tables; ``forward(users, pairs)`` is the BPR logit of (positive, negative)."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        super().__init__()
        self.users = RecordEmbedding.from_pretrained(torch.from_numpy(users.copy()), freeze=False)
        self.items = RecordEmbedding.from_pretrained(torch.from_numpy(items.copy()), freeze=False)

    def forward(self, users: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        u = self.users(users)  # (B, f)
        v = self.items(pairs)  # (B, 2, f + 1): positive and negative, one call (one per-sample norm)
        d = v[:, 0] - v[:, 1]
        return (u * d[:, :-1]).sum(-1) + d[:, -1]

    def shared(self) -> list[torch.Tensor]:
        """The federated parameters (what the server aggregates): the item table."""
        return [self.items.weight]

    def packed(self) -> np.ndarray:
        return _numpy(self.items)


@dataclass
class LocalResult:
    items: np.ndarray
    users: np.ndarray
    loss: float
    #: DP-SGD steps taken and the Poisson sample rate used (for the accountant); 0 without DP
    steps: int
    sample_rate: float


def local_update(
    items: np.ndarray,
    users: np.ndarray,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    config: LocalConfig,
    rng: np.random.Generator,
    tower: tuple[np.ndarray, TowerLayout] | None = None,
) -> LocalResult:
    """Train on one client's records (``user_idx`` local to ``users``, ``item_idx`` global) from the
    item factors ``items``; return the new item and user factors and the mean training loss.

    With ``tower = (text, layout)`` (federated two-tower) ``items`` is the packed item-tower matrix
    of :class:`~lmrec.federated.tower.TowerLayout` over the public text vectors ``text``, and so is
    the returned ``items``: the same loss and optimiser train the projection (and ID table) instead
    of a free item table."""
    model: _BPR | TowerBPR
    if tower is None:
        n_items = items.shape[0]
        model = _BPR(users.astype(np.float32), items.astype(np.float32))
    else:
        text, layout = tower
        n_items = layout.n_items
        model = TowerBPR(users.astype(np.float32), items.astype(np.float32), text, layout)
    n = len(user_idx)
    anchor = [p.detach().clone() for p in model.shared()] if config.proximal_mu > 0 else None
    seed = int(rng.integers(2**31))
    torch.manual_seed(seed)
    u_all = torch.from_numpy(user_idx.astype(np.int64))
    i_all = torch.from_numpy(item_idx.astype(np.int64))
    if n == 0:
        return LocalResult(items.copy(), users.copy(), 0.0, 0, 0.0)
    losses: list[float] = []
    if config.noise_multiplier <= 0:
        plain = _PlainOptimizer([p for p in model.parameters() if p.requires_grad], config)
        for _ in range(config.epochs):
            order = torch.from_numpy(rng.permutation(n))
            for start in range(0, n, config.batch_size):
                b = order[start : start + config.batch_size]
                neg = torch.from_numpy(rng.integers(0, n_items, len(b)))
                logit = model(u_all[b], torch.stack([i_all[b], neg], 1))
                loss = nn.functional.softplus(-logit).mean()
                total = loss + _proximal(model, anchor, config.proximal_mu)
                plain.zero_grad()
                total.backward()
                plain.step()
                losses.append(float(loss.detach()))
        return LocalResult(model.packed(), _numpy(model.users), float(np.mean(losses)), 0, 0.0)
    return _dp_update(model, _optimizer(model, config), anchor, u_all, i_all, n_items, config, rng, seed)


def _dp_update(
    model: _BPR | TowerBPR,
    opt: torch.optim.Optimizer,
    anchor: list[torch.Tensor] | None,
    u_all: torch.Tensor,
    i_all: torch.Tensor,
    n_items: int,
    config: LocalConfig,
    rng: np.random.Generator,
    seed: int,
) -> LocalResult:
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader

    register()  # Opacus clips our tables with lmrec.federated.ghost's per-record norms
    n = len(u_all)
    batch = min(config.batch_size, n)
    # the negatives are drawn once per epoch and belong to the record: a record is (u, i, j)
    neg = torch.from_numpy(rng.integers(0, n_items, (config.epochs, n)))
    loader = DataLoader(
        _RecordIndex(n),
        batch_size=batch,
        collate_fn=_first,
        generator=torch.Generator().manual_seed(seed),
    )
    with warnings.catch_warnings():
        # "secure RNG turned off": expected in research use; the accountant is unaffected
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp", secure_mode=False)
        dp_model, dp_opt, criterion, dp_loader = engine.make_private(
            module=model,
            optimizer=opt,
            data_loader=loader,
            criterion=nn.BCEWithLogitsLoss(),
            noise_multiplier=config.noise_multiplier,
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode="ghost",
        )
    losses: list[float] = []
    steps = 0
    for epoch in range(config.epochs):
        for (b,) in dp_loader:
            if len(b) == 0:
                continue  # a Poisson batch can be empty; Opacus counts the step in the accountant anyway
            logit = dp_model(u_all[b], torch.stack([i_all[b], neg[epoch, b]], 1))
            loss = criterion(logit, torch.ones_like(logit))
            dp_opt.zero_grad()
            with warnings.catch_warnings():
                # Opacus hooks the embedding tables, whose inputs are indices: torch notes that the
                # hook sees only output gradients, which is all the per-sample norms need
                warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
                loss.backward()
            if anchor is not None:  # data-independent: added after clipping and noise
                with torch.no_grad():
                    for p, a in zip(model.shared(), anchor, strict=True):
                        assert p.grad is not None  # every federated parameter is in the loss
                        p.grad.add_(config.proximal_mu * (p - a))
            dp_opt.step()
            losses.append(float(loss.detach()))
        steps += len(dp_loader)
    sample_rate = 1.0 / len(dp_loader)
    return LocalResult(
        model.packed(),
        _numpy(model.users),
        float(np.mean(losses)) if losses else math.nan,
        steps,
        sample_rate,
    )


class _RecordIndex(torch.utils.data.Dataset[tuple[torch.Tensor]]):
    """The record indices ``0 .. n - 1`` as a dataset that hands out a whole batch at once.

    Opacus's Poisson loader draws a list of indices per step; a ``TensorDataset`` would answer with
    one tensor per index, stacked again by the collate function (17 % of a py-spy profile of DP training).
    ``__getitems__`` (which torch's loader prefers) returns the batch as one tensor instead, in a
    one-element list that :func:`_first` unwraps; an empty draw stays an empty list, which Opacus's
    collate wrapper turns into an empty batch. Same indices, same order: same training.
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (torch.tensor(i),)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor]]:
        return [(torch.as_tensor(indices, dtype=torch.long),)] if len(indices) else []


def _first(batch: list[tuple[torch.Tensor]]) -> tuple[torch.Tensor]:
    return batch[0]


def _optimizer(model: _BPR | TowerBPR, config: LocalConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # not the tower's frozen text
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, weight_decay=config.regularization)
    return _TorchAdam(params, lr=config.learning_rate, weight_decay=config.regularization)


class _TorchAdam(torch.optim.Optimizer):
    """``torch.optim.Adam(params, lr, weight_decay=wd)`` on CPU, bit for bit (its single-tensor
    path: the same operations in the same order; a test compares them with ``torch.equal``), for
    Opacus's ``DPOptimizer`` to wrap in the DP-SGD update.

    Any ``torch.optim.Optimizer`` method imports ``torch._dynamo`` on first use: seconds in a quiet
    process, over a minute in each fresh Ray actor on a busy 2-core machine, paid again by every DP
    simulation. This class sets the attributes Opacus reads (``param_groups``, ``state``,
    ``defaults``) without ``Optimizer.__init__`` and overrides ``step`` and ``zero_grad``.
    """

    def __init__(self, params: list[nn.Parameter], *, lr: float, weight_decay: float) -> None:
        # no super().__init__: see the class docstring
        self.defaults = {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay}
        self.param_groups = [{"params": params, **self.defaults}]
        self.state = collections.defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
                continue
            if p.grad.grad_fn is not None:
                p.grad.detach_()
            else:
                p.grad.requires_grad_(False)
            p.grad.zero_()

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        group = self.param_groups[0]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            grad = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
            state["step"] += 1
            state["exp_avg"].lerp_(grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = state["step"].item()
            step_size = lr / (1 - beta1**step)
            denom = (state["exp_avg_sq"].sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
            p.addcdiv_(state["exp_avg"], denom, value=-step_size)


class _PlainOptimizer:
    """``torch.optim.Adam`` / ``SGD`` (coupled weight decay, no AMSGrad) for the non-DP update.

    The same arithmetic as torch's (a test compares them step by step), written out because the
    first ``torch.optim.Optimizer`` of a process imports ``torch._dynamo``: 3 s in a quiet process,
    over a minute in a fresh Ray actor on a busy 2-core machine, paid again by every simulation.
    DP-SGD needs a ``torch.optim.Optimizer`` for Opacus to wrap: :class:`_TorchAdam` (or torch's SGD).
    """

    def __init__(self, params: list[nn.Parameter], config: LocalConfig) -> None:
        self.params = params
        self.lr = config.learning_rate
        self.wd = config.regularization
        self.adam = config.optimizer == "adam"
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            g = p.grad if self.wd == 0 else p.grad + self.wd * p
            if not self.adam:
                p.sub_(self.lr * g)
                continue
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / (1 - b2**self.t)).sqrt_().add_(eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def _proximal(model: _BPR | TowerBPR, anchor: list[torch.Tensor] | None, mu: float) -> torch.Tensor:
    if anchor is None:
        return torch.zeros(())
    return (
        0.5
        * mu
        * sum((((p - a) ** 2).sum() for p, a in zip(model.shared(), anchor, strict=True)), torch.zeros(()))
    )


def _numpy(table: nn.Embedding) -> np.ndarray:
    return np.ascontiguousarray(table.weight.detach().numpy(), dtype=np.float32)
