"""Posters beside text: the content model with text, picture or both, vs popularity (issue #14).

Data: ``ml-100k-posters`` (MovieLens-100K ratings for the 1,663 movies with a TMDB poster
thumbnail; about 2-5% of posters belong to the wrong film, kept as found). Every rating counts as
an interaction.

Arms (all :class:`~lmrec.models.content.ContentRecommender`, recency half-life 50, centred vectors):

* ``text``: MiniLM (the bundled all-MiniLM-L6-v2) over title, genres and the TMDB overview;
* ``image``: the poster through the offline ImageNet MobileNetV2 (:mod:`lmrec.image`);
* ``text + image``: both, late fusion ``(1 - w) * text cosine + w * picture cosine``; ``w`` is
  chosen from ``--weights`` on the **validation** phase of the same protocol (never on test);
* ``text -> CF projection`` / ``image -> CF projection`` (cold items only): ``cf_projection=True``,
  a map learned on the warm items from the content vector to the item factors of a truncated SVD
  of the training interactions (:mod:`lmrec.models.cf_projection`); a user is the SVD fold-in of
  their history. The map (a ridge regression: 8/16/32/64/128 factors, ridge 3/10/30/100/300/1000;
  or the softmax-weighted mean of the nearest warm items' factors: 16/32/64 factors, 10/30/100
  neighbours, temperature .05/.1/.2) and, for ``text + image -> CF``, the picture share
  (0.25/0.5/0.75) are chosen per seed on the **validation**-cold items;
* ``popularity``: training counts. On cold candidates every count is 0, so popularity's ranking is
  its tie-break: both the library's (ascending item id, which on MovieLens is itself a popularity
  signal) and a random one are shown.

Protocols:

* **cold items** (``lmrec.data.split.cold_item``, 10% of items test-cold and a disjoint 10%
  validation-cold, seeds ``--seeds``): each user with training history ranks only the test-cold
  items (the usual cold-start protocol); targets are their interactions with them. The validation
  phase does the same with the validation-cold items.
* **warm, leave-last-out** (``lmrec.data.split.leave_last_out``, 1 validation + 1 test item per
  user): full ranking over the catalogue with :func:`lmrec.evaluation.evaluate`.

Intervals: per-user percentile bootstrap 95% CIs (:func:`lmrec.evaluation.significance.bootstrap_ci`,
1000 resamples); for cold items over the users of all seeds pooled. ``paired`` rows compare text +
image with text on the same users (:func:`~lmrec.evaluation.significance.paired_test`).

Two-tower arms (``--two-tower``; :class:`~lmrec.models.two_tower.TwoTower` with ``modalities``, the
masked gated fusion, ID dropout 0.2): ``ID only`` (``["id"]``), ``text`` (``["id", "text"]``, the same
MiniLM profile text), ``image`` (``["id", "image"]``, the same MobileNetV2 poster vectors) and ``text +
image`` (``["id", "text", "image"]``). ``modality_dropout`` is chosen from ``--tt-dropouts`` on the
first seed's **validation** phase, for the text + image arm, once per protocol, and then used by
every arm with a part to drop (warm: the early-stopping validation NDCG@10 on ``Split.valid``; cold:
NDCG@10 on the validation-cold items). Warm: the leave-last-out split is fixed, the seeds are the
training seeds, early stopping on ``Split.valid``; the per-user rows of the 3 seeds are pooled for the
CIs. Cold: one ``cold_item`` split per seed; early stopping on the last event of 10% of the training
users (``val_fraction``), never on cold items. ``--smoke`` shrinks the two-tower arms (a few hundred
users, a tiny network, 1 epoch) so a test can run them; its numbers mean nothing.

Encoding is timed once per run: the pictures through a fresh embedding cache (first run), then again
through the same cache (every picture a hit). ``--throughput N`` also times N posters without a
cache at 1 and 2 torch threads.

    python benchmarks/multimodal.py [--data-dir ../shared/data] [--seeds 42,43,44]
        [--weights 0.1,0.25,0.5,0.75] [--cache-dir DIR] [--throughput 200] [--out results.json]
        [--two-tower [--skip-content] [--protocols cold,warm] [--tt-dropouts 0,0.25,0.5] [--smoke]]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import load_dataset
from lmrec.data.split import Split, cold_item, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.evaluation.metrics import ranking_metrics
from lmrec.evaluation.significance import bootstrap_ci, paired_test
from lmrec.image import cached_encode_images, get_image_encoder, image_key
from lmrec.models.base import Query, Recommender
from lmrec.models.content import ContentRecommender
from lmrec.models.popularity import Popularity
from lmrec.text.cache import EmbeddingCache, default_cache_dir
from lmrec.text.profiles import ProfileConfig

K = 10
PROFILE = ProfileConfig(fields=("title", "genres", "overview"))


class PopularityRandomTies(Popularity):
    """Popularity with equal counts ordered at random (every cold item has count 0)."""

    def _score(self, batch: Any) -> np.ndarray:
        rng = np.random.default_rng(len(batch))
        return np.asarray(super()._score(batch), np.float32) + 0.5 * rng.random(
            (len(batch), batch.n_items), np.float32
        )


def candidate_ndcg(
    model: Recommender, train: Dataset, targets: pl.DataFrame, candidates: np.ndarray
) -> np.ndarray:
    """Per-user NDCG@K ranking only ``candidates`` for users with training history and a target."""
    allowed = np.zeros(train.n_items, dtype=bool)
    allowed[candidates] = True
    train_len = np.bincount(train.interactions["user_idx"].to_numpy(), minlength=train.n_users)
    users = np.unique(targets["user_idx"].to_numpy())
    users = users[train_len[users] > 0]
    tgt = sp.csr_matrix(
        (
            np.ones(targets.height, np.float32),
            (targets["user_idx"].to_numpy(), targets["item_idx"].to_numpy()),
        ),
        shape=(train.n_users, train.n_items),
    )
    tgt.data[:] = 1.0
    ext = train.user_vocab.external(users)
    tops = []
    for start in range(0, len(users), 256):
        batch = model.encode_queries([Query(user_id=u) for u in ext[start : start + 256]])
        idx, _ = model.rank(batch, K, allowed=allowed)
        tops.append(idx)
    return ranking_metrics(np.concatenate(tops), tgt[users], (K,), ("ndcg",))[f"ndcg@{K}"]


#: modalities that also get a content -> collaborative projection arm (``--projection``), and the
#: grid its width and ridge strength are chosen from on the cold validation items
PROJECTED: list[str] = ["image", "text", "text+image"]
PROJ_FACTORS = (8, 16, 32, 64, 128)
PROJ_RIDGES = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
#: the nearest-warm-items map (``projection_method="knn"``): its width, neighbours and temperature
KNN_FACTORS = (16, 32, 64)
KNN_NEIGHBOURS = (10, 30, 100)
KNN_TEMPERATURES = (0.05, 0.1, 0.2)


def projection_grid() -> list[dict[str, Any]]:
    """Every projection setting the cold validation items choose from (ridge and knn maps)."""
    ridge = [
        {"projection_method": "ridge", "projection_factors": f, "projection_ridge": r}
        for f in PROJ_FACTORS
        for r in PROJ_RIDGES
    ]
    knn = [
        {
            "projection_method": "knn",
            "projection_factors": f,
            "projection_neighbours": n,
            "projection_temperature": t,
        }
        for f in KNN_FACTORS
        for n in KNN_NEIGHBOURS
        for t in KNN_TEMPERATURES
    ]
    return ridge + knn


def _label(setting: dict[str, Any]) -> str:
    return "/".join(f"{k.removeprefix('projection_')}={v}" for k, v in setting.items())


#: picture shares tried for the text+image projection (the content vector's scaling feeds the ridge)
PROJ_WEIGHTS = (0.25, 0.5, 0.75)

#: the encoders (``--text-encoder`` / ``--image-encoder``; None: MiniLM and MobileNetV2)
ENCODERS: dict[str, str | None] = {"text": None, "image": None}


def content(
    train: Dataset, cache: str, modalities: tuple[str, ...], w: float = 0.5, **projection: Any
) -> ContentRecommender:
    return ContentRecommender(
        profile=PROFILE,
        modalities=modalities,
        image_weight=w,
        **projection,
        cache_dir=cache,
        device="cpu",
        encoder=ENCODERS["text"],
        image_encoder=ENCODERS["image"],
    ).fit(train)


def ci(values: np.ndarray) -> dict[str, float]:
    mean, lo, hi = bootstrap_ci(values, n_boot=1000, seed=0)
    return {"ndcg@10": round(mean, 4), "lo": round(lo, 4), "hi": round(hi, 4), "users": len(values)}


def choose_weight(scores: dict[float, float]) -> float:
    return max(scores, key=lambda w: (scores[w], -w))  # ties: the smaller picture share


def target_ranks(
    model: Recommender, train: Dataset, targets: pl.DataFrame, candidates: np.ndarray
) -> pl.DataFrame:
    """``user_idx, item_idx, rank``: each target's 1-based rank among ``candidates`` (users with history)."""
    train_len = np.bincount(train.interactions["user_idx"].to_numpy(), minlength=train.n_users)
    tg = targets.select("user_idx", "item_idx").filter(
        pl.Series(train_len[targets["user_idx"].to_numpy()] > 0)
    )
    users = np.unique(tg["user_idx"].to_numpy())
    scores = model.score_batch(
        model.encode_queries([Query(user_id=u) for u in train.user_vocab.external(users)])
    )
    sub = scores[:, candidates]
    # rank of each candidate within its user's row (0 = best), then 1-based
    order = np.argsort(-sub, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(len(users))[:, None], order] = np.arange(len(candidates))[None, :]
    row = {u: k for k, u in enumerate(users)}
    col = {i: k for k, i in enumerate(candidates)}
    r = [
        int(ranks[row[u], col[i]]) + 1
        for u, i in zip(tg["user_idx"].to_list(), tg["item_idx"].to_list(), strict=True)
    ]
    return tg.with_columns(rank=pl.Series(r))


def picture_examples(
    data: Dataset, text: Recommender, both: Recommender, split: Split, candidates: np.ndarray, n: int = 3
) -> list[dict[str, Any]]:
    """Cold items whose rank for the users who took them moved most when the poster was added
    (mean rank among the cold candidates, text vs text + image), both ways, with titles."""
    a = target_ranks(text, split.train, split.test, candidates).rename({"rank": "text"})
    b = target_ranks(both, split.train, split.test, candidates).rename({"rank": "both"})
    per_item = (
        a.join(b, on=["user_idx", "item_idx"])
        .group_by("item_idx")
        .agg(pl.len().alias("users"), pl.col("text").mean(), pl.col("both").mean())
        .filter(pl.col("users") >= 5)
        .with_columns(gain=pl.col("text") - pl.col("both"))
        .sort("gain", descending=True)
    )
    titles = data.item_titles()
    items = data.item_table()
    suspect = items["poster_link_suspect"].to_list() if "poster_link_suspect" in items.columns else None
    out = []
    for which, frame in (("helped", per_item.head(n)), ("hurt", per_item.tail(n).reverse())):
        for r in frame.iter_rows(named=True):
            i = int(r["item_idx"])
            out.append(
                {
                    "effect": which,
                    "item_id": data.item_vocab.external([i])[0],
                    "title": titles[i],
                    "poster_link_suspect": None if suspect is None else suspect[i],
                    "users": r["users"],
                    "mean_rank_text": round(r["text"], 1),
                    "mean_rank_text_image": round(r["both"], 1),
                    "candidates": len(candidates),
                }
            )
    return out


def run_cold(data: Dataset, seeds: list[int], weights: list[float], cache: str) -> dict[str, Any]:
    per_arm: dict[str, list[np.ndarray]] = {}
    chosen = []
    projected: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    for seed in seeds:
        split = cold_item(data, item_fraction=0.1, valid_fraction=0.1, seed=seed)
        train = split.train
        assert split.valid is not None
        valid_items = np.unique(split.valid["item_idx"].to_numpy())
        test_items = np.unique(split.test["item_idx"].to_numpy())
        # validation: the picture weight (test numbers never feed it)
        val = {
            w: float(
                candidate_ndcg(
                    content(train, cache, ("text", "image"), w), train, split.valid, valid_items
                ).mean()
            )
            for w in weights
        }
        w = choose_weight(val)
        chosen.append(
            {"seed": seed, "weight": w, "valid_ndcg@10": {str(k): round(v, 4) for k, v in val.items()}}
        )
        arms: dict[str, Recommender] = {
            "popularity (ties by item id)": Popularity().fit(train),
            "popularity (ties at random)": PopularityRandomTies().fit(train),
            "content: text": content(train, cache, ("text",)),
            "content: image": content(train, cache, ("image",)),
            "content: text + image (w from valid)": content(train, cache, ("text", "image"), w),
        }
        for name, model in arms.items():
            per_arm.setdefault(name, []).append(candidate_ndcg(model, train, split.test, test_items))
        if not examples:  # the first seed's split
            examples = picture_examples(
                data, arms["content: text"], arms["content: text + image (w from valid)"], split, test_items
            )
        print(f"cold-item seed {seed}: weight {w} (valid {val})", flush=True)
        for mod in PROJECTED:
            # validation: the map (ridge or nearest warm items), its settings and (text+image) the
            # picture share; never test
            mods = tuple(mod.split("+"))
            grid = [
                (pw, setting)
                for setting in projection_grid()
                for pw in (PROJ_WEIGHTS if len(mods) > 1 else (0.5,))
            ]
            pval = [
                float(
                    candidate_ndcg(
                        content(train, cache, mods, pw, cf_projection=True, **setting),
                        train,
                        split.valid,
                        valid_items,
                    ).mean()
                )
                for pw, setting in grid
            ]
            # ties: the first in grid order (ridge before knn, then fewer factors)
            best = int(np.argmax(pval))
            pw, setting = grid[best]
            projected.append(
                {
                    "seed": seed,
                    "modality": mod,
                    **setting,
                    "image_weight": pw if len(mods) > 1 else None,
                    "valid_ndcg@10": {
                        f"{_label(st)}/w={w}": round(v, 4) for (w, st), v in zip(grid, pval, strict=True)
                    },
                }
            )
            model = content(train, cache, mods, pw, cf_projection=True, **setting)
            name = f"content: {mod} -> CF projection (from valid)"
            per_arm.setdefault(name, []).append(candidate_ndcg(model, train, split.test, test_items))
            print(
                f"cold-item seed {seed}: {mod} projection {_label(setting)} picture share {pw} "
                f"(valid {pval[best]:.4f})",
                flush=True,
            )
    rows = {
        name: ci(np.concatenate(v)) | {"per_seed": [round(float(x.mean()), 4) for x in v]}
        for name, v in per_arm.items()
    }
    both = np.concatenate(per_arm["content: text + image (w from valid)"])
    text = np.concatenate(per_arm["content: text"])
    return {
        "rows": rows,
        "weights": chosen,
        "examples": examples,
        "paired_text+image_vs_text": paired_test(both, text).to_dict(),
        "paired_image_vs_text": paired_test(np.concatenate(per_arm["content: image"]), text).to_dict(),
        "projection_choices": projected,
        **{
            f"paired_{mod}_projection_vs_{mod}": paired_test(
                np.concatenate(per_arm[f"content: {mod} -> CF projection (from valid)"]),
                np.concatenate(
                    per_arm["content: text + image (w from valid)" if "+" in mod else f"content: {mod}"]
                ),
            ).to_dict()
            for mod in PROJECTED
        },
    }


def run_hybrid(data: Dataset, cache: str) -> dict[str, Any]:
    """Warm leave-last-out: the hybrid ranker (EASE + item-kNN + popularity candidates) with its
    default feature groups, and with the picture-similarity group added. No choice is made here."""
    from lmrec.models.hybrid import DEFAULT_FEATURE_GROUPS, Hybrid

    split = leave_last_out(data, n_test=1, n_valid=1)
    gens = [{"name": n, "n_candidates": 100} for n in ("ease", "item_knn", "popularity")]
    vals = {}
    fits = {}
    for label, groups in (
        ("hybrid", DEFAULT_FEATURE_GROUPS),
        ("hybrid + image features", (*DEFAULT_FEATURE_GROUPS, "image")),
    ):
        t0 = time.perf_counter()
        model = Hybrid(
            generators=gens,
            feature_groups=groups,
            text_encoder=ENCODERS["text"],
            image_encoder=ENCODERS["image"],
            text_cache_dir=cache,
        ).fit(split.train)
        fits[label] = round(time.perf_counter() - t0, 1)
        res = evaluate(model, split, ks=(K,), metrics=("ndcg",), beyond_accuracy=False, auc=False)
        assert res.per_user is not None
        vals[label] = res.per_user[f"ndcg@{K}"].to_numpy()
        print(f"{label}: {vals[label].mean():.4f} (fit {fits[label]} s)", flush=True)
    return {
        "rows": {k: ci(v) for k, v in vals.items()},
        "fit_s": fits,
        "paired_image_vs_default": paired_test(vals["hybrid + image features"], vals["hybrid"]).to_dict(),
    }


def run_warm(data: Dataset, weights: list[float], cache: str) -> dict[str, Any]:
    split = leave_last_out(data, n_test=1, n_valid=1)
    train = split.train

    def per_user(model: Recommender, phase: str) -> np.ndarray:
        res = evaluate(
            model, split, ks=(K,), metrics=("ndcg",), beyond_accuracy=False, auc=False, phase=phase
        )
        assert res.per_user is not None
        return res.per_user[f"ndcg@{K}"].to_numpy()

    val = {w: float(per_user(content(train, cache, ("text", "image"), w), "valid").mean()) for w in weights}
    w = choose_weight(val)
    arms: dict[str, Recommender] = {
        "popularity": Popularity().fit(train),
        "content: text": content(train, cache, ("text",)),
        "content: image": content(train, cache, ("image",)),
        "content: text + image (w from valid)": content(train, cache, ("text", "image"), w),
    }
    vals = {name: per_user(m, "test") for name, m in arms.items()}
    print(f"warm: weight {w} (valid {val})", flush=True)
    return {
        "rows": {name: ci(v) for name, v in vals.items()},
        "weight": w,
        "valid_ndcg@10": {str(k): round(v, 4) for k, v in val.items()},
        "paired_text+image_vs_text": paired_test(
            vals["content: text + image (w from valid)"], vals["content: text"]
        ).to_dict(),
    }


#: the two-tower arms: label -> modalities
TT_ARMS: dict[str, tuple[str, ...]] = {
    "two_tower: ID only": ("id",),
    "two_tower: text": ("id", "text"),
    "two_tower: image": ("id", "image"),
    "two_tower: text + image": ("id", "text", "image"),
}
#: two-tower settings beside the arm's modalities (``--smoke`` shrinks them)
TT_PARAMS: dict[str, Any] = {"fusion": "gate", "dim": 64, "id_dropout": 0.2}
TT_TRAIN: dict[str, Any] = {"progress_bar": False, "accelerator": "cpu"}
SMOKE_PARAMS: dict[str, Any] = {"dim": 8, "max_len": 10, "n_heads": 2}
SMOKE_TRAIN: dict[str, Any] = {"max_epochs": 1, "batch_size": 256}
SMOKE_USERS = 150
#: fit seconds per two-tower model (by id: the models live as long as the run)
FIT_SECONDS: dict[int, float] = {}


def two_tower(
    train: Dataset,
    cache: str,
    modalities: tuple[str, ...],
    dropout: float,
    seed: int,
    valid: pl.DataFrame | None = None,
) -> Any:
    """A fitted two-tower arm (early stopping on ``valid``, else on its own ``val_fraction``)."""
    from lmrec.models.two_tower import TwoTower

    t0 = time.perf_counter()
    model = TwoTower(
        modalities=modalities,
        modality_dropout=dropout if len(modalities) > 1 else 0.0,
        profile=PROFILE,
        cache_dir=cache,
        encoder=ENCODERS["text"],
        encoder_device="cpu",
        image_encoder=ENCODERS["image"],
        train={**TT_TRAIN, "seed": seed},
        **TT_PARAMS,
    ).fit(train, valid=valid)
    FIT_SECONDS[id(model)] = round(time.perf_counter() - t0, 1)
    return model


def _fit_info(model: Any) -> dict[str, Any]:
    rep = model.report_
    return {
        "fit_s": FIT_SECONDS.get(id(model)),
        "best_epoch": None if rep is None else rep.best_epoch,
        "epochs": None if rep is None else len(rep.epochs),
        "valid_ndcg@10 (early stopping)": None
        if rep is None or rep.best_metric is None
        else round(rep.best_metric, 4),
    }


def _choose_dropout(val: dict[float, float]) -> float:
    return max(val, key=lambda p: (val[p], -p))  # ties: less dropout


def run_two_tower_warm(data: Dataset, seeds: list[int], dropouts: list[float], cache: str) -> dict[str, Any]:
    """Warm leave-last-out, full ranking: the four two-tower arms, one fit per arm and training seed."""
    split = leave_last_out(data, n_test=1, n_valid=1)
    train = split.train
    assert split.valid is not None
    both = TT_ARMS["two_tower: text + image"]

    def per_user(model: Recommender) -> np.ndarray:
        res = evaluate(model, split, ks=(K,), metrics=("ndcg",), beyond_accuracy=False, auc=False)
        assert res.per_user is not None
        return res.per_user[f"ndcg@{K}"].to_numpy()

    # validation: modality dropout, on the first seed's early-stopping metric (Split.valid)
    grid = {p: two_tower(train, cache, both, p, seeds[0], split.valid) for p in dropouts}
    val = {p: float(m.report_.best_metric or 0.0) for p, m in grid.items()}
    p = _choose_dropout(val)
    print(f"two_tower warm: modality dropout {p} (valid {val})", flush=True)
    per_arm: dict[str, list[np.ndarray]] = {}
    fits: list[dict[str, Any]] = []
    for seed in seeds:
        for name, mods in TT_ARMS.items():
            model = (
                grid[p]
                if (seed == seeds[0] and mods == both)
                else two_tower(train, cache, mods, p, seed, split.valid)
            )
            per_arm.setdefault(name, []).append(per_user(model))
            fits.append({"seed": seed, "arm": name, **_fit_info(model)})
            print(f"two_tower warm seed {seed} {name}: {per_arm[name][-1].mean():.4f} {fits[-1]}", flush=True)
    out = two_tower_summary(per_arm, p, val, fits)
    pooled = {name: np.concatenate(v) for name, v in per_arm.items()}
    out["grid_fits"] = [{"modality_dropout": k, **_fit_info(m)} for k, m in grid.items()]
    out["paired_text+image_vs_id"] = paired_test(
        pooled["two_tower: text + image"], pooled["two_tower: ID only"]
    ).to_dict()
    return out


def two_tower_summary(
    per_arm: dict[str, list[np.ndarray]], p: float, val: dict[float, float], fits: list[dict[str, Any]]
) -> dict[str, Any]:
    """Both protocols' two-tower report: pooled rows with CIs and per-seed means, the chosen
    modality dropout with its validation scores, the fits, and the paired tests against text and ID."""
    pooled = {name: np.concatenate(v) for name, v in per_arm.items()}
    return {
        "rows": {
            name: ci(v) | {"per_seed": [round(float(x.mean()), 4) for x in per_arm[name]]}
            for name, v in pooled.items()
        },
        "modality_dropout": p,
        "dropout_valid_ndcg@10": {str(k): round(v, 4) for k, v in val.items()},
        "fits": fits,
        "paired_text+image_vs_text": paired_test(
            pooled["two_tower: text + image"], pooled["two_tower: text"]
        ).to_dict(),
        "paired_image_vs_id": paired_test(pooled["two_tower: image"], pooled["two_tower: ID only"]).to_dict(),
    }


def run_two_tower_cold(data: Dataset, seeds: list[int], dropouts: list[float], cache: str) -> dict[str, Any]:
    """Cold items (the content arms' splits and candidates): the four two-tower arms per seed."""
    both = TT_ARMS["two_tower: text + image"]
    per_arm: dict[str, list[np.ndarray]] = {}
    fits: list[dict[str, Any]] = []
    val: dict[float, float] = {}
    p = dropouts[0]
    examples: list[dict[str, Any]] = []
    for seed in seeds:
        split = cold_item(data, item_fraction=0.1, valid_fraction=0.1, seed=seed)
        train = split.train
        assert split.valid is not None
        test_items = np.unique(split.test["item_idx"].to_numpy())
        chosen = None
        if seed == seeds[0]:
            # validation: modality dropout on the validation-cold items (test never feeds it)
            valid_items = np.unique(split.valid["item_idx"].to_numpy())
            grid = {q: two_tower(train, cache, both, q, seed) for q in dropouts}
            val = {
                q: float(candidate_ndcg(m, train, split.valid, valid_items).mean()) for q, m in grid.items()
            }
            p = _choose_dropout(val)
            chosen = grid[p]
            print(f"two_tower cold: modality dropout {p} (valid {val})", flush=True)
        models: dict[str, Recommender] = {}
        for name, mods in TT_ARMS.items():
            model = (
                chosen if (chosen is not None and mods == both) else two_tower(train, cache, mods, p, seed)
            )
            models[name] = model
            per_arm.setdefault(name, []).append(candidate_ndcg(model, train, split.test, test_items))
            fits.append({"seed": seed, "arm": name, **_fit_info(model)})
            print(f"two_tower cold seed {seed} {name}: {per_arm[name][-1].mean():.4f} {fits[-1]}", flush=True)
        if not examples:
            examples = picture_examples(
                data, models["two_tower: text"], models["two_tower: text + image"], split, test_items
            )
    return two_tower_summary(per_arm, p, val, fits) | {"examples": examples}


def smoke_subset(data: Dataset, n_users: int) -> Dataset:
    """The interactions of the first ``n_users`` users (every item, its text and picture kept)."""
    keep = data.user_vocab.external(np.arange(min(n_users, data.n_users)))
    inter = data.interactions.filter(pl.col("user_id").is_in(list(keep)))
    return Dataset.from_frames(
        inter.select("user_id", "item_id", "rating", "timestamp"), items=data.items, name=data.name
    ).with_images(data.images)  # type: ignore[arg-type]


def time_encoding(data: Dataset, main_cache: str, threads: int) -> dict[str, Any]:
    """Encode every poster through a fresh cache, then again through the same cache; the vectors
    then go into ``main_cache`` too, so the model runs do not encode them a second time."""
    assert data.images is not None
    paths = list(data.images.paths.values())
    enc = get_image_encoder(ENCODERS["image"], threads=threads)
    with tempfile.TemporaryDirectory(prefix="lmrec-mm-cache-") as root:
        t0 = time.perf_counter()
        vecs = cached_encode_images(paths, enc, EmbeddingCache(root), show_progress=True)
        first = time.perf_counter() - t0
        cache = EmbeddingCache(root)
        t0 = time.perf_counter()
        cached_encode_images(paths, enc, cache)
        second = time.perf_counter() - t0
    EmbeddingCache(main_cache).put(enc.model_id, [image_key(p) for p in paths], vecs)
    return {
        "images": len(paths),
        "threads": threads,
        "first_run_s": round(first, 2),
        "first_run_images_per_s": round(len(paths) / first, 1),
        "cached_run_s": round(second, 3),
        "cached_share": round(second / first, 4),
        "cache_hits": cache.last_stats.hits,
        "loadavg": os.getloadavg(),
    }


def throughput(data: Dataset, n: int) -> list[dict[str, Any]]:
    assert data.images is not None
    paths = list(data.images.paths.values())[:n]
    out = []
    for threads in (1, 2):
        enc = get_image_encoder(ENCODERS["image"], threads=threads)
        enc.encode(paths[:8])  # warm-up (loads the weights)
        t0 = time.perf_counter()
        enc.encode(paths, batch_size=32)
        s = time.perf_counter() - t0
        out.append(
            {
                "threads": threads,
                "images": len(paths),
                "seconds": round(s, 2),
                "images_per_s": round(len(paths) / s, 1),
                "loadavg": os.getloadavg(),
            }
        )
        print(f"throughput: {out[-1]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--weights", default="0.1,0.25,0.5,0.75")
    ap.add_argument(
        "--cache-dir", default=None, help="embedding cache for the model runs (default: the user cache)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the timed encoding")
    ap.add_argument(
        "--throughput", type=int, default=0, help="also time N posters at 1 and 2 threads, no cache"
    )
    ap.add_argument("--skip-timing", action="store_true", help="no fresh-cache encoding run")
    ap.add_argument("--text-encoder", default=None, help="text model (default: the bundled MiniLM)")
    ap.add_argument(
        "--image-encoder",
        default=None,
        help="image model (default: MobileNetV2; e.g. 'mobilenetv2+efficientnet-lite2', 'histogram')",
    )
    ap.add_argument(
        "--hybrid", action="store_true", help="also the hybrid ranker with/without picture features (warm)"
    )
    ap.add_argument(
        "--projection",
        default="image,text,text+image",
        help="modalities with a cf_projection arm on cold items ('' for none)",
    )
    ap.add_argument("--two-tower", action="store_true", help="also the two-tower arms (ID/text/image/both)")
    ap.add_argument("--skip-content", action="store_true", help="only the two-tower arms (with --two-tower)")
    ap.add_argument("--protocols", default="cold,warm", help="which protocols to run: cold, warm or both")
    ap.add_argument(
        "--tt-dropouts", default="0,0.25,0.5", help="two-tower modality dropouts tried on validation"
    )
    ap.add_argument("--smoke", action="store_true", help="tiny two-tower runs on a user subset (for tests)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    protocols = set(args.protocols.split(","))
    if protocols - {"cold", "warm"}:
        ap.error(f"--protocols: give cold and/or warm, not {args.protocols!r}")
    if args.smoke:
        TT_PARAMS.update(SMOKE_PARAMS)
        TT_TRAIN.update(SMOKE_TRAIN)
    ENCODERS.update(text=args.text_encoder, image=args.image_encoder)
    PROJECTED[:] = [m for m in args.projection.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",")]
    cache = args.cache_dir or str(default_cache_dir())
    t0 = time.perf_counter()
    data = load_dataset("ml-100k-posters", args.data_dir, download=False)
    result: dict[str, Any] = {
        "dataset": data.name,
        "seeds": seeds,
        "weights_tried": weights,
        "text_encoder": args.text_encoder or "all-MiniLM-L6-v2 (bundled)",
        "image_encoder": args.image_encoder or "mobilenetv2-imagenet",
    }
    if args.smoke:
        data = smoke_subset(data, SMOKE_USERS)
        result["smoke_users"] = data.n_users
    if not args.skip_timing:
        result["encoding"] = time_encoding(data, cache, args.threads)
        print(f"encoding: {result['encoding']}", flush=True)
    if args.throughput:
        result["throughput"] = throughput(data, args.throughput)
    content_arms = not (args.skip_content and args.two_tower)
    if content_arms and "cold" in protocols:
        result["cold"] = run_cold(data, seeds, weights, cache)
    if content_arms and "warm" in protocols:
        result["warm"] = run_warm(data, weights, cache)
    if args.two_tower:
        dropouts = [float(x) for x in args.tt_dropouts.split(",")]
        result["two_tower_settings"] = {**TT_PARAMS, "train": TT_TRAIN, "dropouts_tried": dropouts}
        if "cold" in protocols:
            result["two_tower_cold"] = run_two_tower_cold(data, seeds, dropouts, cache)
        if "warm" in protocols:
            result["two_tower_warm"] = run_two_tower_warm(data, seeds, dropouts, cache)
    if args.hybrid:
        result["hybrid"] = run_hybrid(data, cache)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"] = {"cpu_count": os.cpu_count(), "gpu": False, "loadavg_end": os.getloadavg()}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print()
    cold = {**result.get("cold", {}).get("rows", {}), **result.get("two_tower_cold", {}).get("rows", {})}
    warm = {**result.get("warm", {}).get("rows", {}), **result.get("two_tower_warm", {}).get("rows", {})}
    print(f"### ml-100k-posters: NDCG@10 with per-user bootstrap 95% CIs (cold: seeds {seeds} pooled)")
    print()
    print("| arm | warm (leave-last-out, full ranking) | cold items (cold candidates) |")
    print("|---|---:|---:|")
    names = [
        ("popularity", "popularity", "popularity (ties by item id)"),
        ("popularity, random ties", None, "popularity (ties at random)"),
        ("content: image -> CF projection", None, "content: image -> CF projection (from valid)"),
        ("content: text -> CF projection", None, "content: text -> CF projection (from valid)"),
        ("content: text + image -> CF projection", None, "content: text+image -> CF projection (from valid)"),
        ("content: text", "content: text", "content: text"),
        ("content: image", "content: image", "content: image"),
        (
            "content: text + image",
            "content: text + image (w from valid)",
            "content: text + image (w from valid)",
        ),
    ]

    def cell(r: dict[str, Any] | None) -> str:
        return "" if r is None else f"{r['ndcg@10']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}]"

    names += [(name, name, name) for name in TT_ARMS]
    for label, w_key, c_key in names:
        if (w_key not in warm) and (c_key not in cold):
            continue
        print(f"| {label} | {cell(warm.get(w_key) if w_key else None)} | {cell(cold.get(c_key))} |")
    if "hybrid" in result:
        print("| hybrid ranker (EASE, item-kNN, popularity) | | |")
        for label, r in result["hybrid"]["rows"].items():
            print(f"| {label} | {cell(r)} | |")
    for key, model_name in (("cold", "content"), ("two_tower_cold", "two_tower")):
        if key not in result:
            continue
        print()
        print(
            f"{model_name}: cold items (first seed) whose mean rank among the cold candidates moved most "
            "with the poster:"
        )
        print()
        print(
            "| effect | item | title | suspect poster link | users | mean rank, text | mean rank, text + image |"
        )
        print("|---|---:|---|---:|---:|---:|---:|")
        for e in result[key]["examples"]:
            print(
                f"| {e['effect']} | {e['item_id']} | {e['title']} | {e['poster_link_suspect']} | {e['users']} | "
                f"{e['mean_rank_text']} | {e['mean_rank_text_image']} |"
            )
    print()
    if "warm" in result and "cold" in result:
        print(
            f"picture weight chosen on validation: warm {result['warm']['weight']}, cold "
            f"{[c['weight'] for c in result['cold']['weights']]}"
        )
    for key in ("two_tower_warm", "two_tower_cold"):
        if key in result:
            print(
                f"{key}: modality dropout chosen on validation {result[key]['modality_dropout']} "
                f"(valid NDCG@10 {result[key]['dropout_valid_ndcg@10']})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
