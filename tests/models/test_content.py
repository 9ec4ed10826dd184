"""ContentRecommender: known users, unseen histories, free text, zero-shot cold items, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.split import cold_item
from lmrec.errors import LmrecError, UnknownIdError
from lmrec.evaluation import evaluate
from lmrec.models.base import Query, Recommender
from lmrec.models.content import ContentConfig, ContentRecommender
from lmrec.models.popularity import Popularity
from lmrec.models.registry import create_model
from lmrec.testing import RecommenderContract, make_checkerboard
from lmrec.text.encoder import HashingEncoder, SentenceTransformerEncoder, shared_encoder


class TestContentContract(RecommenderContract):
    """The shared contract, with the model-free hashing encoder so it runs in milliseconds.

    Checkerboard titles say "even item 4" / "odd item 3": the text carries the group, and the
    withheld item is the only unseen item of the user's half, so it must come first.
    """

    model_factory = staticmethod(lambda: ContentRecommender(encoder="hashing"))


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEncoder:
    enc = shared_encoder(None, "cpu")  # the instance a loaded model (device="cpu") builds lazily
    assert isinstance(enc, SentenceTransformerEncoder)
    return enc.load()


@pytest.fixture(scope="module")
def movies(data_home: Path) -> Dataset:
    """A 240-movie slice of ml-latest-small (every rating of those movies), small enough to encode fast."""
    from lmrec.data.loaders import load_dataset

    full = load_dataset("ml-latest-small", data_home, download=False)
    assert full.items is not None
    keep = [1, 2, 13, 48, 364, 588, 595, 1907, 2355, 3114, 4886, 6377]  # animated family films
    keep += [
        858,
        1221,
        296,
        50,
        1213,
        111,
        2329,
        4993,
        260,
        1196,
        2571,
        1,
    ]  # crime / sci-fi / fantasy classics
    rng = np.random.default_rng(0)
    others = [i for i in full.items["item_id"].to_list() if i not in keep]
    keep += rng.choice(others, 240 - len(set(keep)), replace=False).tolist()
    keep = sorted(set(keep))
    inter = full.interactions.filter(pl.col("item_id").is_in(keep)).select(
        "user_id", "item_id", "timestamp", "rating"
    )
    items = full.items.filter(pl.col("item_id").is_in(keep)).drop("tags")
    tags = full.tags.filter(pl.col("item_id").is_in(keep)) if full.tags is not None else None
    return Dataset.from_frames(inter, items=items, tags=tags, name="ml-slice")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One embedding cache for the module: later fits of the same profiles are disk reads."""
    return str(tmp_path_factory.mktemp("content-cache"))


def test_registry_and_config() -> None:
    model = create_model("content", encoder="hashing", recency_half_life=5)
    assert isinstance(model, ContentRecommender)
    assert model.config.recency_half_life == 5 and model.supports == {"user", "history", "text"}
    with pytest.raises(ValueError):
        ContentConfig(text_weight=1.5)


def test_checkerboard_known_answer_with_hashing_encoder() -> None:
    """Titles say "even item i" / "odd item i": each user's withheld item of their half comes first."""
    data = make_checkerboard()
    model = ContentRecommender(encoder="hashing", recency_half_life=None).fit(data)
    recs = model.recommend(list(range(40)), k=1)
    for u in range(40):
        half = [i for i in range(20) if i % 2 == u % 2]
        withheld = half[u // 2 % len(half)]
        assert recs.filter(pl.col("user_id") == u)["item_id"].item() == withheld
    np.testing.assert_allclose(np.linalg.norm(model.item_vectors(), axis=1), 1.0, rtol=1e-5)


def test_recency_weighting_follows_the_latest_items() -> None:
    data = make_checkerboard()
    model = ContentRecommender(encoder="hashing", recency_half_life=1.0).fit(data)
    # an unseen user's history: old "odd" items, then recent "even" items
    q = Query(history=[1, 3, 5, 0, 2, 4])
    top = model.recommend(q, k=3)["item_id"].to_list()
    assert all(i % 2 == 0 for i in top)
    old_first = model.recommend(Query(history=[0, 2, 4, 1, 3, 5]), k=3)["item_id"].to_list()
    assert all(i % 2 == 1 for i in old_first)


def test_text_queries_and_blends_with_minilm(
    movies: Dataset, minilm: SentenceTransformerEncoder, cache_dir: str
) -> None:
    model = ContentRecommender(text_encoder=minilm, cache_dir=cache_dir).fit(movies)
    assert model.item_vectors().shape == (movies.n_items, 384)
    titles = dict(zip(movies.item_vocab.ids, movies.item_titles(), strict=True))
    genres = dict(
        zip(movies.item_table()["item_id"].to_list(), movies.item_table()["genres"].to_list(), strict=True)
    )

    kids = model.recommend(Query(text="animated movie for young kids"), k=5)["item_id"].to_list()
    assert sum("Animation" in genres[i] or "Children" in genres[i] for i in kids) >= 4, [
        titles[i] for i in kids
    ]

    mafia = model.recommend(Query(text="mafia crime family saga"), k=5)["item_id"].to_list()
    assert 858 in mafia or 1221 in mafia, [titles[i] for i in mafia]  # The Godfather (I or II)

    # a pure-text query from an unknown user id is fine; the text alone decides
    same = model.recommend(Query(user_id="someone new", text="animated movie for young kids"), k=5)
    assert same["item_id"].to_list() == kids

    # text + history: the text steers the history's recommendations
    hist = [858, 1221]  # Godfather I and II
    plain = model.recommend(Query(history=hist), k=10)["item_id"].to_list()
    steered = model.recommend(Query(history=hist, text="animated family film for children"), k=10)[
        "item_id"
    ].to_list()
    kid_share = lambda ids: sum("Children" in genres[i] or "Animation" in genres[i] for i in ids)  # noqa: E731
    assert kid_share(steered) > kid_share(plain)
    assert not set(hist) & set(plain)  # history is excluded


def test_zero_shot_cold_items_are_recommended(
    movies: Dataset, minilm: SentenceTransformerEncoder, cache_dir: str
) -> None:
    split = cold_item(movies, item_fraction=0.2, seed=3)
    cold = set(split.train.item_vocab.external(split.cold_items()))
    model = ContentRecommender(text_encoder=minilm, cache_dir=cache_dir).fit(split.train)
    pop = Popularity().fit(split.train)
    warm_users = set(split.train.interactions["user_id"].to_list())
    users = [u for u in split.test["user_id"].unique(maintain_order=True).to_list() if u in warm_users][:40]
    recs = model.recommend(users, k=10)
    assert recs.filter(pl.col("item_id").is_in(list(cold))).height > 0  # cold items do get recommended
    # popularity puts every cold item at the bottom (it cannot rank unseen items)
    assert pop.recommend(users, k=10).filter(pl.col("item_id").is_in(list(cold))).height == 0
    res = evaluate(model, split, ks=(10,), beyond_accuracy=False, auc=False)
    res_pop = evaluate(pop, split, ks=(10,), beyond_accuracy=False, auc=False)
    assert res.metrics["ndcg@10"] > res_pop.metrics["ndcg@10"]


def test_save_load_round_trip_and_lazy_encoder(
    tmp_path: Path, movies: Dataset, minilm: SentenceTransformerEncoder, cache_dir: str
) -> None:
    model = ContentRecommender(text_encoder=minilm, cache_dir=cache_dir, device="cpu").fit(movies)
    queries = [Query(user_id=movies.user_vocab.ids[0]), Query(history=[1, 2])]
    expected = model.recommend(queries, k=10)
    path = model.save(tmp_path / "content")
    loaded = Recommender.load(path)
    assert isinstance(loaded, ContentRecommender)
    assert loaded.recommend(queries, k=10).equals(expected)
    assert loaded._encoder is None  # history queries never build the text model
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    text = Query(text="space adventure with a galactic empire")
    assert loaded.recommend(text, k=5).equals(model.recommend(text, k=5))
    assert loaded.encoder is minilm  # built lazily from the config: the process-wide shared instance


def test_encoder_mismatch_is_refused(tmp_path: Path) -> None:
    data = make_checkerboard()
    model = ContentRecommender(encoder="hashing").fit(data)
    model._encoder = HashingEncoder(dim=64)
    with pytest.raises(LmrecError, match="different vector space"):
        model.recommend(Query(text="even"), k=1)


def test_add_items_extends_catalogue_without_refit(tmp_path: Path) -> None:
    data = make_checkerboard()
    model = ContentRecommender(encoder="hashing", cache_dir=str(tmp_path / "cache")).fit(data)
    n = model.n_items
    before = model.item_vectors().copy()
    new = pl.DataFrame(
        {"item_id": [100, 3], "title": ["purple unicorn documentary", "purple unicorn sequel"]}
    )
    model.add_items(new)
    assert model.n_items == n + 1 and model.item_vocab is not None and model.item_vocab.index(100) == n
    np.testing.assert_array_equal(model.item_vectors()[:3], before[:3])  # untouched items keep vectors
    assert not np.allclose(model.item_vectors()[3], before[3])  # new text for a known item: re-encoded
    top = model.recommend(Query(text="purple unicorn"), k=2)["item_id"].to_list()
    assert set(top) == {100, 3}
    # histories of known users still work (the history matrix follows the new catalogue size)
    assert model.recommend(0, k=3).height == 3
    assert model.score(0).shape == (1, n + 1)
    with pytest.raises(UnknownIdError):
        model.add_items(pl.DataFrame({"item_id": ["not-an-int"], "title": ["x"]}))
    with pytest.raises(LmrecError, match="item_id"):
        model.add_items(pl.DataFrame({"title": ["no id"]}))
    # saved and loaded with the new items
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert loaded.n_items == n + 1


def test_keywords_from_reviews_feed_the_profile(tmp_path: Path) -> None:
    from tests.text.conftest import tiny_catalogue

    data = tiny_catalogue()
    model = ContentRecommender(encoder="hashing", keywords_per_item=2).fit(data)
    assert 1 <= len(model.item_keywords(1)) <= 2 and model.item_keywords(2) == []
    texts = dict(zip(data.item_vocab.ids, model.item_texts(data), strict=True))
    assert "Keywords: " + ", ".join(model.item_keywords(1)) in texts[1]
    with pytest.raises(UnknownIdError):
        model.item_keywords(999)
    loaded = Recommender.load(model.save(tmp_path / "kw"))
    assert isinstance(loaded, ContentRecommender) and loaded.item_keywords(1) == model.item_keywords(1)


def test_centering_removes_the_shared_direction(
    movies: Dataset, minilm: SentenceTransformerEncoder, cache_dir: str
) -> None:
    raw = ContentRecommender(text_encoder=minilm, cache_dir=cache_dir, center=False).fit(movies)
    centred = ContentRecommender(text_encoder=minilm, cache_dir=cache_dir).fit(movies)
    R, C = raw.item_vectors(), centred.item_vectors()
    np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(raw.center_, np.zeros(384, np.float32))
    np.testing.assert_allclose(centred.center_, R.mean(axis=0), atol=1e-6)
    # raw sentence vectors of one catalogue are all alike (anisotropy); centred ones spread out
    off = ~np.eye(len(R), dtype=bool)
    assert (R @ R.T)[off].mean() > 0.2 > abs((C @ C.T)[off].mean())
    # a text query is moved into the same centred space
    q = centred.query_vectors(centred.encode_queries([Query(text="animated movie")]))[0]
    expected = minilm.encode(["animated movie"], kind="query")[0] - centred.center_
    np.testing.assert_allclose(q, expected / np.linalg.norm(expected), atol=1e-5)
