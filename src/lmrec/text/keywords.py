"""Per-item keyphrases from reviews (KeyBERT-style, with maximal-marginal-relevance diversity).

For each item:

1. **Candidates**: word n-grams (1-3 words by default) from the item's reviews that neither start nor
   end with a stop word and do not cross punctuation; the ``candidates`` best by TF-IDF (frequency in
   this item's reviews x rarity across items) are kept, so that "works great" (said of everything)
   gives way to "pop filter" before any embedding is computed.
2. **Ranking**: candidates and the item's review text are embedded with the same encoder; a
   candidate's score is its cosine similarity to the item's review embedding.
3. **Diversity**: maximal marginal relevance (:func:`lmrec.rerank.mmr.mmr`, with ``λ = 1 − diversity``)
   picks ``top_n`` phrases one at a time, trading relevance against similarity to phrases already
   picked (``diversity`` 0 = pure relevance, 1 = pure novelty after the most relevant phrase), so
   the list does not read "guitar strings, strings, guitar string set".

Candidate phrases are shared across items, so a catalogue's whole candidate set is embedded once (and
cached on disk when a cache is given).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError
from lmrec.rerank.mmr import mmr
from lmrec.text.cache import EmbeddingCache, cached_encode
from lmrec.text.encoder import TextEncoder, l2_normalize
from lmrec.text.profiles import clean_text, truncate

#: phrases may not start or end with these (package data: ``stop_words.txt``)
STOP_WORDS = frozenset(
    line.strip()
    for line in resources.files(__package__)
    .joinpath("stop_words.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip() and not line.startswith("#")
)
#: stop words that may not sit inside a phrase either ("bang for the buck" is fine, "board i thought" is not)
_INNER_STOP = frozenset(
    [
        "i",
        "you",
        "we",
        "they",
        "he",
        "she",
        "it",
        "me",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "is",
        "was",
        "are",
        "were",
        "be",
        "been",
        "am",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "will",
        "would",
        "can",
        "could",
        "should",
        "im",
        "ive",
        "dont",
        "didnt",
        "doesnt",
    ]
)
_CLAUSE = re.compile(r"[.,;:!?()\[\]{}\"“”|/\\\n\t]+|\s-\s|\s–\s")
_WORD = re.compile(r"[a-z0-9][a-z0-9'+#&-]*", re.IGNORECASE)


def _ngrams(text: str, ngram_range: tuple[int, int]) -> list[str]:
    lo, hi = ngram_range
    out: list[str] = []
    for clause in _CLAUSE.split(text.lower()):
        words = [w.strip("'-") for w in _WORD.findall(clause)]
        words = [w for w in words if w]
        for n in range(lo, hi + 1):
            for i in range(len(words) - n + 1):
                gram = words[i : i + n]
                if (
                    gram[0] in STOP_WORDS
                    or gram[-1] in STOP_WORDS
                    or any(w in _INNER_STOP for w in gram[1:-1])
                ):
                    continue
                if all(w.isdigit() for w in gram) or (n == 1 and len(gram[0]) < 3):
                    continue
                out.append(" ".join(gram))
    return out


def candidate_phrases(
    docs: Sequence[Sequence[str]],
    *,
    ngram_range: tuple[int, int] = (1, 3),
    candidates: int = 30,
    min_count: int = 1,
) -> list[list[str]]:
    """The ``candidates`` best phrases per document by TF-IDF (document = one item's reviews).

    Term frequency counts the reviews that use a phrase (one chatty review cannot dominate); the
    inverse document frequency is over items. Longer phrases win ties because they are more specific.
    """
    per_doc: list[Counter[str]] = []
    df: Counter[str] = Counter()
    for reviews in docs:
        c: Counter[str] = Counter()
        for review in reviews:
            c.update(set(_ngrams(review, ngram_range)))
        per_doc.append(c)
        df.update(c.keys())
    n_docs = max(len(docs), 1)
    out = []
    for c in per_doc:
        scored = [
            (tf * math.log((1 + n_docs) / (1 + df[p])) + 1e-3 * p.count(" "), p)
            for p, tf in c.items()
            if tf >= min_count
        ]
        scored.sort(key=lambda x: (-x[0], x[1]))
        out.append([p for _, p in scored[:candidates]])
    return out


def extract_keywords(
    docs: Sequence[Sequence[str] | str],
    encoder: TextEncoder,
    *,
    top_n: int = 5,
    ngram_range: tuple[int, int] = (1, 3),
    candidates: int = 30,
    diversity: float = 0.5,
    doc_vectors: np.ndarray | None = None,
    per_review: bool = False,
    doc_chars: int = 2000,
    cache: EmbeddingCache | str | None = None,
    batch_size: int = 64,
    show_progress: bool | None = None,
) -> list[list[tuple[str, float]]]:
    """Keyphrases for each document (an item's list of reviews, or one string), best first.

    The document embedding is ``doc_vectors`` when given (e.g. the item profile vectors already
    computed), else the mean of the item's per-review embeddings (``per_review=True``: every review
    read, costs one encode per review) or the embedding of the reviews joined and cut to
    ``doc_chars`` (default: one encode per item; the model reads the first ~256 word pieces).
    Returns ``(phrase, similarity)`` lists; documents without usable words get an empty list.
    """
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1], got {diversity}")
    docs_l = [[d] if isinstance(d, str) else [str(r) for r in d if r] for d in docs]
    docs_l = [[clean_text(r) for r in d if clean_text(r)] for d in docs_l]
    cands = candidate_phrases(docs_l, ngram_range=ngram_range, candidates=candidates)
    vocab = sorted({p for c in cands for p in c})
    if not vocab:
        return [[] for _ in docs_l]
    phrase_vecs = cached_encode(vocab, encoder, cache, batch_size=batch_size, show_progress=show_progress)
    row = {p: i for i, p in enumerate(vocab)}
    if doc_vectors is not None:
        dv = l2_normalize(np.asarray(doc_vectors, np.float32))
        if len(dv) != len(docs_l):
            raise ValueError(f"{len(dv)} doc_vectors for {len(docs_l)} documents")
    elif per_review:
        flat = [truncate(r, doc_chars) for d in docs_l for r in d]
        vecs = cached_encode(flat, encoder, cache, batch_size=batch_size, show_progress=show_progress)
        dv = np.zeros((len(docs_l), phrase_vecs.shape[1]), np.float32)
        at = 0
        for i, d in enumerate(docs_l):
            if d:
                dv[i] = vecs[at : at + len(d)].mean(axis=0)
            at += len(d)
        dv = l2_normalize(dv)
    else:
        joined = [truncate(" ".join(d), doc_chars) for d in docs_l]
        dv = cached_encode(joined, encoder, cache, batch_size=batch_size, show_progress=show_progress)
    out: list[list[tuple[str, float]]] = []
    for i, c in enumerate(cands):
        if not c:
            out.append([])
            continue
        cv = phrase_vecs[[row[p] for p in c]]
        sims = cv @ dv[i]
        picks = mmr(sims, top_n, similarity=cv @ cv.T, lambda_=1.0 - diversity, scale=False)
        out.append([(c[j], float(sims[j])) for j in picks])
    return out


def review_keywords(
    data: Dataset,
    encoder: TextEncoder,
    *,
    top_n: int = 5,
    items: Sequence[Any] | None = None,
    **options: Any,
) -> pl.DataFrame:
    """Keyphrases per item from ``data.reviews``: ``item_id, keyword, score, rank`` (rank from 1).

    ``items`` limits the work to some item ids; items without reviews are absent from the result.
    ``options`` go to :func:`extract_keywords`. A ``summary`` column (Amazon's review headline) is
    read together with the review text.
    """
    if data.reviews is None or data.reviews.height == 0:
        raise DataError(f"dataset {data.name!r} has no reviews to extract keywords from", column="text")
    text = pl.col("text").cast(pl.Utf8).fill_null("")
    if "summary" in data.reviews.columns:
        text = pl.col("summary").cast(pl.Utf8).fill_null("") + pl.lit(". ") + text
    rev = data.reviews.select("item_id", text.alias("_t"))
    if items is not None:
        rev = rev.filter(pl.col("item_id").is_in(list(items)))
    grouped = rev.group_by("item_id", maintain_order=True).agg("_t").sort("item_id")
    ids = grouped["item_id"].to_list()
    kws = extract_keywords(grouped["_t"].to_list(), encoder, top_n=top_n, **options)
    rows = [(item, p, s, r + 1) for item, lst in zip(ids, kws, strict=True) for r, (p, s) in enumerate(lst)]
    return pl.DataFrame(
        rows,
        schema={
            "item_id": data.reviews["item_id"].dtype,
            "keyword": pl.Utf8,
            "score": pl.Float32,
            "rank": pl.Int64,
        },
        orient="row",
    )


def keyword_map(frame: pl.DataFrame) -> dict[Any, list[str]]:
    """``item_id -> [keyword, ...]`` (best first) from :func:`review_keywords`' frame, for profiles."""
    if frame.height == 0:
        return {}
    g = frame.sort(["item_id", "rank"]).group_by("item_id", maintain_order=True).agg("keyword")
    return dict(zip(g["item_id"].to_list(), g["keyword"].to_list(), strict=True))


__all__ = [
    "STOP_WORDS",
    "candidate_phrases",
    "extract_keywords",
    "keyword_map",
    "review_keywords",
]
