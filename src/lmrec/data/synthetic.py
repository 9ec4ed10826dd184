"""Synthetic interaction data at any size, streamed to Parquet: for measuring how costs grow.

Real datasets stop at a few sizes (ml-100k, ml-1m, ml-20m); a cost curve needs the same kind of data
at 100k, 1M, 5M, 20M interactions and beyond, and a test needs it in a second. The generator draws a
catalogue and a user base from a small generative story, chosen so that each model family has
something real to learn:

* **Topics.** Every item belongs to one of ``n_topics`` topics (uneven sizes) and one of
  ``n_subtopics`` styles within it. Each user likes 1 to ``topics_per_user`` topics (Dirichlet
  weights) and, inside each, one favourite style. Collaborative models learn these clusters from
  co-occurrence; the item text names them, so a text model learns them from words.
* **Power laws.** Item popularity follows a Zipf law over a random item order (``popularity_exponent``)
  and user activity a Pareto law (``activity_exponent``) above ``min_user_interactions``, the two
  long tails every real log has and which decide most costs (heavy users, blockbuster items).
* **Sessions.** A user's history is a sequence of sessions (mean length ``session_length``); a
  session stays on one of the user's topics, so the next item depends on the previous ones, which is
  what sequence models exploit. Sessions are spread over the user's active period, events within a
  session minutes apart.
* **Noise.** A share ``exploration`` of events ignores taste and follows global popularity, so
  popularity is a real baseline and no model is perfect.

Each event is drawn as: session topic (from the user's topic weights) -> style (the favourite with
probability ``subtopic_focus``, else uniform) -> item within that (topic, style) cluster by
popularity. This hierarchical draw costs ``O(log n_items)`` per event, so a 1M-item catalogue is as
cheap as a 1k one (scoring every item for every user would be ``O(n_users * n_items)``).

Output (``generate(config, out)``): ``interactions.parquet`` (``user_id, item_id, timestamp``; one
row per (user, item) pair, users in id order and each user's events in time order), written one
row group per chunk of users so memory stays ``O(chunk_rows + n_users + n_items)``;
``items.parquet`` (``item_id, title, description, tags``), also in chunks; ``synthetic.json`` with
the config and the counts. The folder loads with :func:`load_synthetic`, or like any own data with
``lmrec datasets add NAME --interactions DIR/interactions.parquet --items DIR/items.parquet``.
Everything is a pure function of the config (``seed`` included): same config, same bytes.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmrec.data.dataset import Dataset
from lmrec.data.synthetic_text import item_texts, vocabularies
from lmrec.errors import LmrecError

#: bumped whenever the same config would produce different files (caches compare it)
GENERATOR_VERSION = 2
#: ml-20m's shape, the reference the default user and item counts scale from
ML20M_INTERACTIONS = 20_000_263
ML20M_USERS = 138_493
ML20M_ITEMS = 27_278


class SyntheticConfig(BaseModel):
    """What to generate; every field has a default chosen to resemble MovieLens-like logs.

    ``n_users`` / ``n_items`` default from ml-20m's shape: users grow linearly with the number of
    interactions (ml-20m's 144 per user), items with its square root (catalogues grow slower than
    activity), anchored at ml-20m (138,493 users and 27,278 items at 20M interactions). At 100k this
    gives 692 users and 1,929 items, close to ml-100k's 943 and 1,682. Below about 20k interactions
    there are more users than that, so that the mean user needs at most half the items one user may
    have (``max_user_share`` of the catalogue).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: target number of interaction rows (the output has exactly this many unless users run out of
    #: distinct items, which the counts in ``synthetic.json`` would show)
    n_interactions: int = Field(default=100_000, ge=1)
    #: None: scaled from ml-20m (see the class docstring)
    n_users: int | None = Field(default=None, ge=1)
    #: None: scaled from ml-20m (see the class docstring)
    n_items: int | None = Field(default=None, ge=2)
    #: latent topics (the first 24 have real-word vocabularies)
    n_topics: int = Field(default=24, ge=1)
    #: styles within a topic, each with its own words
    n_subtopics: int = Field(default=6, ge=1)
    #: Zipf exponent of item popularity (1.0: the k-th item is k times rarer than the first)
    popularity_exponent: float = Field(default=0.9, ge=0.0)
    #: Pareto (Lomax) tail index of user activity above the floor (lower: heavier tail); 2.0 gives
    #: ml-20m's (median - min) / (mean - min) of about 0.4 (68, 20, 144)
    activity_exponent: float = Field(default=2.0, gt=0.0)
    #: no user has fewer events (ml-20m keeps users with 20+; smaller sets need a lower floor)
    min_user_interactions: int = Field(default=5, ge=1)
    #: at most this share of the catalogue per user (keeps the heaviest users' draws distinct)
    max_user_share: float = Field(default=0.3, gt=0.0, le=1.0)
    #: most topics a user likes
    topics_per_user: int = Field(default=3, ge=1)
    #: probability that an event is in the session topic's favourite style of the user
    subtopic_focus: float = Field(default=0.7, ge=0.0, le=1.0)
    #: probability that an event ignores taste and follows global popularity
    exploration: float = Field(default=0.15, ge=0.0, le=1.0)
    #: mean events per session (geometric lengths)
    session_length: float = Field(default=6.0, ge=1.0)
    #: first possible timestamp (Unix seconds; default 2015-01-01)
    start: int = Field(default=1_420_070_400, ge=0)
    #: length of the whole log in days
    span_days: float = Field(default=730.0, gt=0.0)
    #: interaction rows per written chunk (memory scales with this, not with the total)
    chunk_rows: int = Field(default=1_000_000, ge=1_000)
    seed: int = 0

    @model_validator(mode="after")
    def _check_sizes(self) -> SyntheticConfig:
        users, items = self.users, self.items
        floor = users * self.min_user_interactions
        if floor > self.n_interactions:
            raise ValueError(
                f"{users} users x min_user_interactions={self.min_user_interactions} = {floor} exceeds "
                f"n_interactions={self.n_interactions}; give fewer users or a lower floor"
            )
        cap = self.user_cap
        if cap < self.min_user_interactions:
            raise ValueError(
                f"n_items={items} x max_user_share={self.max_user_share} allows {cap} items per user, below "
                f"min_user_interactions={self.min_user_interactions}; give more items"
            )
        if users * cap < self.n_interactions:
            raise ValueError(
                f"{users} users x {cap} distinct items each cannot hold {self.n_interactions} interactions; "
                "give more users or items"
            )
        return self

    @property
    def users(self) -> int:
        """The number of users (given, or scaled from ml-20m)."""
        if self.n_users is not None:
            return self.n_users
        scaled = round(ML20M_USERS * self.n_interactions / ML20M_INTERACTIONS)
        # tiny sets: enough users that the mean user needs at most half the per-user item cap
        return max(1, scaled, math.ceil(2 * self.n_interactions / self.user_cap))

    @property
    def items(self) -> int:
        """The number of items (given, or scaled from ml-20m)."""
        if self.n_items is not None:
            return self.n_items
        return max(2, round(ML20M_ITEMS * math.sqrt(self.n_interactions / ML20M_INTERACTIONS)))

    @property
    def user_cap(self) -> int:
        return max(1, int(self.items * self.max_user_share))


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`generate` wrote."""

    folder: Path
    n_interactions: int
    n_users: int
    n_items: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "n_interactions": self.n_interactions,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------------------- world
@dataclass(frozen=True)
class _World:
    """The latent structure every chunk draws from (``O(n_users + n_items)`` memory)."""

    # items, in cluster order (topic-major, then style): position -> external id
    item_ids: np.ndarray
    item_topic: np.ndarray
    item_sub: np.ndarray
    # cumulative popularity weights in cluster order, and each cluster's [start, stop) positions
    cum_weight: np.ndarray
    cluster_start: np.ndarray
    cluster_stop: np.ndarray
    topic_start: np.ndarray
    topic_stop: np.ndarray
    # global popularity sampling: cumulative weights over the same positions
    # users
    counts: np.ndarray
    user_topics: np.ndarray  # (n_users, topics_per_user), -1 = unused slot
    user_cum_prob: np.ndarray  # (n_users, topics_per_user) cumulative slot probabilities
    user_fav_sub: np.ndarray  # (n_users, topics_per_user)
    user_start: np.ndarray
    user_span: np.ndarray


def _activity(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Events per user: a Pareto tail above the floor, summing exactly to ``n_interactions``."""
    n, total, floor, cap = cfg.users, cfg.n_interactions, cfg.min_user_interactions, cfg.user_cap
    raw = (1.0 - rng.random(n)) ** (-1.0 / cfg.activity_exponent) - 1.0  # Lomax (Pareto II)
    counts = np.full(n, floor, dtype=np.int64)
    free = np.ones(n, dtype=bool)
    left = total - counts.sum()
    # share what is left above the floor in proportion to the draws; users at the cap drop out
    # and the next pass shares their excess among the others
    while left > 0 and free.any():
        share = (raw + 1e-9) * free
        add = np.floor(left * share / share.sum()).astype(np.int64)
        add = np.minimum(add, cap - counts)
        counts += add
        free &= counts < cap
        left = total - counts.sum()
        if add.sum() == 0:  # rounding remainder: one more event to the heaviest free users
            idx = np.flatnonzero(free)[np.argsort(-raw[free], kind="stable")][:left]
            counts[idx] += 1
            free &= counts < cap
            left = total - counts.sum()
    return counts


def _world(cfg: SyntheticConfig) -> _World:
    rng = np.random.default_rng([cfg.seed, 0])
    n_users, n_items, n_topics, n_sub = cfg.users, cfg.items, cfg.n_topics, cfg.n_subtopics
    # topics of uneven size (Zipf 0.5): a few big genres, many niches
    topic_weight = 1.0 / np.arange(1, n_topics + 1) ** 0.5
    topic_weight /= topic_weight.sum()
    topic = rng.choice(n_topics, size=n_items, p=topic_weight)
    sub = rng.integers(0, n_sub, size=n_items)
    # popularity: Zipf over a random order, independent of the topic
    rank = rng.permutation(n_items) + 1
    weight = 1.0 / rank.astype(np.float64) ** cfg.popularity_exponent
    order = np.lexsort((rng.random(n_items), sub, topic))  # cluster order, random within a cluster
    topic, sub, weight = topic[order], sub[order], weight[order]
    ids = (rng.permutation(n_items) + 1).astype(np.int64)  # ids say nothing about the cluster
    cluster = topic * n_sub + sub
    bins = np.arange(n_topics * n_sub + 1)
    c_start = np.searchsorted(cluster, bins[:-1], side="left")
    c_stop = np.searchsorted(cluster, bins[:-1], side="right")
    t_start = np.searchsorted(topic, np.arange(n_topics), side="left")
    t_stop = np.searchsorted(topic, np.arange(n_topics), side="right")

    k = cfg.topics_per_user
    n_liked = rng.integers(1, k + 1, size=n_users)
    # each user's topics: popular topics more often (Gumbel top-k = sampling without replacement)
    keys = np.log(topic_weight)[None, :] - np.log(-np.log(rng.random((n_users, n_topics))))
    liked = np.argsort(-keys, axis=1)[:, :k]
    slots = np.arange(k)[None, :] < n_liked[:, None]
    prob = rng.gamma(1.0, size=(n_users, k)) * slots  # Dirichlet(1) over the liked topics
    prob /= prob.sum(axis=1, keepdims=True)
    user_topics = np.where(slots, liked, -1).astype(np.int32)
    fav = rng.integers(0, n_sub, size=(n_users, k)).astype(np.int32)
    span = cfg.span_days * 86_400.0
    user_start = cfg.start + rng.random(n_users) * span * 0.8
    user_span = (cfg.start + span - user_start) * rng.uniform(0.05, 1.0, size=n_users)
    return _World(
        item_ids=ids,
        item_topic=topic.astype(np.int32),
        item_sub=sub.astype(np.int32),
        cum_weight=np.cumsum(weight),
        cluster_start=c_start,
        cluster_stop=c_stop,
        topic_start=t_start,
        topic_stop=t_stop,
        counts=_activity(cfg, rng),
        user_topics=user_topics,
        user_cum_prob=np.cumsum(prob, axis=1).astype(np.float64),
        user_fav_sub=fav,
        user_start=user_start,
        user_span=user_span,
    )


def _draw_in(
    world: _World, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, uniform: bool = False
) -> np.ndarray:
    """One position per row in ``[lo, hi)``, by popularity (inverse-CDF on the cumulative weights)."""
    if uniform:
        return np.minimum(lo + (rng.random(len(lo)) * (hi - lo)).astype(np.int64), hi - 1)
    cw = world.cum_weight
    base = np.where(lo > 0, cw[np.maximum(lo - 1, 0)], 0.0)
    top = cw[hi - 1]
    r = base + rng.random(len(lo)) * (top - base)
    pos = np.searchsorted(cw, r, side="right")
    return np.clip(pos, lo, hi - 1)


def _draw(
    cfg: SyntheticConfig,
    world: _World,
    users: np.ndarray,
    draws: np.ndarray,
    level: int,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """``draws[j]`` events of ``users[j]``: sessions, each on one of the user's topics.

    ``level`` widens where an event's item comes from, for users whose clusters ran out of new
    items: 0 the (topic, style) cluster, 1 the whole topic, 2 anywhere by popularity, 3 anywhere
    uniformly (the heaviest users, whose share of the catalogue reaches into its far tail).
    """
    user = np.repeat(users, draws)
    m = len(user)
    first = np.zeros(m, dtype=bool)
    first[np.concatenate([[0], np.cumsum(draws)[:-1]])] = True
    new_session = first | (rng.random(m) < 1.0 / cfg.session_length)
    session = np.cumsum(new_session) - 1
    s_user = user[new_session]
    n_sessions = len(s_user)
    # session topic slot from the user's topic weights
    slot = (world.user_cum_prob[s_user] < rng.random(n_sessions)[:, None]).sum(axis=1)
    slot = np.minimum(slot, world.user_topics.shape[1] - 1)
    topic = world.user_topics[s_user, slot][session]
    focus = rng.random(m) < cfg.subtopic_focus
    sub = np.where(focus, world.user_fav_sub[s_user, slot][session], rng.integers(0, cfg.n_subtopics, size=m))
    cluster = topic * cfg.n_subtopics + sub
    lo, hi = world.cluster_start[cluster], world.cluster_stop[cluster]
    wide = (hi <= lo) | (level >= 1)  # a style with no item in a small catalogue: the whole topic
    lo = np.where(wide, world.topic_start[topic], lo)
    hi = np.where(wide, world.topic_stop[topic], hi)
    explore = (rng.random(m) < cfg.exploration) | (hi <= lo) | (level >= 2)
    lo = np.where(explore, 0, lo)
    hi = np.where(explore, len(world.item_ids), hi)
    pos = _draw_in(world, lo, hi, rng, uniform=level >= 3)

    # time: sessions spread in order over the user's active period, events minutes apart
    gap = rng.exponential(1.0, size=n_sessions)
    before = np.cumsum(gap) - gap  # gaps before each session, counted over all users
    s_first = np.flatnonzero(first[new_session])  # each user's first session
    s_end = np.append(s_first[1:], n_sessions)
    per_user = s_end - s_first
    offset = np.repeat(before[s_first], per_user)
    total = np.repeat(before[s_end - 1] + gap[s_end - 1] - before[s_first], per_user)
    s_time = world.user_start[s_user] + world.user_span[s_user] * (before - offset) / total
    step = np.cumsum(rng.exponential(240.0, size=m))  # seconds between events of a session
    s_rows = np.flatnonzero(new_session)
    within = step - np.repeat(step[s_rows], np.diff(np.append(s_rows, m)))
    return pl.DataFrame(
        {
            "user_id": (user + 1).astype(np.int64),
            "item_id": world.item_ids[pos],
            "timestamp": (s_time[session] + within).astype(np.int64),
        }
    )


def _chunk(cfg: SyntheticConfig, world: _World, users: np.ndarray, index: int) -> pl.DataFrame:
    """The interactions of ``users`` (consecutive user indices): a seeded function of the chunk.

    Repeats of a (user, item) pair are dropped (one row per pair, as implicit-feedback logs are
    usually kept); users left short draw again, from wider pools each round, then each user is cut
    to their count in draw order and sorted by time.
    """
    rng = np.random.default_rng([cfg.seed, 1, index])
    want = pl.DataFrame({"user_id": (users + 1).astype(np.int64), "_want": world.counts[users]})
    frame = _draw(cfg, world, users, np.ceil(world.counts[users] * 1.2).astype(np.int64) + 2, 0, rng)
    for level in range(1, 8):
        frame = frame.unique(subset=["user_id", "item_id"], keep="first", maintain_order=True)
        have = frame.group_by("user_id").len()
        short = (
            want.join(have, on="user_id", how="left")
            .with_columns((pl.col("_want") - pl.col("len").fill_null(0)).alias("_short"))
            .filter(pl.col("_short") > 0)
        )
        if short.height == 0:
            break
        more = short["_short"].to_numpy().astype(np.int64)
        extra = _draw(cfg, world, short["user_id"].to_numpy() - 1, more * 2 + 2, min(level, 3), rng)
        frame = pl.concat([frame, extra])
    frame = frame.unique(subset=["user_id", "item_id"], keep="first", maintain_order=True)
    frame = frame.join(want, on="user_id", how="left", maintain_order="left")
    frame = frame.filter(pl.int_range(pl.len()).over("user_id") < pl.col("_want")).drop("_want")
    return frame.sort(["user_id", "timestamp"], maintain_order=True)


# -------------------------------------------------------------------------------------- writing
def generate(
    config: SyntheticConfig | None = None,
    out: str | Path = "synthetic",
    *,
    progress: Callable[[int, int], None] | None = None,
    **params: Any,
) -> SyntheticSummary:
    """Write a synthetic dataset into the folder ``out`` (created; existing files are replaced).

    ``params`` are :class:`SyntheticConfig` fields when ``config`` is not given. ``progress`` is
    called as ``progress(rows_written, n_interactions)`` after each chunk.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = config if config is not None else SyntheticConfig(**params)
    if config is not None and params:
        raise LmrecError("give either a SyntheticConfig or its fields as keyword arguments, not both")
    started = time.perf_counter()
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LmrecError(f"cannot create {folder} ({exc.strerror or exc})") from None
    world = _world(cfg)
    inter_schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64())])
    # users per chunk so that a chunk holds about chunk_rows events
    bounds = np.searchsorted(
        np.cumsum(world.counts), np.arange(cfg.chunk_rows, cfg.n_interactions, cfg.chunk_rows)
    )
    edges = [0, *sorted({int(b) + 1 for b in bounds if 0 < b + 1 < cfg.users}), cfg.users]
    written = 0
    tmp = folder / "interactions.parquet.tmp"
    with pq.ParquetWriter(tmp, inter_schema, compression="zstd") as writer:
        for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
            frame = _chunk(cfg, world, np.arange(lo, hi), i)
            writer.write_table(frame.to_arrow().cast(inter_schema))
            written += frame.height
            if progress is not None:
                progress(written, cfg.n_interactions)
    tmp.replace(folder / "interactions.parquet")

    vocab = vocabularies(cfg.seed, cfg.n_topics, cfg.n_subtopics)
    item_schema = pa.schema(
        [("item_id", pa.int64()), ("title", pa.string()), ("description", pa.string()), ("tags", pa.string())]
    )
    tmp = folder / "items.parquet.tmp"
    step = 100_000
    with pq.ParquetWriter(tmp, item_schema, compression="zstd") as writer:
        for lo in range(0, cfg.items, step):
            texts = item_texts(
                cfg.seed,
                cfg.n_subtopics,
                world.item_ids,
                world.item_topic,
                world.item_sub,
                lo,
                min(cfg.items, lo + step),
                vocab,
            )
            writer.write_table(texts.to_arrow().cast(item_schema))
    tmp.replace(folder / "items.parquet")

    summary = SyntheticSummary(folder, written, cfg.users, cfg.items, time.perf_counter() - started)
    meta = {
        "generator": "lmrec.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "config": cfg.model_dump(),
        **summary.to_dict(),
    }
    meta.pop("folder")
    (folder / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return summary


def load_synthetic(folder: str | Path, *, name: str | None = None) -> Dataset:
    """A folder written by :func:`generate` as a :class:`Dataset` (through the own-data table loader)."""
    from lmrec.data.loaders.tabular import load_table

    folder = Path(folder)
    inter = folder / "interactions.parquet"
    if not inter.is_file():
        raise LmrecError(
            f"{folder} has no interactions.parquet; write one with `lmrec datasets synth --out {folder}`"
        )
    items = folder / "items.parquet"
    data = load_table(
        inter, items=items if items.is_file() else None, name=name or f"synthetic-{folder.name}"
    )
    meta_file = folder / "synthetic.json"
    if meta_file.is_file():
        data.meta["synthetic"] = json.loads(meta_file.read_text(encoding="utf-8"))
    return data


__all__ = ["GENERATOR_VERSION", "SyntheticConfig", "SyntheticSummary", "generate", "load_synthetic"]
