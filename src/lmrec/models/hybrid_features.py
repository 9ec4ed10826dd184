"""Candidates and features of the :class:`~lmrec.models.hybrid.Hybrid` ranker (its private helper).

Item-side facts (:class:`Side`: popularity and recency, item category matrices, text vectors) are
built once per data set; :func:`candidates` then runs every generator on a chunk of queries, takes
the union of their top ``N`` unseen items and builds one feature row per candidate, in the feature
groups' canonical order (:func:`feature_names` names the columns). See the hybrid module docstring
for what each group means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.models.base import Query, Recommender
from lmrec.ranking import rank_scores
from lmrec.text.profiles import ProfileConfig

if TYPE_CHECKING:
    from lmrec.models.hybrid_config import HybridConfig

FeatureGroup = Literal["scores", "popularity", "text", "metadata", "history", "image"]
#: every group, in the canonical (feature column) order
FEATURE_GROUPS: tuple[FeatureGroup, ...] = ("scores", "popularity", "text", "metadata", "history", "image")
#: the groups a hybrid uses unless told otherwise: "image" is opt-in (it runs an image model over
#: the dataset's item pictures, when it has any)
DEFAULT_FEATURE_GROUPS: tuple[FeatureGroup, ...] = ("scores", "popularity", "text", "metadata", "history")
#: a key of the build's ``encoded`` memo that holds the item picture vectors (texts never start with NUL)
_IMAGES_KEY = "\x00item-images"

#: item-table columns that can hold categories when the catalogue has them
META_COLUMNS = ("genres", "categories", "brand")
_NO_VALUE = {"", "(no genres listed)", "none", "null", "nan", "n/a", "unknown"}
#: the popularity group's features, in column order
POP_FEATURES = (
    "pop_users",
    "pop_recent",
    "pop_since_last_pos",
    "pop_since_last_time",
    "pop_since_first_time",
)
#: queries per chunk when generating candidates: bounds the dense (chunk, n_items) score matrices
CHUNK = 256


@dataclass
class Side:
    """Item-side facts the features read: computed from the inner data while training the ranker,
    from all of ``data`` for serving."""

    pop: dict[str, np.ndarray]
    #: column -> (n_items, n_categories) binary CSR
    meta: dict[str, sp.csr_matrix] = field(default_factory=dict)
    #: (n_items, dim) unit vectors, or None (no text group)
    text: np.ndarray | None = None
    #: (n_items, dim) centred unit picture vectors (zero rows: no picture), or None (no image group)
    image: np.ndarray | None = None


@dataclass
class CandidateQuery:
    """One query as the generators and features see it."""

    #: external user id when the user is known (has a training history), else None
    user_id: Any
    #: the query's own extra history (external ids) and weights, passed on with a user id
    extra: list[Any] | None
    extra_weights: Sequence[float] | None
    text: str | None
    #: full history in internal indices, time ordered, and its weights
    seq: np.ndarray
    weights: np.ndarray
    #: a known user and nothing else (no extra history, no text): its query vectors may be cached
    plain: bool = False
    #: its row in the hybrid's own encoded batch, which generators may score directly (-1: they
    #: get their own query; see :mod:`lmrec.models.hybrid_serving`)
    row: int = -1


#: how :func:`candidates` gets a generator's dense scores: ``(generator position, generator, query
#: positions routed to it, their queries) -> (len(rows), n_items)``; the default calls ``score``
ScoreFn = Callable[[int, Recommender, list[int], list[Query]], np.ndarray]


def score_queries(gi: int, gen: Recommender, rows: list[int], queries: list[Query]) -> np.ndarray:
    """The default :data:`ScoreFn`: the generator's public ``score``."""
    return gen.score(queries)


def _split_values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, pl.Series)):
        out: list[str] = []
        for v in value:
            out.extend(_split_values(v))
        return out
    s = str(value)
    parts = s.split("|") if "|" in s else [s]
    return [p.strip().lower() for p in parts if p.strip().lower() not in _NO_VALUE]


def _category_matrix(values: list[Any]) -> sp.csr_matrix | None:
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, v in enumerate(values):
        for c in dict.fromkeys(_split_values(v)):
            rows.append(i)
            cols.append(vocab.setdefault(c, len(vocab)))
    if not vocab:
        return None
    m = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(values), len(vocab)), dtype=np.float32
    )
    m.sum_duplicates()
    return m


def has_item_text(data: Dataset, profile: ProfileConfig) -> bool:
    """Whether any item has text the profile would use (tags, reviews or item-table fields)."""
    if data.tags is not None and data.tags.height and "tags" in profile.fields:
        return True
    if data.reviews is not None and data.reviews.height and "reviews" in profile.fields:
        return True
    if data.items is None:
        return False
    cols = [c for c in profile.template_fields() if c in data.items.columns and c != "item_id"]
    return any(data.items[c].null_count() < data.items.height for c in cols)


# ---------------------------------------------------------------------------------- item side
def build_side(config: HybridConfig, data: Dataset, use_text: bool, encoded: dict[str, np.ndarray]) -> Side:
    """Item-side facts from ``data``: popularity and recency, category matrices, text vectors
    (``encoded`` caches text -> vector across the inner and the serving build)."""
    c = config
    n_items = data.n_items
    df = data.interactions.with_row_index("_row").sort(["timestamp", "_row"])
    items = df["item_idx"].to_numpy().astype(np.int64)
    ts = df["timestamp"].cast(pl.Float64).to_numpy()
    n = len(items)
    pos = np.arange(n, dtype=np.float64)
    n_users = max(int(data.interactions["user_idx"].n_unique()), 1)
    start = int(np.floor(n * (1.0 - c.recent_fraction)))
    last_pos = np.full(n_items, -1.0)
    np.maximum.at(last_pos, items, pos)
    last_ts = np.full(n_items, -np.inf)
    np.maximum.at(last_ts, items, ts)
    first_ts = np.full(n_items, np.inf)
    np.minimum.at(first_ts, items, ts)
    seen = last_pos >= 0
    span = float(ts.max() - ts.min()) if n else 0.0
    now = float(ts.max()) if n else 0.0
    nan = np.full(n_items, np.nan)
    pop = {
        "pop_users": data.item_popularity().astype(np.float64) / n_users,
        "pop_recent": np.bincount(items[start:], minlength=n_items) / max(n - start, 1),
        "pop_since_last_pos": np.where(seen, (n - 1 - last_pos) / max(n, 1), np.nan),
        "pop_since_last_time": np.where(seen, (now - last_ts) / span, np.nan) if span > 0 else nan,
        "pop_since_first_time": np.where(seen, (now - first_ts) / span, np.nan) if span > 0 else nan,
    }
    side = Side(pop={k: pop[k].astype(np.float32) for k in POP_FEATURES})
    if "metadata" in c.feature_groups and data.items is not None:
        table = data.item_table()
        for col in c.metadata_columns:
            if col in table.columns:
                m = _category_matrix(table[col].to_list())
                if m is not None:
                    side.meta[col] = m
    if use_text:
        side.text = item_text_vectors(config, data, encoded)
    if "image" in c.feature_groups and data.images is not None:
        side.image = item_picture_vectors(config, data, encoded)
    return side


def item_picture_vectors(config: HybridConfig, data: Dataset, encoded: dict[str, np.ndarray]) -> np.ndarray:
    """(n_items, dim) picture vectors from the image encoder, centred over the items that have a
    picture (zero rows for the others). The inner build and the serving build share one item
    vocabulary, so the vectors are computed once per fit (kept in ``encoded``)."""
    from lmrec.image import get_image_encoder
    from lmrec.image.cache import centred_item_pictures

    if _IMAGES_KEY not in encoded or len(encoded[_IMAGES_KEY]) != data.n_items:
        vecs, _has, _center, _source = centred_item_pictures(
            data,
            get_image_encoder(config.image_encoder),
            config.text_cache_dir,
            model="hybrid",
            show_progress=False,
        )
        encoded[_IMAGES_KEY] = vecs.astype(np.float32)
    return encoded[_IMAGES_KEY]


def item_text_vectors(config: HybridConfig, data: Dataset, encoded: dict[str, np.ndarray]) -> np.ndarray:
    """(n_items, dim) unit item-profile vectors from the shared text encoder, centred."""
    from lmrec.text.cache import cached_encode
    from lmrec.text.encoder import l2_normalize, shared_encoder
    from lmrec.text.profiles import build_item_texts

    c = config
    texts = build_item_texts(data, c.profile)
    todo = list(dict.fromkeys(t for t in texts if t not in encoded))
    if todo:
        enc = shared_encoder(c.text_encoder, c.text_device)
        vecs = cached_encode(todo, enc, c.text_cache_dir, show_progress=False)
        encoded.update(zip(todo, np.asarray(vecs, np.float32), strict=True))
    raw = np.stack([encoded[t] for t in texts]).astype(np.float32)
    # centred like the content model: sentence vectors share a large common direction
    return l2_normalize(raw - raw.mean(axis=0, keepdims=True)).astype(np.float32)


def _row_entries(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored column indices of ``rows`` of ``m``, flattened, with each one's position in ``rows``."""
    starts = m.indptr[rows]
    lens = m.indptr[rows + 1] - starts
    seg = np.repeat(np.arange(len(rows)), lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return seg, m.indices[np.repeat(starts, lens) + offs]


def _category_overlap(m: sp.csr_matrix, hist: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate: the mean share of the history carrying each of its categories (its
    categories' profile weight) and the share of history items it has a category in common with;
    NaN for candidates without a category. Dense in the history's own categories (a few dozen),
    so no sparse matrix is built per query."""
    h_seg, h_cat = _row_entries(m, hist)
    c_seg, c_cat = _row_entries(m, cand)
    cats = np.unique(h_cat)
    hist_has = np.zeros((len(hist), len(cats)), np.float32)
    hist_has[h_seg, np.searchsorted(cats, h_cat)] = 1.0
    pos = np.searchsorted(cats, c_cat).clip(max=max(len(cats) - 1, 0))
    hit = cats[pos] == c_cat if len(cats) else np.zeros(len(c_cat), dtype=bool)
    cand_has = np.zeros((len(cand), len(cats)), np.float32)
    cand_has[c_seg[hit], pos[hit]] = 1.0
    n_cats = np.diff(m.indptr)[cand].astype(np.float32)
    has = n_cats > 0
    prof = cand_has @ hist_has.mean(axis=0) / np.maximum(n_cats, 1)
    share = (cand_has @ hist_has.T > 0).mean(axis=1) if len(hist) else np.zeros(len(cand))
    return np.where(has, prof, np.nan), np.where(has, share, np.nan)


# ---------------------------------------------------------------------------------- candidates
def feature_names(config: HybridConfig, labels: Sequence[str], side: Side) -> list[str]:
    """The ranker's feature columns, in the order :func:`candidates` builds them."""
    groups = config.feature_groups
    names: list[str] = []
    if "scores" in groups:
        for lab in labels:
            names += [f"{lab}_score", f"{lab}_rank"]
    if "popularity" in groups:
        names += list(side.pop)
    if "history" in groups:
        names += ["hist_len", "hist_mean_pop"]
    if "text" in groups and side.text is not None:
        names += ["text_sim_max", "text_sim_mean", "text_sim_last"]
    if "metadata" in groups:
        for col in side.meta:
            names += [f"meta_{col}_profile", f"meta_{col}_share"]
    if "image" in groups and side.image is not None:
        names += ["image_sim_max", "image_sim_mean", "image_sim_last"]
    return names


def generator_query(gen: Recommender, q: CandidateQuery) -> Query | None:
    """The query ``gen`` can answer for ``q`` (None: it serves no part of it)."""
    sup = gen.supports
    text = q.text if "text" in sup else None
    if q.user_id is not None and "user" in sup and gen.user_vocab is not None and q.user_id in gen.user_vocab:
        return Query(user_id=q.user_id, history=q.extra, weights=q.extra_weights, text=text)
    if "history" in sup and (len(q.seq) or not q.text):
        assert gen.item_vocab is not None
        return Query(history=gen.item_vocab.external(q.seq), weights=q.weights.tolist(), text=text)
    if text:
        return Query(text=text)
    return None


def candidates(
    config: HybridConfig,
    gens: list[Recommender],
    side: Side,
    queries: list[CandidateQuery],
    n_features: int,
    score_fn: ScoreFn = score_queries,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of every query, sorted by query then item: (query position, item, features,
    reciprocal-rank-fusion score)."""
    parts = [
        _candidates_chunk(config, gens, side, queries[s : s + CHUNK], s, score_fn)
        for s in range(0, len(queries), CHUNK)
    ]
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros((0, n_features), np.float32), np.zeros(0)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))  # type: ignore[return-value]


def _candidates_chunk(
    config: HybridConfig,
    gens: list[Recommender],
    side: Side,
    queries: list[CandidateQuery],
    offset: int,
    score_fn: ScoreFn,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    c = config
    n_q = len(queries)
    n_items = len(side.pop["pop_users"])
    seen_rows = np.concatenate([np.full(len(q.seq), i) for i, q in enumerate(queries)] + [np.zeros(0, int)])
    seen_cols = np.concatenate([q.seq for q in queries] + [np.zeros(0, np.int64)])
    # stage 1: each generator's dense scores and top N (the query's history excluded); ``where``
    # maps a query position to its row in the generator's scores (-1: not routed to it)
    per_gen: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]] = []
    keys: list[np.ndarray] = []
    for gi, (spec, gen) in enumerate(zip(c.generators, gens, strict=True)):
        rows, gq = [], []
        for i, q in enumerate(queries):
            g = generator_query(gen, q)
            if g is not None:
                rows.append(i)
                gq.append(g)
        where = np.full(n_q, -1, np.int64)
        where[rows] = np.arange(len(rows))
        if not rows:
            per_gen.append((where, None, np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        scores = np.asarray(score_fn(gi, gen, [r + offset for r in rows], gq), dtype=np.float32)
        scores = np.where(np.isfinite(scores), scores, np.nan).astype(np.float32)
        masked = np.nan_to_num(scores, nan=-np.inf)  # a copy; the query's history is excluded
        sel = where[seen_rows] >= 0
        masked[where[seen_rows[sel]], seen_cols[sel]] = -np.inf
        idx, _ = rank_scores(masked, min(spec.n_candidates, n_items))
        ok = idx >= 0
        top_q = np.repeat(np.asarray(rows, np.int64), idx.shape[1]).reshape(idx.shape)[ok]
        top_rank = np.tile(np.arange(1, idx.shape[1] + 1), (len(rows), 1))[ok]
        top_key = top_q * n_items + idx[ok]
        keys.append(top_key)
        per_gen.append((where, scores, top_key, top_rank))
    all_keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    qpos = all_keys // n_items
    cand = all_keys % n_items
    n = len(all_keys)

    # reciprocal rank fusion of the generators' top N: the score of queries the ranker was not
    # trained for (no history) and of a hybrid that had nothing to learn from
    rrf = np.zeros(n, np.float64)
    for _, _, top_key, top_rank in per_gen:
        rrf[np.searchsorted(all_keys, top_key)] += 1.0 / (60.0 + top_rank)
    cols: list[np.ndarray] = []
    groups = c.feature_groups
    if "scores" in groups:
        for spec, (where, gscores, top_key, top_rank) in zip(c.generators, per_gen, strict=True):
            rank = np.full(n, spec.n_candidates + 1, np.float32)
            score = np.full(n, np.nan, np.float32)
            at = np.searchsorted(all_keys, top_key)
            rank[at] = top_rank
            if gscores is not None:
                if c.score_all_candidates:
                    r = where[qpos]
                    ok = r >= 0
                    score[ok] = gscores[r[ok], cand[ok]]
                else:
                    score[at] = gscores[where[top_key // n_items], top_key % n_items]
            cols += [score, rank]
    if "popularity" in groups:
        cols += [v[cand] for v in side.pop.values()]
    lens = np.array([len(q.seq) for q in queries], np.float32)
    if "history" in groups:
        pu = side.pop["pop_users"]
        mean_pop = np.array([pu[q.seq].mean() if len(q.seq) else np.nan for q in queries], np.float32)
        cols += [np.log1p(lens)[qpos], mean_pop[qpos]]
    bounds = np.searchsorted(qpos, np.arange(n_q + 1))
    if "text" in groups and side.text is not None:
        sims = np.full((n, 3), np.nan, np.float32)
        v = side.text
        for i, q in enumerate(queries):
            lo, hi = bounds[i], bounds[i + 1]
            if hi > lo and len(q.seq):
                s = v[cand[lo:hi]] @ v[q.seq[-c.text_history :]].T
                sims[lo:hi] = np.stack([s.max(axis=1), s.mean(axis=1), s[:, -1]], axis=1)
        cols += [sims[:, 0], sims[:, 1], sims[:, 2]]
    if "metadata" in groups:
        for m in side.meta.values():
            prof = np.full(n, np.nan, np.float32)
            share = np.full(n, np.nan, np.float32)
            for i, q in enumerate(queries):
                lo, hi = bounds[i], bounds[i + 1]
                if hi > lo and len(q.seq):
                    prof[lo:hi], share[lo:hi] = _category_overlap(
                        m, q.seq[-c.metadata_history :], cand[lo:hi]
                    )
            cols += [prof, share]
    if "image" in groups and side.image is not None:
        # like the text similarities, over the same latest items; NaN for a candidate with no picture
        sims = np.full((n, 3), np.nan, np.float32)
        v = side.image
        has = np.abs(v).sum(axis=1) > 0
        for i, q in enumerate(queries):
            lo, hi = bounds[i], bounds[i + 1]
            if hi > lo and len(q.seq):
                s = v[cand[lo:hi]] @ v[q.seq[-c.text_history :]].T
                sims[lo:hi] = np.stack([s.max(axis=1), s.mean(axis=1), s[:, -1]], axis=1)
        sims[~has[cand]] = np.nan
        cols += [sims[:, 0], sims[:, 1], sims[:, 2]]
    x = np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)
    return qpos + offset, cand, x, rrf
