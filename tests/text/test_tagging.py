"""TagPredictor: multi-label tags from item text embeddings, metrics, persistence.

``minilm`` and ``ml_small`` come from ``tests/text/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError, LmrecError, NotFittedError
from lmrec.text.encoder import HashingEncoder, SentenceTransformerEncoder
from lmrec.text.tagging import TagPredictor, predicted_sets, tag_metrics, tag_task

# Training and held-out descriptions use different words for the same things: only a model that
# knows what words mean can carry the tags over.
TRAIN = [
    ("heavy distorted guitars and screaming vocals", ["metal"]),
    ("thrash band with fast double bass drumming", ["metal"]),
    ("aggressive riffs, growled lyrics and mosh pits", ["metal"]),
    ("loud dark riffs from a death metal band", ["metal"]),
    ("smooth saxophone improvisation in a smoky club", ["jazz"]),
    ("swinging big band with trumpet solos", ["jazz"]),
    ("bebop quartet with walking upright bass", ["jazz"]),
    ("cool trumpet and piano trio improvising", ["jazz"]),
    ("rapper with sharp rhymes over boom bap beats", ["hip hop"]),
    ("mc battles, turntables and sampled breakbeats", ["hip hop"]),
    ("street rap verses over heavy 808 beats", ["hip hop"]),
    ("freestyle rapping with a dj scratching records", ["hip hop"]),
    ("symphony orchestra performing a romantic era concerto", ["classical"]),
    ("string quartet playing baroque chamber music", ["classical"]),
    ("solo piano sonatas by a nineteenth century composer", ["classical"]),
    ("opera arias sung with a full orchestra", ["classical"]),
    ("jazz musicians sitting in with a symphony orchestra", ["jazz", "classical"]),
    ("rap vocals over a thrash metal band", ["hip hop", "metal"]),
]
HELDOUT = [
    ("brutal headbanging anthems with shredding solos", ["metal"]),
    ("blast beats and a vocalist who roars", ["metal"]),
    ("late night clarinet and vibraphone improvisations", ["jazz"]),
    ("a trumpeter leads a swinging ensemble through standards", ["jazz"]),
    ("an emcee spits bars over a producer's samples", ["hip hop"]),
    ("gangsta rap mixtape with hard hitting beats", ["hip hop"]),
    ("a violin concerto and a philharmonic performance", ["classical"]),
    ("harpsichord suites from the baroque period", ["classical"]),
]


def test_tag_metrics_known_answer() -> None:
    truth = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.2, 0.3, 0.1, 0.6]])
    m = tag_metrics(scores, truth, threshold=0.5, k=2, min_predicted=1)
    # top-2: item0 {0,1} -> 1 hit; item1 {3,1} -> 1 hit; P@2 = 2 hits / 4 slots
    assert m.precision_at_k == pytest.approx(0.5)
    assert m.recall_at_k == pytest.approx((1 / 2 + 1 / 1) / 2)
    # predicted sets at 0.5: item0 {0,1,2} vs truth {0,2}; item1 {3} vs truth {1}
    # -> tp = 2 (tag0, tag2), fp = 2 (tag1 on item0, tag3 on item1), fn = 1 (tag1 on item1)
    assert m.micro_f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    # per-tag F1 over the tags present in truth (0, 1, 2): 1, 0, 1
    assert m.macro_f1 == pytest.approx(2 / 3)
    assert m.n_tags == 3
    forced = predicted_sets(np.array([[0.1, 0.2]]), 0.9, min_predicted=1)
    assert forced.tolist() == [[False, True]]  # nothing above threshold: the best tag anyway


def test_predictor_generalises_through_meaning_with_minilm(
    tmp_path: Path, minilm: SentenceTransformerEncoder
) -> None:
    texts, labels = [t for t, _ in TRAIN], [ls for _, ls in TRAIN]
    pred = TagPredictor(text_encoder=minilm, device="cpu", min_items=2, epochs=200).fit_texts(texts, labels)
    assert sorted(pred.tags_) == ["classical", "hip hop", "jazz", "metal"]
    assert 0 < pred.threshold_ < 1
    X_test = minilm.encode([t for t, _ in HELDOUT])
    m = pred.evaluate(X_test, [ls for _, ls in HELDOUT], k=1)
    assert m.precision_at_k >= 0.75, m  # the best tag of a held-out item is right
    assert m.micro_f1 >= 0.6, m
    # the same task from a model that only matches letters and words does worse
    hashing = HashingEncoder(dim=384)
    lexical = TagPredictor(text_encoder=hashing, min_items=2, init_from_tag_text=True).fit_texts(
        texts, labels
    )
    lm = lexical.evaluate(hashing.encode([t for t, _ in HELDOUT]), [ls for _, ls in HELDOUT], k=1)
    assert m.precision_at_k > lm.precision_at_k

    top = pred.predict_texts(["a string orchestra plays a symphony"], k=2)[0]
    assert top[0][0] == "classical" and top[0][1] > top[1][1]
    sets = pred.predict(X_test)
    assert all(len(s) >= 1 for s in sets)

    path = pred.save(tmp_path / "tagger")
    assert sorted(p.name for p in path.iterdir()) == ["tagger.json", "tagger.safetensors"]
    loaded = TagPredictor.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), pred.predict_proba(X_test))
    assert loaded.tags_ == pred.tags_ and loaded.threshold_ == pred.threshold_
    assert loaded.predict_texts(["a string orchestra plays a symphony"], k=1)[0][0][0] == "classical"


def test_hidden_layer_and_vocabulary_limits() -> None:
    enc = HashingEncoder(dim=64)
    texts, labels = [t for t, _ in TRAIN], [ls for _, ls in TRAIN]
    X = enc.encode(texts)
    pred = TagPredictor(hidden=32, min_items=2, epochs=300, threshold=0.5).fit(X, labels)
    train_m = pred.evaluate(X, labels, k=1)
    assert train_m.precision_at_k >= 0.9  # it can fit its training data
    assert pred.threshold_ == 0.5
    few = TagPredictor(min_items=5, max_tags=1, init_from_tag_text=False).fit(X, labels)
    assert few.tags_ == ["classical"]  # all four tags label 5 items: ties go alphabetically, max_tags cuts
    with pytest.raises(DataError, match="min_items"):
        TagPredictor(min_items=50, init_from_tag_text=False).fit(X, labels)
    with pytest.raises(ValueError, match="shape"):
        TagPredictor(init_from_tag_text=False).fit(X[:3], labels)
    with pytest.raises(NotFittedError):
        TagPredictor().predict_proba(X)
    with pytest.raises(ValueError, match="dimension"):
        pred.predict_proba(np.zeros((1, 10), np.float32))
    with pytest.raises(LmrecError, match="not a saved tag predictor"):
        TagPredictor.load(Path("/nonexistent/tagger"))


def test_tag_task_on_movielens(ml_small: Dataset) -> None:
    ids, texts, labels, untagged_ids, untagged_texts = tag_task(ml_small)
    assert len(ids) == 1572 and len(ids) + len(untagged_ids) == ml_small.n_items
    assert not any("Tags:" in t for t in texts + untagged_texts)  # labels never leak into inputs
    toy = ids.index(1)
    assert texts[toy].startswith("Toy Story (1995). Genres:") and "pixar" in labels[toy]
    assert all(t == t.lower() for ls in labels for t in ls)
