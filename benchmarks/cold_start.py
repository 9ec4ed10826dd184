"""Cold-item evaluation: the content model vs popularity vs random on items never seen in training.

Split: the Foundation's ``cold_item`` split (a seeded random share of the interacted items loses every
interaction to the test set). Each test user is queried with their training history; targets are
their interactions with cold items. Two protocols, both reported:

* **cold candidates** (the usual cold-start protocol): only the cold items are ranked, so the
  question is "which of the new items will this user take?". Popularity gives every cold item the
  same zero count: it cannot rank unseen items, and what it returns is its tie-break. Two rows show
  this: the library default breaks ties by ascending item id, which on these catalogues is *not*
  neutral (MovieLens ids follow the order movies were added, so low ids are the 1990s hits most
  users rated; low ASINs are older products); the other breaks ties at random.
* **full catalogue** (``lmrec.evaluation.evaluate``): cold targets compete with every warm item.
  Popularity ranks all cold items below all warm ones and scores 0.

Item text, and what would really be known at cold start:

* ml-latest-small: catalogue text (title with year, genres). User tags are added for *warm* items
  only in the "+tags" variant (tags written by test users on cold items would leak the targets,
  and a brand-new movie has no tags yet).
* Amazon musical instruments (5-core) ships reviews only (no titles or descriptions), so item text
  is built from reviews. Warm items use their (training) reviews. For cold items there is no text
  but their own reviews, which were written by exactly the users we test on. Two variants:
  - ``all reviews (LEAKY)``: a cold item's profile uses all its reviews, including the target
    users' own; an upper bound, not a result.
  - ``early reviews``: a cold item's profile uses only its 2 earliest reviews (standing in for the
    launch description / first reviews), and those 2 reviewers are removed from the targets; the
    targets are later buyers whose own text the model never sees. This is the honest number.
  Using only the reviews' summary fields would not remove the leak (the summaries are the test
  users' words too), so it is not offered as a fix. A further row adds 5 review keyphrases per item
  (:mod:`lmrec.text.keywords`, from the same reviews) to the profile.

Content rows: the default ``ContentRecommender`` (recency half-life 50 interactions, centred
vectors) plus ablations (no recency decay; not centred; the model-free hashing encoder).

    python benchmarks/cold_start.py [--data-dir ../shared/data] [--seeds 42,43,44] [--cache-dir DIR]
        [--datasets ml-latest-small,amazon-2014-musical-instruments] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, cold_item
from lmrec.evaluation import evaluate
from lmrec.evaluation.metrics import ranking_metrics
from lmrec.models.base import Query, Recommender
from lmrec.models.content import ContentRecommender
from lmrec.models.popularity import Popularity, RandomModel
from lmrec.text.cache import default_cache_dir
from lmrec.text.profiles import ProfileConfig, drop_heldout_text

KS = (10,)


def cold_candidate_metrics(
    model: Recommender, split: Split, targets: pl.DataFrame, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Rank only the cold items for each test user with training history; mean metrics over users."""
    train = split.train
    cold = split.cold_items()
    allowed = np.zeros(train.n_items, dtype=bool)
    allowed[cold] = True
    train_len = np.bincount(train.interactions["user_idx"].to_numpy(), minlength=train.n_users)
    users = np.unique(targets["user_idx"].to_numpy())
    users = users[train_len[users] > 0]  # nobody can personalise for a user with no history
    tgt = sp.csr_matrix(
        (
            np.ones(targets.height, np.float32),
            (targets["user_idx"].to_numpy(), targets["item_idx"].to_numpy()),
        ),
        shape=(train.n_users, train.n_items),
    )
    tgt.data[:] = 1.0
    tops = []
    ext = train.user_vocab.external(users)
    for start in range(0, len(users), 256):
        batch = model.encode_queries([Query(user_id=u) for u in ext[start : start + 256]])
        idx, _ = model.rank(batch, max(ks), allowed=allowed)
        tops.append(idx)
    top = np.concatenate(tops)
    per_user = ranking_metrics(top, tgt[users], ks, ("recall", "ndcg"))
    out = {k: float(v.mean()) for k, v in per_user.items()}
    out["n_users"] = len(users)
    out["n_candidates"] = int(allowed.sum())
    return out


def full_catalogue_metrics(model: Recommender, split: Split) -> dict[str, float]:
    res = evaluate(model, split, ks=KS, metrics=("recall", "ndcg"), beyond_accuracy=False, auc=False)
    return {k: float(v) for k, v in res.metrics.items() if "@" in k or k == "n_users"}


class PopularityRandomTies(Popularity):
    """Popularity whose equal counts are ordered at random instead of by item id.

    Every cold item has count 0, so the plain model's cold-item ranking *is* its tie-break: ascending
    item id. On MovieLens, low ids are the movies added first (1990s hits), so id order is itself a
    popularity signal leaking through the catalogue's numbering; this variant shows popularity
    without it.
    """

    def _score(self, batch: Any) -> np.ndarray:
        rng = np.random.default_rng(len(batch))
        return np.asarray(super()._score(batch), np.float32) + 0.5 * rng.random(
            (len(batch), batch.n_items), np.float32
        )


def _baselines(split: Split, seed: int) -> list[tuple[str, Recommender]]:
    return [
        ("popularity (ties by item id, the library default)", Popularity().fit(split.train)),
        ("popularity (ties at random)", PopularityRandomTies().fit(split.train)),
        ("random", RandomModel(seed=seed).fit(split.train)),
    ]


def _content(
    text_data: Dataset, cache: str, profile: ProfileConfig, **params: Any
) -> tuple[Recommender, float]:
    t0 = time.perf_counter()
    params.setdefault("cache_dir", cache)
    model = ContentRecommender(profile=profile, show_progress=True, **params).fit(text_data)
    return model, time.perf_counter() - t0


def run_movielens(data: Dataset, seed: int, cache_dir: str) -> list[dict[str, Any]]:
    split = cold_item(data, item_fraction=0.1, seed=seed)
    cold_ids = set(split.train.item_vocab.external(split.cold_items()))
    assert data.tags is not None
    # no tag of a cold item survives (a new movie has none); warm items' tags are training data
    warm_tags = data.tags.filter(~pl.col("item_id").is_in(list(cold_ids)))
    catalogue = replace(drop_heldout_text(split.train, [split.test]), tags=None)
    with_tags = replace(catalogue, tags=warm_tags)
    plain, tagged = (
        ProfileConfig(fields=("title", "genres")),
        ProfileConfig(fields=("title", "genres", "tags")),
    )
    tg = "title + genres"
    runs = [
        ("content (MiniLM)", tg, *_content(catalogue, cache_dir, plain)),
        (
            "content (MiniLM), no recency decay",
            tg,
            *_content(catalogue, cache_dir, plain, recency_half_life=None),
        ),
        ("content (MiniLM), not centred", tg, *_content(catalogue, cache_dir, plain, center=False)),
        ("content (MiniLM)", tg + ", + user tags (warm items only)", *_content(with_tags, cache_dir, tagged)),
        (
            "content (hashing, lexical)",
            tg,
            *_content(catalogue, cache_dir, plain, encoder="hashing", cache_dir=None),
        ),
    ]
    runs += [(name, "-", model, 0.0) for name, model in _baselines(split, seed)]
    return [
        _row("ml-latest-small", seed, text, name, model, split, split.test, fit_s)
        for name, text, model, fit_s in runs
    ]


def run_amazon(data: Dataset, seed: int, cache_dir: str, n_early: int = 2) -> list[dict[str, Any]]:
    split = cold_item(data, item_fraction=0.2, seed=seed)
    cold_ids = list(split.train.item_vocab.external(split.cold_items()))
    assert data.reviews is not None
    rev = data.reviews.with_row_index("_r")
    cold_rev = rev.filter(pl.col("item_id").is_in(cold_ids)).sort(["item_id", "timestamp", "user_id", "_r"])
    early = cold_rev.group_by("item_id", maintain_order=True).head(n_early)
    warm_rev = rev.filter(~pl.col("item_id").is_in(cold_ids))
    later_targets = split.test.join(early.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
    honest = replace(split.train, reviews=pl.concat([warm_rev, early.select(warm_rev.columns)]).drop("_r"))
    leaky = replace(split.train, reviews=rev.drop("_r"))
    honest_split = replace(split, test=later_targets)
    profile = ProfileConfig()  # reviews are the only text this dataset has
    early_text = f"{n_early} earliest reviews per cold item (those reviewers are not targets)"
    leak_text = "all reviews: LEAKY upper bound (targets' own reviews in the profile)"
    runs = [
        ("content (MiniLM)", early_text, *_content(honest, cache_dir, profile)),
        (
            "content (MiniLM)",
            early_text + " + 5 review keyphrases",
            *_content(honest, cache_dir, profile, keywords_per_item=5),
        ),
        (
            "content (MiniLM), no recency decay",
            early_text,
            *_content(honest, cache_dir, profile, recency_half_life=None),
        ),
        (
            "content (hashing, lexical)",
            early_text,
            *_content(honest, cache_dir, profile, encoder="hashing", cache_dir=None),
        ),
    ]
    rows = [
        _row("amazon-2014-musical-instruments", seed, t, n, m, honest_split, later_targets, f)
        for n, t, m, f in runs
    ]
    rows += [
        _row("amazon-2014-musical-instruments", seed, "-", n, m, honest_split, later_targets, 0.0)
        for n, m in _baselines(split, seed)
    ]
    m, f = _content(leaky, cache_dir, profile)
    rows.append(
        _row("amazon-2014-musical-instruments", seed, leak_text, "content (MiniLM)", m, split, split.test, f)
    )
    return rows


def _row(
    dataset: str,
    seed: int,
    variant: str,
    name: str,
    model: Recommender,
    split: Split,
    targets: pl.DataFrame,
    fit_s: float,
) -> dict[str, Any]:
    cc = cold_candidate_metrics(model, split, targets)
    fc = full_catalogue_metrics(model, split)
    row = {
        "dataset": dataset,
        "seed": seed,
        "model": name,
        "item_text": variant,
        "cold_recall@10": cc["recall@10"],
        "cold_ndcg@10": cc["ndcg@10"],
        "full_recall@10": fc["recall@10"],
        "full_ndcg@10": fc["ndcg@10"],
        "n_users": cc["n_users"],
        "n_cold_items": cc["n_candidates"],
        "n_targets": targets.height,
        "fit_seconds": round(fit_s, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    df = pl.DataFrame(rows)
    metrics = ["cold_recall@10", "cold_ndcg@10", "full_recall@10", "full_ndcg@10"]
    agg = df.group_by(["dataset", "model", "item_text"], maintain_order=True).agg(
        [pl.col(m).mean().alias(m) for m in metrics]
        + [pl.col(m).std().alias(m + "_std") for m in metrics]
        + [pl.len().alias("n_seeds"), pl.col("n_users").mean(), pl.col("n_cold_items").mean()]
    )
    return agg.to_dicts()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--datasets", default="ml-latest-small,amazon-2014-musical-instruments")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default: the user cache)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cache_dir = args.cache_dir or str(default_cache_dir())
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        data = load_dataset(name, args.data_dir, download=False)
        for seed in seeds:
            rows += (
                run_movielens(data, seed, cache_dir)
                if name.startswith("ml-")
                else run_amazon(data, seed, cache_dir)
            )
    summary = summarise(rows)
    result = {
        "seeds": seeds,
        "rows": rows,
        "summary": summary,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {"cpu_count": os.cpu_count(), "gpu": False},
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({"summary": summary}, indent=2))
    print()
    for ds in dict.fromkeys(r["dataset"] for r in summary):
        sub = [r for r in summary if r["dataset"] == ds]
        pop = next(r for r in sub if r["model"].startswith("popularity (ties by item id"))
        print(f"### {ds}: cold-item split, mean ± std over seeds {seeds}")
        print()
        print(
            "| model | item text | cold-cand. Recall@10 | cold-cand. NDCG@10 | x popularity | full-cat. Recall@10 | full-cat. NDCG@10 | users |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in sub:
            ratio = r["cold_ndcg@10"] / pop["cold_ndcg@10"] if pop["cold_ndcg@10"] > 0 else float("inf")

            def f(m: str, r: dict[str, Any] = r) -> str:
                sd = r.get(m + "_std")
                return f"{r[m]:.4f} ± {sd:.4f}" if sd is not None and len(seeds) > 1 else f"{r[m]:.4f}"

            print(
                f"| {r['model']} | {r['item_text']} | {f('cold_recall@10')} | {f('cold_ndcg@10')} | {ratio:.1f}x | "
                f"{f('full_recall@10')} | {f('full_ndcg@10')} | {r['n_users']:.0f} |"
            )
        print()
        print(f"{sub[0]['n_cold_items']:.0f} cold items per split; users = test users with training history.")
        print()


if __name__ == "__main__":
    main()
