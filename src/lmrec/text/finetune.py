"""Fine-tune the sentence encoder with LoRA on item co-occurrence pairs ("text that pays").

A general-purpose sentence encoder places items by what their texts *say*; a recommender wants them
placed by what people *use together*. Two items a user interacted with one after the other (within
``window`` positions of a time-ordered history) form a positive pair, and the encoder is trained to
find each pair's partner among the other items of the batch (symmetric in-batch InfoNCE at
``temperature``, i.e. sentence-transformers' MultipleNegativesRankingLoss in both directions, with
accidental hits, the same item twice in one batch, masked). Only low-rank adapters on the attention
projections train (:class:`lmrec.nn.lora.LoraTextEncoder`), which keeps a CPU run to minutes and the
model close to the base.

Leakage: pairs come only from the interactions of the :class:`~lmrec.data.dataset.Dataset` passed
in: pass a split's **training** part. Items without training interactions (a cold-item split's cold
items) then never appear in a pair; they benefit only through the changed encoder, which is exactly
the inductive setting. Popular items would otherwise supply most pairs, so each item takes part in
at most ``max_pairs_per_item`` pairs (strongest co-occurrences first).

A slice of pairs (``valid_fraction``) is held out: before and after training the run reports their
in-batch loss and **pair recall@10** (the partner among the top 10 of every paired item by cosine),
so a run says whether the encoder learned anything that generalises to unseen pairs.

Output: the adapters are merged into the weights and the result is saved as an ordinary
sentence-transformers directory (``model.safetensors``, no pickle, loadable without peft) plus
``finetune.json`` (base model id, data checksum, config, steps, seconds, loss curve, validation
metrics, sha256 of the weights). Use the directory wherever an encoder name goes
(``encoder="<dir>"`` in content, unisrec, two_tower, hybrid text features; ``lmrec encode -m``).
Because ``finetune.json`` holds the weights' hash and the encoder's cache key fingerprints a local
directory's JSON files, cached vectors of the fine-tuned model never mix with the base model's.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lmrec._atomic import atomic_write_text
from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.text.encoder import SentenceTransformerEncoder, get_encoder, torch_threads
from lmrec.text.profiles import ProfileConfig, build_item_texts

__all__ = [
    "FinetuneConfig",
    "FinetuneReport",
    "cooccurrence_pairs",
    "finetune_encoder",
    "pair_recall",
]

MANIFEST = "finetune.json"


class FinetuneConfig(BaseModel):
    """Settings of :func:`finetune_encoder`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: encoder to start from (None: the bundled all-MiniLM-L6-v2; or a local sentence-transformers dir)
    base_model: str | None = None
    #: LoRA rank and scale (alpha / rank multiplies the adapter update)
    rank: int = Field(default=8, ge=1)
    alpha: float = Field(default=16.0, gt=0.0)
    #: dropout inside the adapters (regularises a small pair set)
    lora_dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: adapters on the top this many transformer layers only (None: all); on a CPU the backward
    #: pass through the untouched lower layers is skipped, so a step is cheaper
    top_layers: int | None = Field(default=None, ge=1)
    lr: float = Field(default=2e-4, gt=0.0)
    #: pairs per step (each pair's partner competes with the other 2 * batch_size - 2 texts)
    batch_size: int = Field(default=32, ge=2)
    #: stop after this many optimiser steps ...
    max_steps: int = Field(default=300, ge=0)
    #: ... or this many seconds of training, whichever comes first (None: no time limit)
    max_seconds: float | None = Field(default=600.0, gt=0.0)
    #: tokens per text while training (the saved model keeps the base model's own limit)
    max_seq_length: int = Field(default=128, ge=8)
    #: InfoNCE temperature over cosine similarities (0.05 = MultipleNegativesRankingLoss's scale 20)
    temperature: float = Field(default=0.05, gt=0.0)
    #: items at most this many positions apart in a user's time-ordered history form a pair
    window: int = Field(default=2, ge=1)
    #: cap on the pairs one item takes part in (strongest co-occurrences kept)
    max_pairs_per_item: int = Field(default=20, ge=1)
    #: share of pairs held out for the validation loss and pair recall@10
    valid_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    #: at most this many held-out pairs are scored (validation costs encoder time)
    max_valid_pairs: int = Field(default=1000, ge=1)
    #: how item profile texts are built (use the downstream model's profile)
    profile: ProfileConfig = ProfileConfig()
    seed: int = 0
    #: torch CPU threads (None: lmrec.text.encoder.default_threads)
    threads: int | None = None
    #: log the training loss every this many steps (the loss curve in the manifest)
    log_every: int = Field(default=10, ge=1)
    show_progress: bool = True


class FinetuneReport(BaseModel):
    """What a fine-tuning run did (also written as ``finetune.json`` beside the weights)."""

    base_model: str
    dataset: str
    data_checksum: str
    config: dict[str, Any]
    n_train_pairs: int
    n_valid_pairs: int
    steps: int
    seconds: float
    stopped_by: str
    loss_curve: list[tuple[int, float]]
    valid_before: dict[str, float]
    valid_after: dict[str, float]
    weights_sha256: str
    lmrec_version: str


# ---------------------------------------------------------------------------------------- pairs
def cooccurrence_pairs(data: Dataset, *, window: int = 2, max_pairs_per_item: int = 20) -> np.ndarray:
    """(n, 2) int64 internal item indices of positive pairs from ``data``'s interactions.

    Items ``a != b`` at most ``window`` positions apart in one user's time-ordered history; each
    unordered pair once. Pairs are taken strongest first (number of users with the pair, ties by
    indices, so the result is deterministic) while both items have fewer than ``max_pairs_per_item``
    pairs, so a popular item cannot take over the pair set.
    """
    lefts, rights = [], []
    for seq in data.sequences():
        for d in range(1, window + 1):
            if len(seq) > d:
                lefts.append(seq[:-d])
                rights.append(seq[d:])
    if not lefts:
        return np.zeros((0, 2), np.int64)
    a, b = np.concatenate(lefts), np.concatenate(rights)
    keep = a != b
    lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    codes, counts = np.unique(lo.astype(np.int64) * data.n_items + hi, return_counts=True)
    order = np.lexsort((codes, -counts))  # strongest first; ties by index
    pairs = np.stack([codes[order] // data.n_items, codes[order] % data.n_items], axis=1)
    used = np.zeros(data.n_items, np.int64)
    out = []
    for x, y in pairs:
        if used[x] < max_pairs_per_item and used[y] < max_pairs_per_item:
            used[x] += 1
            used[y] += 1
            out.append((x, y))
    return np.asarray(out, np.int64).reshape(-1, 2)


def pair_recall(vectors: np.ndarray, pairs: np.ndarray, k: int = 10) -> float:
    """Share of (item, partner) directions whose partner is in the item's top ``k`` by cosine.

    Candidates are all rows of ``vectors`` (unit rows) except the item itself; both directions of
    every pair count.
    """
    if len(pairs) == 0:
        return float("nan")
    q = np.concatenate([pairs[:, 0], pairs[:, 1]])
    t = np.concatenate([pairs[:, 1], pairs[:, 0]])
    hits = 0
    for start in range(0, len(q), 512):
        qs, ts = q[start : start + 512], t[start : start + 512]
        sims = vectors[qs] @ vectors.T
        sims[np.arange(len(qs)), qs] = -np.inf
        target = sims[np.arange(len(qs)), ts]
        hits += int(((sims > target[:, None]).sum(axis=1) < k).sum())
    return hits / len(q)


# ---------------------------------------------------------------------------------------- training
def _info_nce(za: Any, zb: Any, ia: Any, ib: Any, temperature: float) -> Any:
    """Symmetric in-batch InfoNCE; other columns holding the row's own item(s) are masked."""
    import torch
    import torch.nn.functional as F

    logits = za @ zb.T / temperature
    same = (ib[None, :] == ib[:, None]) | (ib[None, :] == ia[:, None])
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(len(za), device=za.device)
    same_t = (ia[None, :] == ia[:, None]) | (ia[None, :] == ib[:, None])
    same_t.fill_diagonal_(False)
    logits_t = (zb @ za.T / temperature).masked_fill(same_t, float("-inf"))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits_t, target))


def _valid_metrics(enc: Any, pairs: np.ndarray, cfg: FinetuneConfig) -> dict[str, float]:
    """Held-out pairs' in-batch loss and pair recall@10 among all items that appear in them."""
    import torch

    if len(pairs) == 0:
        return {}
    items = np.unique(pairs)
    enc.eval()
    vecs = []
    with torch.no_grad():
        for s in range(0, len(items), 64):
            vecs.append(enc.encode_items(torch.from_numpy(items[s : s + 64])).cpu().numpy())
        table = np.concatenate(vecs)
        local = np.searchsorted(items, pairs)
        losses = []
        for s in range(0, len(pairs), cfg.batch_size):
            chunk = torch.from_numpy(local[s : s + cfg.batch_size])
            if len(chunk) < 2:
                continue
            t = torch.from_numpy(table)
            losses.append(
                float(_info_nce(t[chunk[:, 0]], t[chunk[:, 1]], chunk[:, 0], chunk[:, 1], cfg.temperature))
            )
    enc.train()
    return {
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "pair_recall@10": pair_recall(table, local, k=10),
        "n_candidates": float(len(items)),
    }


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _base_path(cfg: FinetuneConfig) -> tuple[str, str]:
    enc = get_encoder(cfg.base_model)
    if not isinstance(enc, SentenceTransformerEncoder) or enc.local_dir is None:
        raise LmrecError(
            f"finetune needs a local sentence-transformers model directory as base, got {cfg.base_model!r}"
        )
    return str(enc.local_dir), enc.model_id


def finetune_encoder(
    train: Dataset, out: str | os.PathLike[str], config: FinetuneConfig | None = None, **params: Any
) -> FinetuneReport:
    """LoRA-fine-tune the encoder on ``train``'s co-occurrence pairs; save the merged model in ``out``.

    Pass the **training** part of a split: every interaction of ``train`` may become a pair.
    Returns the report that is also written to ``out/finetune.json``.
    """
    import torch
    from tqdm.auto import tqdm

    from lmrec import __version__
    from lmrec.nn.lora import LoraTextEncoder

    cfg = config.model_copy(update=params) if config is not None else FinetuneConfig(**params)
    cfg = FinetuneConfig.model_validate(cfg.model_dump())
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LmrecError(f"finetune output directory {out} is not empty; pick a new one")
    base_path, base_id = _base_path(cfg)
    pairs = cooccurrence_pairs(train, window=cfg.window, max_pairs_per_item=cfg.max_pairs_per_item)
    if len(pairs) < 2:
        raise LmrecError(
            f"dataset {train.name!r} yields {len(pairs)} co-occurrence pairs; finetune needs users with "
            "two or more interactions"
        )
    rng = np.random.default_rng(cfg.seed)
    pairs = pairs[rng.permutation(len(pairs))]
    n_valid = min(round(cfg.valid_fraction * len(pairs)), cfg.max_valid_pairs)
    valid, train_pairs = pairs[:n_valid], pairs[n_valid:]

    torch.manual_seed(cfg.seed)
    texts = build_item_texts(train, cfg.profile)
    with torch_threads(cfg.threads):
        enc = LoraTextEncoder(
            base_path,
            cfg.rank,
            cfg.alpha,
            texts,
            max_seq_length=cfg.max_seq_length,
            dropout=cfg.lora_dropout,
            top_layers=cfg.top_layers,
        )
        params_ = [p for p in enc.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params_, lr=cfg.lr, weight_decay=0.0)
        before = _valid_metrics(enc, valid, cfg)
        curve: list[tuple[int, float]] = []
        running: list[float] = []
        started = time.perf_counter()
        step, pos, stopped_by = 0, 0, "max_steps"
        enc.train()
        bar = tqdm(total=cfg.max_steps, desc="finetune (LoRA)", unit="step", disable=not cfg.show_progress)
        while step < cfg.max_steps:
            if cfg.max_seconds is not None and time.perf_counter() - started >= cfg.max_seconds:
                stopped_by = "max_seconds"
                break
            if pos + cfg.batch_size > len(train_pairs):  # new epoch: reshuffle
                train_pairs = train_pairs[rng.permutation(len(train_pairs))]
                pos = 0
            batch = torch.from_numpy(train_pairs[pos : pos + cfg.batch_size])
            pos += cfg.batch_size
            z = enc.encode_items(torch.cat([batch[:, 0], batch[:, 1]]))
            za, zb = z[: len(batch)], z[len(batch) :]
            loss = _info_nce(za, zb, batch[:, 0], batch[:, 1], cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running.append(float(loss.detach()))
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                curve.append((step, float(np.mean(running))))
                bar.set_postfix(loss=f"{curve[-1][1]:.3f}")
                running = []
            bar.update(1)
        bar.close()
        if running:
            curve.append((step, float(np.mean(running))))
        seconds = time.perf_counter() - started
        after = _valid_metrics(enc, valid, cfg)
        model = enc.merged()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out), create_model_card=False, safe_serialization=True)
    weights = out / "model.safetensors"
    if not weights.exists():
        raise LmrecError(f"sentence-transformers saved no model.safetensors in {out}")
    report = FinetuneReport(
        base_model=base_id,
        dataset=train.name,
        data_checksum=train.checksum(),
        config=cfg.model_dump(mode="json"),
        n_train_pairs=len(train_pairs),
        n_valid_pairs=len(valid),
        steps=step,
        seconds=round(seconds, 1),
        stopped_by=stopped_by,
        loss_curve=curve,
        valid_before=before,
        valid_after=after,
        weights_sha256=_sha256(weights),
        lmrec_version=__version__,
    )
    atomic_write_text(out / MANIFEST, report.model_dump_json(indent=1))
    return report
