"""Two-stage hybrid: candidate generators, then a learned LightGBM ranker over their union.

Stage 1: every generator (any registered model, by name and params) proposes its top ``N`` unseen
items per query; the candidates are the union. Stage 2: a LambdaRank gradient-boosted ranker
(LightGBM) re-orders the candidates from features in named groups, each of which can be switched
off for an ablation (``feature_groups``):

* ``scores``: each generator's score and rank for the candidate (rank ``N + 1`` outside its top
  ``N``; the score is the generator's score for every candidate with ``score_all_candidates``, else
  NaN outside its top ``N`` as in RecTools);
* ``popularity``: training popularity and recency (share of users, share of the latest
  ``recent_fraction`` of interactions, time and positions since the item's last and first
  interaction, as fractions of the training span so the scale is the same at fit and serve time);
* ``text``: cosine similarity between the candidate and the query's last ``text_history`` items
  (max, mean, last), on item profile vectors from the shared text encoder; off when the catalogue
  has no text;
* ``metadata``: overlap between the candidate's categories (``genres``, ``categories``, ``brand``,
  ... columns of the items table) and the query's recent history;
* ``history``: the query's history length and mean item popularity;
* ``image`` (opt-in, not in the default groups): the same three similarities on the item pictures'
  vectors (:mod:`lmrec.image`, ``image_encoder``; centred), NaN for a candidate with no picture;
  only when the dataset has item pictures (``Dataset.images``).

Leak-free training (RecTools' candidate-ranking protocol): ``fit(data)`` uses nothing but ``data``.

1. Each user's last ``n_targets`` interactions in ``data`` (by timestamp, ties by file order; every
   user keeps at least one, so users with a single interaction give none) are held out: they are the
   ranker's targets, each a positive. ``n_targets=1`` is the classic last-item protocol; more
   targets give the ranker more positives but leave the inner generators less data. The default
   ``"auto"`` takes 3 where that holds out at most 10% of the interactions (long histories, as in
   MovieLens) and fewer on sparse catalogues (5-core Amazon sets), as validation preferred. The
   rest is the *inner* data (reviews and tags written in the held-out interactions are dropped
   from it as well).
2. Fresh generators are fitted on the inner data only, so no generator has seen a target. They
   propose candidates for (a seeded sample of) the held-out users, and item-side features are
   computed from the inner data too; a candidate is positive iff it is the user's held-out item.
3. The ranker is trained on those groups (groups without a positive carry no LambdaRank gradient and
   are dropped), with early stopping on NDCG@10 of a seeded slice of the users.
4. The generators (and item-side features) are refitted on all of ``data`` for serving, and the
   inner ones are discarded. The ranker was trained on features one interaction "behind", which is
   exactly where the serving features stand relative to the next, unknown interaction.

Under the refit protocol the caller passes train + validation as ``data``; the test item is never
seen by any stage. Neural generators are fitted with ``fit(data)`` (no validation frame: it would
be the ranker's targets).

Scores are dense, so ``recommend`` and full-ranking evaluation work unchanged: candidates get the
ranker's score and every other item a finite score below all of them (ordered by popularity), so
the base class's masking and top-k apply as for any model. A query goes to each generator that can
serve it (known user, history, text), through the generators' public ``score``; a text-only query
reaches text generators (``content``, ``two_tower``), which also make cold items reachable. The
ranker learned from users with a history, so a query without one (free text only, an empty history)
is ranked by reciprocal rank fusion of the generators that served it instead of by the ranker; for
other queries, features that need something the query lacks are NaN.

Persistence: the standard files hold the hybrid's own state (item-side features, feature names,
fit report); each generator is saved with its own ``save`` into ``generators/<label>/`` and read back
with :func:`~lmrec.models.registry.load_model`; the LightGBM booster is ``ranker.txt``, its text
dump. No pickle anywhere.

Candidate and feature construction live in :mod:`lmrec.models.hybrid_features`, the ranker's
settings and training in :mod:`lmrec.models.hybrid_ranker`, its configuration in
:mod:`lmrec.models.hybrid_config` (this model's helper modules).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.base import Query, QueryBatch, Recommender
from lmrec.models.hybrid_config import GeneratorSpec, HybridConfig, fit_key, generator_labels
from lmrec.models.hybrid_features import (
    DEFAULT_FEATURE_GROUPS,
    FEATURE_GROUPS,
    POP_FEATURES,
    CandidateQuery,
    Side,
    build_side,
    candidates,
    feature_names,
    has_item_text,
    score_queries,
)
from lmrec.models.hybrid_ranker import (
    RankerConfig,
    auto_targets,
    holdout_last,
    load_booster,
    save_booster,
    train_ranker,
)
from lmrec.models.hybrid_serving import GeneratorScorer, ResultCache
from lmrec.models.registry import create_model, get_model_class, load_model

__all__ = [
    "DEFAULT_FEATURE_GROUPS",
    "FEATURE_GROUPS",
    "GeneratorSpec",
    "Hybrid",
    "HybridConfig",
    "RankerConfig",
    "auto_targets",
    "fit_key",
    "holdout_last",
]


#: known users whose ranked candidates :meth:`Hybrid.warm` computes ahead of their first request
#: (about 2-3 ms each on one core), and how many per batch
PRECOMPUTE_USERS = 20_000
PRECOMPUTE_BATCH = 256


# ---------------------------------------------------------------------------------- the model
class Hybrid(Recommender):
    """Candidate generators + a LightGBM LambdaRank ranker; see the module docstring."""

    name = "hybrid"
    Config = HybridConfig
    config: HybridConfig
    #: the most a hybrid can serve; each instance narrows it to what its generators support
    supports = frozenset({"user", "history", "text"})

    def __init__(self, config: HybridConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        kinds: set[str] = set()
        for spec in self.config.generators:
            kinds |= set(get_model_class(spec.name).supports)
        self.supports = frozenset(kinds)  # type: ignore[misc]
        self.labels = generator_labels(self.config.generators)
        self.generators_: list[Recommender] = []
        self.booster_: Any = None
        self.feature_names_: list[str] = []
        #: what fit did: holdout sizes, candidate recall, ranker rounds, timings, feature importance
        self.fit_report_: dict[str, Any] = {}
        self._side: Side | None = None
        self._fallback = np.zeros(0, np.float32)
        self._ranker_file: str | None = None
        self._fit_cache: dict[str, Recommender] | None = None
        self._scorer: GeneratorScorer | None = None
        #: ranked candidates per known user, once warmed up for serving (see :meth:`warm`)
        self._results: ResultCache | None = None

    def share_fits(self, cache: dict[str, Recommender]) -> Hybrid:
        """Reuse generator fits across hybrids fitted in one process (a search over ``n_targets``,
        validation then refit): a generator whose spec and data (:func:`fit_key`) match a fit
        already in ``cache`` is taken from it instead of fitted again. Returns ``self``."""
        self._fit_cache = cache
        return self

    # ------------------------------------------------------------------ fitting
    def _fit(self, data: Dataset) -> None:
        c = self.config
        started = time.perf_counter()
        report: dict[str, Any] = {}
        n_targets = auto_targets(data, c.max_holdout_share) if c.n_targets == "auto" else c.n_targets
        report["n_targets"] = n_targets
        inner, held = holdout_last(data, n_targets)
        if inner.reviews is not None or inner.tags is not None:
            from lmrec.text.profiles import drop_heldout_text

            inner = drop_heldout_text(inner, held)
        use_text = "text" in c.feature_groups and has_item_text(data, c.profile)
        encoded: dict[str, np.ndarray] = {}

        t = time.perf_counter()
        gens = [self._fit_generator(spec, inner) for spec in c.generators]
        report["inner_fit_s"] = round(time.perf_counter() - t, 3)
        side = build_side(c, inner, use_text, encoded)
        self.feature_names_ = feature_names(c, self.labels, side)

        # the ranker's users: a seeded sample of the held-out users, a seeded slice for early stopping
        rng = np.random.default_rng(c.seed)
        r = c.ranker
        users = np.unique(held["user_idx"].to_numpy().astype(np.int64))
        if r.max_train_users is not None and len(users) > r.max_train_users:
            users = np.sort(rng.choice(users, r.max_train_users, replace=False))
        n_items = data.n_items
        target_keys = held["user_idx"].to_numpy().astype(np.int64) * n_items + held["item_idx"].to_numpy()
        n_held = int(np.isin(held["user_idx"].to_numpy(), users).sum())
        n_eval = round(r.eval_fraction * len(users)) if r.early_stopping_rounds else 0
        n_eval = n_eval if n_eval >= r.min_eval_users else 0
        is_eval = np.zeros(len(users), dtype=bool)
        is_eval[rng.permutation(len(users))[:n_eval]] = True

        t = time.perf_counter()
        items, weights, offsets = inner.histories()
        ext_users = data.user_vocab.external(users)
        queries = [
            CandidateQuery(
                user_id=ext_users[j],
                extra=None,
                extra_weights=None,
                text=None,
                seq=items[offsets[u] : offsets[u + 1]],
                weights=weights[offsets[u] : offsets[u + 1]],
            )
            for j, u in enumerate(users)
        ]
        qpos, cand, x, _ = candidates(c, gens, side, queries, len(self.feature_names_))
        labels = np.isin(users[qpos] * n_items + cand, target_keys).astype(np.int32)
        report["candidate_generation_s"] = round(time.perf_counter() - t, 3)
        report["ranker_users"] = len(users)
        report["candidates_per_user"] = round(len(qpos) / max(len(users), 1), 2)
        report["candidate_recall"] = round(float(labels.sum()) / max(n_held, 1), 4)
        del gens

        t = time.perf_counter()
        self.booster_ = train_ranker(r, c.seed, self.feature_names_, x, labels, qpos, is_eval, report)
        report["ranker_fit_s"] = round(time.perf_counter() - t, 3)

        # serving: generators and item-side facts from all of ``data``
        t = time.perf_counter()
        self.generators_ = [self._fit_generator(spec, data) for spec in c.generators]
        self._scorer = GeneratorScorer(self.generators_, self.user_vocab, self.item_vocab)
        self._results = None
        self._set_side(build_side(c, data, use_text, encoded))
        report["refit_s"] = round(time.perf_counter() - t, 3)
        report["holdout_users"] = int(held["user_idx"].n_unique())
        report["holdout_rows"] = int(held.height)
        report["fit_s"] = round(time.perf_counter() - started, 3)
        self.fit_report_ = report

    def _fit_generator(self, spec: GeneratorSpec, data: Dataset) -> Recommender:
        key = fit_key(spec, data) if self._fit_cache is not None else ""
        if self._fit_cache is not None and key in self._fit_cache:
            return self._fit_cache[key]
        model = create_model(spec.name, **spec.params)
        model.fit(data)
        if model.item_vocab != data.item_vocab:
            raise LmrecError(f"generator {spec.name!r} changed the item vocabulary while fitting")
        if self._fit_cache is not None:
            self._fit_cache[key] = model
        return model

    def _set_side(self, side: Side) -> None:
        self._side = side
        pop = side.pop["pop_users"]
        order = np.lexsort((-np.arange(len(pop)), pop))  # ascending popularity, ties: higher index first
        ranks = np.empty(len(pop), np.float32)
        ranks[order] = np.arange(len(pop), dtype=np.float32)
        #: non-candidates: below every candidate, the popular ones first
        self._fallback = (ranks / max(len(pop), 1)).astype(np.float32)

    # ------------------------------------------------------------------ scoring
    def _batch_queries(self, batch: QueryBatch) -> list[CandidateQuery]:
        """The generators' view of each query, from the resolved batch: unknown history items the
        lenient policy dropped stay dropped, so no generator sees an id the hybrid left out."""
        assert self.item_vocab is not None
        out = []
        for i, q in enumerate(batch.queries):
            seq = np.asarray(batch.sequences[i], np.int64)
            u = int(batch.user_idx[i])
            given = None if q.weights is None else np.asarray(q.weights, np.float32)
            n_stored = self.history_length(u) if u >= 0 else 0
            extra_idx = seq[n_stored:]
            # the query's own weights apply when none of its items was dropped
            ew = given if given is not None and len(given) == len(extra_idx) else None
            if ew is None:
                ew = np.ones(len(extra_idx), np.float32)
            weights = ew
            if u >= 0:
                lo, hi = self._hist_offsets[u], self._hist_offsets[u + 1]
                weights = np.concatenate([self._hist_weights[lo:hi], ew])
            has_extra = u >= 0 and len(extra_idx) > 0
            out.append(
                CandidateQuery(
                    user_id=q.user_id if u >= 0 else None,
                    extra=list(self.item_vocab.external(extra_idx)) if has_extra else None,
                    extra_weights=ew.tolist() if has_extra else None,
                    text=q.text or None,
                    seq=seq,
                    weights=weights.astype(np.float32),
                    plain=u >= 0 and not has_extra and not q.text,
                    row=-1 if q.text else i,
                )
            )
        return out

    def warm(self, max_users: int = 100_000, precompute_users: int = PRECOMPUTE_USERS) -> None:
        """Get ready to serve (``lmrec serve`` calls this while warming up): compute every known
        user's query vector in each embedding generator, in batches, so that requests read them
        (skipped above ``max_users``, where vectors are cached on first use only); then keep each
        plain known-user query's ranked candidates (:class:`~.hybrid_serving.ResultCache`), filled
        here for up to ``precompute_users`` users in batches and on first use for the rest."""
        self._check_fitted()
        n_users = self.n_history_users
        if self._scorer is None or n_users > max_users:
            return
        assert self.user_vocab is not None
        users = np.flatnonzero(np.diff(self._hist_offsets) > 0)
        ext = self.user_vocab.external(users)

        def encode(pos: np.ndarray) -> QueryBatch:
            return self.encode_queries([Query(user_id=ext[int(j)]) for j in pos])

        self._scorer.warm(len(users), encode)
        if self._results is None:
            self._results = ResultCache(self.n_items, max_users)
        n_pre = min(len(users), precompute_users)
        for lo in range(0, n_pre, PRECOMPUTE_BATCH):
            self._score(encode(np.arange(lo, min(lo + PRECOMPUTE_BATCH, n_pre), dtype=np.int64)))

    def _score(self, batch: QueryBatch) -> np.ndarray:
        assert self._side is not None
        queries = self._batch_queries(batch)
        n_items = batch.n_items
        cache = self._results
        kept = [
            cache.get(int(batch.user_idx[i]), n_items) if cache is not None and q.plain else None
            for i, q in enumerate(queries)
        ]
        fresh = iter(
            self._rank_candidates(batch, [q for q, k in zip(queries, kept, strict=True) if k is None])
        )
        parts: list[tuple[np.ndarray, np.ndarray, float]] = []
        for i, part in enumerate(kept):
            if part is None:
                part = next(fresh)
                if cache is not None and queries[i].plain:
                    cache.put(int(batch.user_idx[i]), *part)
            parts.append(part)
        floor = np.array([p[2] for p in parts], np.float32)
        fb = self._fallback
        if len(fb) < n_items:  # items added after fit (none today): at the very bottom
            fb = np.concatenate([fb, np.zeros(n_items - len(fb), np.float32)])
        # non-candidates: finite, below every candidate of the query, the popular ones first
        out = (floor[:, None] - 2.0 + fb[None, :n_items]).astype(np.float32)
        for i, (cand, pred, _) in enumerate(parts):
            out[i, cand] = pred
        return out

    def _rank_candidates(
        self, batch: QueryBatch, queries: list[CandidateQuery]
    ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per query: its candidates (item indices, ascending), their scores (the ranker's, or the
        reciprocal rank fusion for a query without history) and the floor (their minimum, 0 for
        none) that every other item is ranked below."""
        n_q = len(queries)
        if not n_q:
            return []
        assert self._side is not None
        scorer = self._scorer

        def fast(gi: int, gen: Recommender, rows: list[int], gq: list[Query]) -> np.ndarray:
            assert scorer is not None
            return scorer.score(gi, gen, rows, gq, queries, batch)

        score_fn = score_queries if scorer is None else fast
        qpos, cand, x, rrf = candidates(
            self.config, self.generators_, self._side, queries, len(self.feature_names_), score_fn
        )
        # the ranker learned from users with a history; queries without one (text only, empty
        # history) are outside what it saw, so they keep the generators' fused ranking
        has_hist = np.array([len(q.seq) > 0 for q in queries], dtype=bool)
        pred = rrf.astype(np.float32)
        learned = has_hist[qpos] if self.booster_ is not None else np.zeros(len(qpos), dtype=bool)
        if learned.any():
            pred[learned] = self.booster_.predict(x[learned], num_threads=self.config.ranker.num_threads)
        floor = np.zeros(n_q, np.float32)
        if len(pred):
            mins = np.full(n_q, np.inf, np.float32)
            np.minimum.at(mins, qpos, pred)
            floor = np.where(np.isfinite(mins), mins, 0.0).astype(np.float32)
        bounds = np.searchsorted(qpos, np.arange(n_q + 1))
        return [
            (cand[bounds[i] : bounds[i + 1]], pred[bounds[i] : bounds[i + 1]], float(floor[i]))
            for i in range(n_q)
        ]

    # ------------------------------------------------------------------ online updates
    def add_interactions(
        self, user_id: Any, item_ids: Sequence[Any], weights: Sequence[float] | None = None
    ) -> None:
        """Extend a user's history here and in every generator (so they agree on who is known)."""
        super().add_interactions(user_id, item_ids, weights)
        for gen in self.generators_:
            gen.add_interactions(user_id, item_ids, weights)
        assert self.user_vocab is not None
        if self._scorer is not None:
            self._scorer.forget(int(self.user_vocab.index(user_id)))
        if self._results is not None:
            self._results.forget(int(self.user_vocab.index(user_id)))

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        assert self._side is not None
        out = {f"side.{k}": v for k, v in self._side.pop.items()}
        if self._side.text is not None:
            out["side.text"] = self._side.text
        if self._side.image is not None:
            out["side.image"] = self._side.image
        for col, m in self._side.meta.items():
            out[f"meta.{col}.indptr"] = m.indptr.astype(np.int64)
            out[f"meta.{col}.indices"] = m.indices.astype(np.int64)
            out[f"meta.{col}.shape"] = np.asarray(m.shape, np.int64)
        return out

    def _get_extra(self) -> dict[str, Any]:
        assert self._side is not None
        return {
            "feature_names": self.feature_names_,
            "ranker": "ranker.txt" if self.booster_ is not None else None,
            "metadata_columns": list(self._side.meta),
            "generators": [f"generators/{lab}" for lab in self.labels],
            "fit_report": self.fit_report_,
        }

    def _save_files(self, folder: Path) -> None:
        """Each generator with its own ``save`` in ``generators/<label>/``; the booster's text dump."""
        for label, gen in zip(self.labels, self.generators_, strict=True):
            gen.save(folder / "generators" / label)
        if self.booster_ is not None:
            save_booster(self.booster_, folder / "ranker.txt")

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        # in the fitted order: the feature columns follow it (safetensors returns keys sorted)
        pop = {k: tensors[f"side.{k}"] for k in POP_FEATURES}
        side = Side(pop=pop, text=tensors.get("side.text"), image=tensors.get("side.image"))
        for col in extra.get("metadata_columns", []):
            shape = tuple(int(s) for s in tensors[f"meta.{col}.shape"])
            ind = tensors[f"meta.{col}.indices"]
            side.meta[col] = sp.csr_matrix(
                (np.ones(len(ind), np.float32), ind, tensors[f"meta.{col}.indptr"]), shape=shape
            )
        self._set_side(side)
        self.feature_names_ = list(extra["feature_names"])
        self.fit_report_ = dict(extra.get("fit_report", {}))
        self._ranker_file = extra.get("ranker")

    def _load_files(self, folder: Path) -> None:
        self.booster_ = load_booster(folder / self._ranker_file) if self._ranker_file else None
        self.generators_ = []
        for label in self.labels:
            gen = load_model(folder / "generators" / label)
            if gen.item_vocab != self.item_vocab:
                raise LmrecError(f"{folder}: generator {label!r} does not match the hybrid's item vocabulary")
            self.generators_.append(gen)
        self._scorer = GeneratorScorer(self.generators_, self.user_vocab, self.item_vocab)
        self._results = None
