"""The shared Recommender machinery: query kinds, ids, k, exclusions, top-k and persistence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.errors import (
    LmrecError,
    NotFittedError,
    UnknownIdError,
    UnknownIdWarning,
    UnsupportedQueryError,
)
from lmrec.models import base as base_module
from lmrec.models import registry
from lmrec.models.base import Query, QueryBatch, Recommender, as_queries
from lmrec.models.ease import EASE
from lmrec.models.popularity import Popularity


class FixedScores(Recommender):
    """Scores every query with one fixed vector (item index i scores ``scores_[i]``): a test double."""

    name = "fixed_scores_test"
    supports = frozenset({"user", "history"})

    def _fit(self, data: Dataset) -> None:
        self.scores_ = np.zeros(data.n_items, np.float32)

    def _score(self, batch: QueryBatch) -> np.ndarray:
        self.last_batch = batch
        return np.broadcast_to(self.scores_, (len(batch), batch.n_items))

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.scores_ = tensors["scores"]


class UserOnly(FixedScores):
    name = "user_only_test"
    supports = frozenset({"user"})


@pytest.fixture()
def data() -> Dataset:
    # users 1, 2, 3 (3 has a single event); items 10..15; 16 is catalogue-only (cold)
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "item_id": [12, 10, 11, 13, 10, 14],
            "timestamp": [3, 1, 2, 1, 2, 1],
            "weight": [1.0, 2.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    items = pl.DataFrame({"item_id": [10, 11, 12, 13, 14, 15, 16]})
    return Dataset.from_frames(df, items=items)


@pytest.fixture()
def model(data: Dataset) -> FixedScores:
    m = FixedScores().fit(data)
    m.scores_ = np.array([7, 6, 5, 4, 3, 2, 1], np.float32)  # item 10 best ... 16 worst
    return m


# ---------------------------------------------------------------------------- query kinds
def test_as_queries_accepts_every_form() -> None:
    qs = as_queries([5, "u7", np.int64(9), {"history": [1, 2]}, Query(user_id=3, text="x")])
    assert [q.user_id for q in qs] == [5, "u7", 9, None, 3]
    assert isinstance(qs[2].user_id, int)
    assert qs[3].kinds() == {"history"} and qs[4].kinds() == {"user", "text"}
    assert as_queries(4) == [Query(user_id=4)]
    assert as_queries({"user_id": 1, "history": []})[0].kinds() == {"user", "history"}


def test_as_queries_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['item'\]"):
        as_queries({"item": 3})
    with pytest.raises(ValueError, match="query 1 is empty"):
        as_queries([1, Query()])
    with pytest.raises(TypeError, match=r"cannot interpret 1\.5"):
        as_queries([1.5])  # type: ignore[list-item]


def test_known_user_history_is_merged_in_time_order(model: FixedScores) -> None:
    batch = model.encode_queries([Query(user_id=1, history=[15, 13]), Query(history=[14])])
    # user 1's training events sorted by timestamp: 10 (t1), 11 (t2), 12 (t3); then the extra history
    assert model.item_vocab is not None
    assert model.item_vocab.external(batch.sequences[0]) == [10, 11, 12, 15, 13]
    assert batch.user_idx.tolist() == [0, -1]
    # weights: training weight 2.0 for item 10, 1.0 for query items
    assert batch.history[0, 0] == 2.0 and batch.history[0, 5] == 1.0 and batch.history[1, 4] == 1.0


def test_history_weights_are_checked(model: FixedScores) -> None:
    batch = model.encode_queries([Query(history=[10, 11], weights=[3.0, 0.5])])
    assert batch.history.toarray()[0, :2].tolist() == [3.0, 0.5]
    with pytest.raises(ValueError, match="query 0: 1 weights for 2 history items"):
        model.encode_queries([Query(history=[10, 11], weights=[1.0])])


def test_unsupported_query_kinds(data: Dataset, model: FixedScores) -> None:
    with pytest.raises(UnsupportedQueryError, match="cannot serve text queries"):
        model.recommend(Query(text="space opera"))
    user_only = UserOnly().fit(data)
    with pytest.raises(UnsupportedQueryError, match="cannot serve history queries"):
        user_only.recommend(Query(history=[10]))
    user_only.recommend(Query(user_id=1))  # fine


def test_user_in_vocabulary_without_training_events(model: FixedScores) -> None:
    # a user known to the vocabulary but with no training history is served from the query history,
    # and gets the popularity fallback without one (an error in strict mode)
    assert model.user_vocab is not None
    model.user_vocab = model.user_vocab.extend([99])
    model._hist_offsets = np.append(model._hist_offsets, model._hist_offsets[-1])
    recs = model.recommend(Query(user_id=99, history=[10]), k=2)
    assert recs["item_id"].to_list() == [11, 12] and recs["user_id"].to_list() == [99, 99]
    with pytest.warns(UnknownIdWarning, match="99"):
        fell = model.recommend(99, k=2)
    assert fell["fallback"].to_list() == ["popularity"] * 2
    with pytest.raises(UnknownIdError, match="99"):
        model.recommend(99, strict=True)


# ---------------------------------------------------------------------------- unknown ids
#: popularity of the fixture's items 10..16 (training events per item): 10 twice, 11..14 once
POPULAR = [10, 11, 12, 13, 14]


def test_unknown_users_fall_back_to_popularity_flagged(model: FixedScores) -> None:
    with pytest.warns(UnknownIdWarning, match=r"user_id of query 1: 404.*user_id of query 3: 405") as w:
        recs = model.recommend([1, 404, 2, 405], k=3)
    assert len(w) == 1, "one warning per call, naming every unknown id"
    by_query = recs.partition_by("query", as_dict=True)
    # known users: the model's scores, no fallback; unknown ones: the most popular items, flagged
    assert by_query[(0,)]["item_id"].to_list() == [13, 14, 15]
    assert by_query[(0,)]["fallback"].to_list() == [None] * 3
    for q, user in ((1, 404), (3, 405)):
        part = by_query[(q,)]
        assert part["item_id"].to_list() == POPULAR[:3], "popularity, not the model's scores"
        assert part["fallback"].to_list() == ["popularity"] * 3
        assert part["user_id"].to_list() == [user] * 3
        assert part["score"].to_list() == [2.0, 1.0, 1.0]
    assert recs.schema["fallback"] == pl.Utf8
    with pytest.warns(UnknownIdWarning, match="'nobody'"):
        assert model.recommend("nobody", k=2)["item_id"].to_list() == [10, 11]


def test_popularity_fallback_honours_exclusions_and_online_events(model: FixedScores) -> None:
    with pytest.warns(UnknownIdWarning):
        recs = model.recommend(404, k=3, exclude=[10], items=[10, 11, 14, 15])
    assert recs["item_id"].to_list() == [11, 14, 15]
    model.add_interactions(2, [15, 15, 15])  # online events change what is popular
    with pytest.warns(UnknownIdWarning):
        assert model.recommend(404, k=1)["item_id"].to_list() == [15]


def test_strict_mode_names_every_unknown_user(model: FixedScores) -> None:
    with pytest.raises(UnknownIdError) as info:
        model.recommend([1, 404, 2, 405], strict=True)
    assert info.value.ids == [404, 405]
    assert "unknown user_id: 404, 405" in str(info.value)
    with pytest.raises(UnknownIdError, match="'nobody'"):
        model.recommend("nobody", strict=True)


def test_strict_mode_names_unknown_items(model: FixedScores) -> None:
    with pytest.raises(UnknownIdError, match=r"history of query 1: 77"):
        model.recommend([Query(history=[10]), Query(history=[77, 10])], strict=True)
    with pytest.raises(UnknownIdError, match="items: 88"):
        model.recommend(1, items=[10, 88], strict=True)
    with pytest.raises(UnknownIdError, match="exclude: 99"):
        model.recommend(1, exclude=[99], strict=True)


def test_unknown_items_are_dropped_with_a_warning(model: FixedScores) -> None:
    with pytest.warns(UnknownIdWarning, match=r"history of query 1 left out: 77") as w:
        recs = model.recommend([Query(history=[10]), Query(history=[77, 10])], k=2)
    assert len(w) == 1
    # query 1 is served from what is left of its history (10): the same list as query 0
    assert recs["item_id"].to_list() == [11, 12, 11, 12]
    assert recs["fallback"].to_list() == [None] * 4
    with pytest.warns(UnknownIdWarning, match=r"items left out: 88"):
        assert model.recommend(1, k=3, items=[15, 88])["item_id"].to_list() == [15]
    with pytest.warns(UnknownIdWarning, match=r"exclude left out: 99"):
        assert model.recommend(1, k=2, exclude=[99, 13])["item_id"].to_list() == [14, 15]


def test_a_history_of_unknown_items_falls_back_to_popularity(model: FixedScores) -> None:
    with pytest.warns(UnknownIdWarning, match="77, 78"):
        recs = model.recommend(Query(history=[77, 78]), k=2)
    assert recs["item_id"].to_list() == [10, 11] and recs["fallback"].to_list() == ["popularity"] * 2
    # an explicitly empty history is not an unknown id: the model scores it, no fallback, no warning
    empty = model.recommend(Query(history=[]), k=2)
    assert empty["item_id"].to_list() == [10, 11] and empty["fallback"].to_list() == [None, None]
    assert model.last_batch.fallback == [None]
    # known user plus unknown history items: the user's history serves, the items are reported
    with pytest.warns(UnknownIdWarning, match="77"):
        mixed = model.recommend(Query(user_id=1, history=[77]), k=2)
    assert mixed["item_id"].to_list() == [13, 14] and mixed["fallback"].to_list() == [None, None]


def test_lenient_encoding_drops_unknown_items_with_their_weights(model: FixedScores) -> None:
    batch = model.encode_queries([Query(history=[77, 10, 11], weights=[9.0, 2.0, 3.0])], strict=False)
    assert batch.history.nnz == 2 and batch.history.toarray()[0, :2].tolist() == [2.0, 3.0]
    assert [(u.query, u.field, u.ids) for u in batch.unknown] == [(0, "history", [77])]
    with pytest.raises(UnknownIdError, match="77"):
        model.encode_queries([Query(history=[77, 10])])  # strict by default at this level


def test_fallback_rows_never_reach_the_model(model: FixedScores) -> None:
    batch = model.encode_queries([Query(user_id=404), Query(user_id=1)], strict=False)
    assert batch.fallback == ["popularity", None] and batch.fallback_mask.tolist() == [True, False]
    scores = model.score_batch(batch)
    assert len(model.last_batch) == 1 and model.last_batch.user_idx.tolist() == [0]
    np.testing.assert_array_equal(scores[0], model.popularity())
    np.testing.assert_array_equal(scores[1], model.scores_)
    idx, _ = model.rank(batch, 2)
    assert idx.tolist() == [[0, 1], [3, 4]]
    # the score API has no answer to flag a fallback in: unknown users are an error there
    with pytest.raises(UnknownIdError, match="404"):
        model.score([404])


def test_string_user_ids_from_a_cli_are_coerced(model: FixedScores) -> None:
    recs = model.recommend("2", k=1)
    assert recs["user_id"].to_list() == [2]


# ---------------------------------------------------------------------------- k
@pytest.mark.parametrize("k", [0, -3, True, 2.5, "3"])
def test_bad_k(model: FixedScores, k: Any) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.recommend(1, k=k)


def test_k_larger_than_the_candidates(model: FixedScores) -> None:
    recs = model.recommend(1, k=100)
    assert recs["item_id"].to_list() == [13, 14, 15, 16]
    assert recs["rank"].to_list() == [1, 2, 3, 4]
    assert model.recommend(1, k=np.int64(2)).height == 2


# ---------------------------------------------------------------------------- exclusions
def test_exclusions_and_restrictions(model: FixedScores) -> None:
    assert model.recommend(1, k=3)["item_id"].to_list() == [13, 14, 15]
    assert model.recommend(1, k=3, exclude_seen=False)["item_id"].to_list() == [10, 11, 12]
    assert model.recommend(1, k=3, exclude=[13])["item_id"].to_list() == [14, 15, 16]
    assert model.recommend(1, k=3, items=[16, 10, 15])["item_id"].to_list() == [15, 16]
    unmasked = model.recommend(1, k=3, items=[16, 10, 15], exclude_seen=False)
    assert unmasked["item_id"].to_list() == [10, 15, 16]
    # everything excluded: no rows, schema intact
    empty = model.recommend(1, k=3, items=[10, 11])
    assert empty.height == 0
    assert empty.columns == ["query", "user_id", "item_id", "score", "rank", "fallback"]


def test_output_frame(data: Dataset, model: FixedScores) -> None:
    recs = model.recommend([2, Query(history=[10])], k=2)
    assert recs.to_dicts() == [
        {"query": 0, "user_id": 2, "item_id": 11, "score": 6.0, "rank": 1, "fallback": None},
        {"query": 0, "user_id": 2, "item_id": 12, "score": 5.0, "rank": 2, "fallback": None},
        {"query": 1, "user_id": None, "item_id": 11, "score": 6.0, "rank": 1, "fallback": None},
        {"query": 1, "user_id": None, "item_id": 12, "score": 5.0, "rank": 2, "fallback": None},
    ]
    assert recs.schema["score"] == pl.Float32
    # batching does not change anything but is transparent in the query numbers
    batched = model.recommend([2, Query(history=[10])], k=2, batch_size=1)
    assert batched.equals(recs)


def test_string_ids_round_trip() -> None:
    df = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    m = Popularity().fit(Dataset.from_frames(df))
    recs = m.recommend(["b"], k=2)
    assert recs.schema["user_id"] == pl.Utf8 and recs.schema["item_id"] == pl.Utf8
    assert recs["item_id"].to_list() == ["y"]


def test_score_api(model: FixedScores) -> None:
    s = model.score([1, Query(history=[11])])
    assert s.shape == (2, 7) and s[0, 0] == 7.0  # nothing masked
    assert model.score(1, items=[16, 10]).tolist() == [[1.0, 7.0]]


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError, match="FixedScores is not fitted"):
        FixedScores().recommend(1)
    with pytest.raises(NotFittedError):
        _ = FixedScores().n_items


def test_add_interactions(model: FixedScores) -> None:
    model.add_interactions(2, [14])
    assert 14 not in model.recommend(2, k=5)["item_id"].to_list()
    model.add_interactions(50, [15, 16], weights=[2.0, 0.5])  # a new user joins the vocabulary
    assert model.recommend(50, k=10)["item_id"].to_list() == [10, 11, 12, 13, 14]
    hist = model.train_history
    assert hist.shape == (4, 7)
    assert hist[3, 5] == 2.0 and hist[3, 6] == 0.5 and hist[1, 4] == 1.0


def test_public_history_accessors(model: FixedScores) -> None:
    # what serving reads instead of the private history arrays
    assert model.n_history_users == 3
    assert [model.history_length(u) for u in (-1, 0, 1, 2, 3)] == [0, 3, 2, 1, 0]
    assert model.has_history(1) and model.has_history("3") and not model.has_history(404)
    frame = model.history_frame()
    assert frame.columns == ["user_id", "item_id", "weight", "position"]
    assert frame.schema["user_id"] == pl.Int64 and frame.schema["item_id"] == pl.Int64
    # external ids, each user's events oldest first
    assert frame.rows() == [
        (1, 10, 2.0, 0),
        (1, 11, 1.0, 1),
        (1, 12, 1.0, 2),
        (2, 13, 1.0, 0),
        (2, 10, 1.0, 1),
        (3, 14, 1.0, 0),
    ]
    model.add_interactions(50, [15])
    assert model.n_history_users == 4 and model.has_history(50)
    assert model.history_frame().filter(pl.col("user_id") == 50).rows() == [(50, 15, 1.0, 0)]


def test_query_types_live_in_their_own_module() -> None:
    from lmrec.models import query

    assert query.Query is Query and query.QueryBatch is QueryBatch and query.as_queries is as_queries


# ---------------------------------------------------------------------------- persistence
@pytest.fixture()
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._MODELS, FixedScores.name, f"{__name__}:FixedScores")
    monkeypatch.setitem(registry._MODELS, WithFiles.name, f"{__name__}:WithFiles")


class WithFiles(FixedScores):
    """Keeps a note in a file of its own: the ``_save_files``/``_load_files`` hook."""

    name = "with_files_test"

    def _save_files(self, folder: Path) -> None:
        (folder / "notes").mkdir()
        (folder / "notes" / "note.txt").write_text(f"best item index {int(np.argmax(self.scores_))}")

    def _load_files(self, folder: Path) -> None:
        assert self.scores_ is not None  # called after _set_state
        self.note = (folder / "notes" / "note.txt").read_text()


def test_models_can_save_files_of_their_own(
    data: Dataset, registered: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = WithFiles().fit(data)
    model.scores_ = np.arange(7, dtype=np.float32)
    path = model.save(tmp_path / "m")
    assert (path / "notes" / "note.txt").is_file()
    loaded = Recommender.load(path)
    assert isinstance(loaded, WithFiles) and loaded.note == "best item index 6"
    # the files are written inside the atomic save: a failing hook leaves the old artifact alone
    before = sorted(p.relative_to(path) for p in path.rglob("*"))

    def boom(self: WithFiles, folder: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(WithFiles, "_save_files", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"], "temporary directories left behind"


def test_save_layout_has_no_pickle(model: FixedScores, registered: None, tmp_path: Path) -> None:
    path = model.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "state.safetensors", "vocab.json"]
    meta = json.loads((path / "model.json").read_text())
    assert meta["model"] == "fixed_scores_test" and meta["format_version"] == base_module.FORMAT_VERSION
    loaded = Recommender.load(path)
    assert isinstance(loaded, FixedScores)
    assert loaded.recommend([1, 2, 3], k=3).equals(model.recommend([1, 2, 3], k=3))


def test_save_replaces_instead_of_merging(model: FixedScores, registered: None, tmp_path: Path) -> None:
    target = model.save(tmp_path / "m")  # a real artifact first: only those may be replaced
    (target / "stale.bin").write_text("old")
    model.save(target)
    assert not (target / "stale.bin").exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "m"], "temporary directories left behind"


def test_failed_save_leaves_the_old_model(
    model: FixedScores, registered: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = model.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    model.scores_ = model.scores_ * 2
    monkeypatch.setattr(base_module, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"], "temporary directories left behind"


def test_load_errors(model: FixedScores, registered: None, tmp_path: Path, data: Dataset) -> None:
    with pytest.raises(LmrecError, match=r"missing model\.json"):
        Recommender.load(tmp_path / "nothing")
    path = model.save(tmp_path / "m")
    (path / "state.safetensors").unlink()
    with pytest.raises(LmrecError, match=r"missing state\.safetensors"):
        Recommender.load(path)
    model.save(path)
    (path / "vocab.json").write_text("{not json")
    with pytest.raises(LmrecError, match="cannot read saved model"):
        Recommender.load(path)
    ease = EASE(l2=1.0).fit(data).save(tmp_path / "ease")
    with pytest.raises(LmrecError, match="holds a ease model, not Popularity"):
        Popularity.load(ease)
    assert isinstance(EASE.load(ease), EASE)


def test_history_survives_save_load(model: FixedScores, registered: None, tmp_path: Path) -> None:
    model.add_interactions(1, [13])
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert loaded.recommend(1, k=5)["item_id"].to_list() == [14, 15, 16]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="l3"):
        EASE(l3=2.0)
    with pytest.raises(TypeError, match="needs a EASEConfig"):
        EASE(Popularity.Config())
    assert EASE({"l2": 3.0}, binary=False).config.l2 == 3.0
    assert repr(EASE(l2=3.0)).startswith("EASE(l2=3.0")
