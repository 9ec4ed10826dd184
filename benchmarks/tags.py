"""Tag prediction from item text on held-out items: ml-latest-small tags and Last.fm tags.

For each dataset the tagged items are split (seeded) into training items and 20% held-out items.
Inputs are item text embeddings (bundled all-MiniLM-L6-v2) of the tag-free item profile: title,
year and genres for movies; only the artist's name for Last.fm (the dataset has no other artist
text, so this is a hard, mostly world-knowledge task). Labels are the items' user tags; tags used on
fewer than 5 training items are not learned, and held-out items whose tags are all unlearned are left
out of the metrics.

Predictors compared (same inputs, same tags, thresholds tuned on a validation slice of the training
items for micro-F1, every item gets at least one tag):

* ``TagPredictor`` (linear, tag-name initialisation) — the shipped model;
* ``TagPredictor`` without tag-name initialisation (weights start at zero);
* ``TagPredictor`` with one hidden layer (256);
* kNN: similarity-weighted tag votes of the 20 nearest training items in embedding space;
* popular tags: every item gets the training set's most frequent tags (a floor).

Reports P@5, R@5, micro-F1, macro-F1 and predicted tags for a few untagged items. JSON + Markdown.

    python benchmarks/tags.py [--data-dir ../shared/data] [--cache-dir DIR] [--datasets ml-latest-small,hetrec2011-lastfm-2k]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import load_dataset
from lmrec.text import EmbeddingCache, get_encoder
from lmrec.text.cache import default_cache_dir
from lmrec.text.tagging import TagPredictor, tag_metrics, tag_task


def _tune(scores: np.ndarray, truth: np.ndarray) -> float:
    grid = np.concatenate([np.linspace(0.01, 0.2, 20), np.linspace(0.25, 0.9, 14)])
    f1 = [tag_metrics(scores, truth, float(t)).micro_f1 for t in grid]
    return float(grid[int(np.argmax(f1))])


def knn_scores(X_train: np.ndarray, Y_train: np.ndarray, X: np.ndarray, k: int = 20) -> np.ndarray:
    sims = X @ X_train.T
    idx = np.argpartition(-sims, min(k, len(X_train) - 1), axis=1)[:, :k]
    w = np.maximum(np.take_along_axis(sims, idx, axis=1), 0.0)
    votes = np.einsum("nk,nkt->nt", w, Y_train[idx].astype(np.float32))
    return votes / np.maximum(w.sum(axis=1, keepdims=True), 1e-9)


def run(
    name: str, data: Dataset, encoder: Any, cache: EmbeddingCache, seed: int, show: int
) -> dict[str, Any]:
    ids, texts, labels, untagged_ids, untagged_texts = tag_task(data)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    n_test = round(0.2 * len(ids))
    test, train = perm[:n_test], perm[n_test:]
    # show predictions for the untagged items with the most interactions (items people know)
    pop = dict(zip(data.item_vocab.ids, data.item_popularity().tolist(), strict=True))
    shown = sorted(range(len(untagged_ids)), key=lambda i: -pop[untagged_ids[i]])[:show]
    t0 = time.perf_counter()
    X = cache.encode(texts + [untagged_texts[i] for i in shown], encoder, show_progress=True)
    encode_s = time.perf_counter() - t0
    X_all, X_shown = X[: len(texts)], X[len(texts) :]
    train_labels = [labels[i] for i in train]
    test_labels = [labels[i] for i in test]

    results: dict[str, dict[str, float]] = {}
    fitted: dict[str, TagPredictor] = {}
    for label, params in (
        ("TagPredictor (linear, tag-name init)", {}),
        ("TagPredictor (linear, zero init)", {"init_from_tag_text": False}),
        ("TagPredictor (hidden 256)", {"hidden": 256}),
    ):
        t1 = time.perf_counter()
        pred = TagPredictor(text_encoder=encoder, seed=seed, **params).fit(
            X_all[train], train_labels, encoder_id=encoder.model_id
        )
        m = pred.evaluate(X_all[test], test_labels, k=5).to_dict()
        m["fit_seconds"] = round(time.perf_counter() - t1, 1)
        m["threshold"] = pred.threshold_
        results[label] = m
        fitted[label] = pred
    ref = fitted["TagPredictor (linear, tag-name init)"]
    # baselines on the same tag vocabulary, thresholds tuned on a validation slice of the training items
    Y_train = ref._label_matrix(train_labels)
    Y_test = ref._label_matrix(test_labels)
    keep = Y_test.any(axis=1)
    n_val = round(0.15 * len(train))
    va, tr = np.arange(n_val), np.arange(n_val, len(train))
    Xtr = X_all[train]
    for label, score_fn in (
        ("kNN (20 nearest training items)", lambda A, B, Q: knn_scores(A, B, Q)),
        (
            "popular tags (constant)",
            lambda A, B, Q: np.broadcast_to(B.mean(axis=0), (len(Q), B.shape[1])).copy(),
        ),
    ):
        thr = _tune(score_fn(Xtr[tr], Y_train[tr], Xtr[va]), Y_train[va])
        scores = score_fn(Xtr, Y_train, X_all[test][keep])
        results[label] = {**tag_metrics(scores, Y_test[keep], thr, k=5).to_dict(), "threshold": thr}

    preds = ref.predict(X_shown, k=5)
    titles = dict(zip(data.item_vocab.ids, data.item_titles(), strict=True))
    examples = [
        {
            "item_id": untagged_ids[i],
            "title": titles[untagged_ids[i]],
            "interactions": pop[untagged_ids[i]],
            "predicted": [t for t, _ in p],
        }
        for i, p in zip(shown, preds, strict=True)
    ]
    return {
        "dataset": name,
        "input_text": texts[0],
        "n_tagged_items": len(ids),
        "n_train_items": len(train),
        "n_heldout_items": len(test),
        "n_heldout_evaluated": int(keep.sum()),
        "n_tags_learned": len(ref.tags_),
        "encode_seconds": round(encode_s, 1),
        "results": results,
        "untagged_examples": examples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--datasets", default="ml-latest-small,hetrec2011-lastfm-2k")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--show", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    encoder = get_encoder(None)
    cache = EmbeddingCache(args.cache_dir or default_cache_dir())
    reports = [
        run(n, load_dataset(n, args.data_dir, download=False), encoder, cache, args.seed, args.show)
        for n in args.datasets.split(",")
    ]
    print(json.dumps(reports, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(reports, indent=2))
    for rep in reports:
        print()
        print(f"### {rep['dataset']}: tags of held-out items from item text ({encoder.model_id})")
        print()
        print(
            f"{rep['n_tagged_items']} tagged items, {rep['n_train_items']} train / {rep['n_heldout_items']} held out "
            f"({rep['n_heldout_evaluated']} with a learned tag); {rep['n_tags_learned']} tags learned. "
            f'Input example: "{rep["input_text"]}"'
        )
        print()
        print("| predictor | P@5 | R@5 | micro-F1 | macro-F1 |")
        print("|---|---:|---:|---:|---:|")
        for label, m in rep["results"].items():
            print(
                f"| {label} | {m['p@5']:.3f} | {m['r@5']:.3f} | {m['micro_f1']:.3f} | {m['macro_f1']:.3f} |"
            )
        print()
        for ex in rep["untagged_examples"]:
            print(
                f"- {ex['title']} ({ex['interactions']:.0f} interactions, untagged): {', '.join(ex['predicted'])}"
            )


if __name__ == "__main__":
    main()
