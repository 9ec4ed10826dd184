"""The HTTP API in process (httpx ASGITransport): endpoints, validation, auth, online updates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmrec.errors import LmrecError
from lmrec.rerank import intra_list_similarity
from lmrec.serving.app import create_app
from lmrec.serving.state import ServingConfig, ServingState
from tests.serving.conftest import AUTH, item_ids


# ---------------------------------------------------------------------- recommend
def test_recommend_known_user_excludes_history_and_explains(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    r = s.client.post("/recommend", json={"user_id": 1, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "ease" and body["policy"] == "model" and not body["explored"]
    items = body["items"]
    assert [it["rank"] for it in items] == list(range(1, 8))
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    seen = set(
        s.state.model.item_vocab.external(
            s.state.model.train_history[s.state.model.user_vocab.index(1)].indices
        )
    )
    assert not seen & set(item_ids(r))
    # identical to the model's own recommend (the serving path must not change the ranking)
    expected = s.state.model.recommend(1, k=7)["item_id"].to_list()
    assert item_ids(r) == expected
    assert all(it["propensity"] == 1.0 for it in items)
    assert all(it["title"] for it in items)
    because = items[0]["because"]
    assert because["items"] and all(b["item_id"] in seen for b in because["items"])
    assert because["keywords"], "shared genres with the driving history items"


def test_recommend_history_only_and_exclude(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    hist = [1, 260, 1196]  # Toy Story, Star Wars IV, V
    r = s.client.post("/recommend", json={"history": hist, "k": 10})
    assert r.status_code == 200, r.text
    first = item_ids(r)
    assert not set(hist) & set(first)
    r2 = s.client.post("/recommend", json={"history": hist, "k": 10, "exclude": first[:3]})
    assert r2.status_code == 200
    assert not set(first[:3]) & set(item_ids(r2))
    assert item_ids(r2)[:7] == first[3:10]


def test_text_queries_on_text_model(serve, text_artifact: Path) -> None:
    s = serve(text_artifact)
    r = s.client.post("/recommend", json={"text": "animation children fantasy", "k": 5})
    assert r.status_code == 200, r.text
    top = r.json()["items"][0]
    assert {"animation", "children"} & {kw.lower() for kw in top["because"]["keywords"]}
    # a mix of history and text
    r = s.client.post("/recommend", json={"history": [1], "text": "war drama", "k": 5})
    assert r.status_code == 200
    assert 1 not in item_ids(r)
    # blank text is the client's mistake: a 422 that says so, never a 500
    for body in ({"text": "   "}, {"text": "\t\n"}, {"history": [1], "text": "  "}):
        r = s.client.post("/recommend", json={**body, "k": 5})
        assert r.status_code == 422 and "text is blank" in r.text, (body, r.text)


def test_text_on_cf_model_is_a_clear_400(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    r = s.client.post("/recommend", json={"text": "space opera", "k": 5})
    assert r.status_code == 400
    assert "cannot serve text" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"user_id": 99999999, "strict": True}, 404, "unknown user_id: 99999999"),
        ({"history": [1, 424242424], "strict": True}, 404, "424242424"),
        ({"user_id": 1, "exclude": [77777777], "strict": True}, 404, "exclude: 77777777"),
        ({"user_id": 1, "filters": {"item_ids": [1, 6666666]}, "strict": True}, 404, "6666666"),
        ({"user_id": "abc", "strict": True}, 404, "unknown user_id: 'abc'"),
        ({"history": []}, 422, "history is empty"),
        ({"user_id": 1, "history": []}, 422, "history is empty"),
        ({"user_id": 1, "k": 0}, 422, "k"),
        ({"user_id": 1, "k": 101}, 422, "less than or equal to 100"),
        ({"user_id": 1.5}, 422, "user_id"),
        ({"user_id": True}, 422, "user_id"),
        ({"history": list(range(1001))}, 422, "at most 1000"),
        ({"user_id": 1, "hisotry": [1]}, 422, "hisotry"),
        ({}, 422, "give a user_id"),
        ({"user_id": 1, "diversity": 2}, 422, "diversity"),
    ],
)
def test_bad_requests_get_4xx_with_a_clear_message(serve, ease_artifact: Path, body, status, needle) -> None:
    s = serve(ease_artifact)
    r = s.client.post("/recommend", json=body)
    assert r.status_code == status, r.text
    payload = r.json()
    text = payload.get("message") or payload["detail"]
    assert needle in str(text), payload


def test_oversized_body_is_413(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    body = b'{"user_id": 1, "text": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    r = s.client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_malformed_json_is_422(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    r = s.client.post("/recommend", content=b'{"user_id": 1,', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "JSON" in r.json()["message"]
    r = s.client.post("/feedback", content=b"[1, 2", headers={"content-type": "application/json", **AUTH})
    assert r.status_code == 422


def test_filters(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    r = s.client.post("/recommend", json={"user_id": 1, "k": 10, "filters": {"tags_any": ["Animation"]}})
    assert r.status_code == 200
    cat = s.state.catalogue
    for iid in item_ids(r):
        assert "Animation" in cat.tags[s.state.item_index(iid)]
    r = s.client.post(
        "/recommend", json={"user_id": 1, "k": 10, "filters": {"tags_none": ["Drama", "Comedy"]}}
    )
    for iid in item_ids(r):
        assert not {"Drama", "Comedy"} & cat.tags[s.state.item_index(iid)]
    allow = [2, 3, 5, 7, 11, 1196]
    r = s.client.post("/recommend", json={"history": [1], "k": 10, "filters": {"item_ids": allow}})
    assert set(item_ids(r)) <= set(allow) and len(item_ids(r)) >= 1
    r = s.client.post("/recommend", json={"user_id": 1, "filters": {"where": {"title": "Heat (1995)"}}})
    assert item_ids(r) in ([6], [])
    r = s.client.post("/recommend", json={"user_id": 1, "filters": {"where": {"colour": "red"}}})
    assert r.status_code == 400 and "unknown filter field 'colour'" in r.json()["detail"]


# ---------------------------------------------------------------------- feedback
def test_feedback_requires_api_key(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    ev = {"user_id": 1, "item_id": 2}
    assert s.client.post("/feedback", json=ev).status_code == 401
    r = s.client.post("/feedback", json=ev, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    assert s.client.post("/items", json={"item_id": 5, "title": "x"}).status_code == 401
    assert s.client.post("/feedback", json=ev, headers=AUTH).status_code == 200
    # read endpoints stay open
    assert s.client.get("/health").status_code == 200


def test_server_refuses_to_start_without_a_key(tmp_path: Path, ease_artifact: Path) -> None:
    state = ServingState.from_artifact(ease_artifact, db=tmp_path / "e.db", config=ServingConfig())
    try:
        with pytest.raises(LmrecError, match="no API key"):
            create_app(state)
    finally:
        state.close()


def test_feedback_changes_the_next_list_at_once(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    first = s.client.post("/recommend", json={"user_id": 5, "k": 10}).json()["items"]
    before = [it["item_id"] for it in first]
    top = before[0]
    r = s.client.post("/feedback", json={"user_id": 5, "item_id": top, "event": "click"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["id"] >= 1 and r.json()["bandit_updated"]
    second = s.client.post("/recommend", json={"user_id": 5, "k": 10}).json()["items"]
    after = [it["item_id"] for it in second]
    assert top not in after  # now part of the history: excluded as seen
    old_scores = {it["item_id"]: it["score"] for it in first}
    changed = [
        it["item_id"]
        for it in second
        if it["item_id"] in old_scores and it["score"] != old_scores[it["item_id"]]
    ]
    assert changed, "the longer history must re-score the remaining items"
    # a dislike hides an item without adding it to the history
    r = s.client.post("/feedback", json={"user_id": 5, "item_id": after[0], "event": "dislike"}, headers=AUTH)
    assert r.status_code == 200
    again = item_ids(s.client.post("/recommend", json={"user_id": 5, "k": 10}))
    assert after[0] not in again


def test_feedback_scores_reflect_new_history(serve, ease_artifact: Path) -> None:
    """EASE scores are history @ B: after feedback the served scores equal the model's scores on the
    extended history."""
    s = serve(ease_artifact)
    s.client.post("/feedback", json={"user_id": 7, "item_id": 1196, "event": "like"}, headers=AUTH)
    got = s.client.post("/recommend", json={"user_id": 7, "k": 5}).json()["items"]
    model = s.state.model
    assert 1196 in model.item_vocab.external(model.train_history[model.user_vocab.index(7)].indices)
    expected = model.recommend(7, k=5)
    assert [g["item_id"] for g in got] == expected["item_id"].to_list()
    assert np.allclose([g["score"] for g in got], expected["score"].to_numpy(), rtol=1e-5)


def test_new_user_through_feedback(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    assert s.client.post("/recommend", json={"user_id": 777777}).json()["fallback"] == "popularity"
    assert s.client.post("/recommend", json={"user_id": 777777, "strict": True}).status_code == 404
    for item in (1, 2, 3):
        assert (
            s.client.post("/feedback", json={"user_id": 777777, "item_id": item}, headers=AUTH).status_code
            == 200
        )
    r = s.client.post("/recommend", json={"user_id": 777777, "k": 5})
    assert r.status_code == 200 and not {1, 2, 3} & set(item_ids(r))
    assert r.json()["fallback"] is None and r.json()["warnings"] == []
    as_text = s.client.post(
        "/recommend", json={"user_id": "777777", "k": 5}
    )  # digit strings name the same user
    assert item_ids(as_text) == item_ids(r)


def test_feedback_validation(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    bad = [
        ({"user_id": 1, "item_id": 99999999}, 404),
        ({"user_id": 1, "item_id": 1, "event": "teleport"}, 422),
        ({"user_id": 1, "item_id": 1, "timestamp": -5}, 422),
        ({"user_id": 1}, 422),
        ({"user_id": "x", "item_id": 1}, 400),
    ]
    for body, status in bad:
        r = s.client.post("/feedback", json=body, headers=AUTH)
        assert r.status_code == status, (body, r.text)
    assert s.state.store.count_events() == 0  # nothing invalid reached the log


# ---------------------------------------------------------------------- similar, items
def test_similar_items(serve, ease_artifact: Path, text_artifact: Path) -> None:
    s = serve(ease_artifact)
    r = s.client.get("/items/1/similar", params={"k": 5})
    assert r.status_code == 200 and r.json()["method"] == "model"
    assert 1 not in item_ids(r) and len(item_ids(r)) == 5
    assert s.client.get("/items/424242/similar").status_code == 404
    assert s.client.get("/items/1/similar", params={"k": 0}).status_code == 422
    t = serve(text_artifact)
    r = t.client.get("/items/1/similar", params={"k": 5})
    assert r.json()["method"] == "item-vectors"
    scores = [it["score"] for it in r.json()["items"]]
    assert scores == sorted(scores, reverse=True) and 1 not in item_ids(r)


def test_add_item_is_recommendable_at_once(
    serve, text_artifact: Path, ease_artifact: Path, tmp_path: Path
) -> None:
    s = serve(text_artifact, db=tmp_path / "items.db")
    new = {
        "item_id": 990001,
        "title": "Quokka Odyssey",
        "text": "marsupial odyssey quokka island",
        "tags": ["Nature"],
    }
    r = s.client.post("/items", json=new, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["recommendable"]
    r = s.client.post("/recommend", json={"text": "quokka island odyssey", "k": 3})
    assert item_ids(r)[0] == 990001
    assert r.json()["items"][0]["title"] == "Quokka Odyssey"
    assert s.client.get("/items/990001/similar").status_code == 200
    assert s.client.post("/items", json=new, headers=AUTH).status_code == 409
    assert s.client.post("/items", json={"item_id": 990002}, headers=AUTH).status_code == 422
    # feedback on the new item works, and a restart re-adds it from the log
    assert s.client.post("/feedback", json={"user_id": 3, "item_id": 990001}, headers=AUTH).status_code == 200
    s.close()
    s2 = serve(text_artifact, db=tmp_path / "items.db")
    assert s2.state.item_index(990001) >= 0
    r = s2.client.post("/recommend", json={"text": "quokka island odyssey", "k": 3})
    assert item_ids(r)[0] == 990001
    # a CF model cannot take new items
    e = serve(ease_artifact)
    r = e.client.post("/items", json=new, headers=AUTH)
    assert r.status_code == 409 and "cannot add items" in r.json()["detail"]


# ---------------------------------------------------------------------- exploration, diversity
def test_exploration_logs_propensities(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact, epsilon=0.2, explore=1.0)
    r = s.client.post("/recommend", json={"user_id": 3, "k": 10, "explore": True})
    body = r.json()
    assert body["policy"] == "linucb" and body["explored"]
    props = [it["propensity"] for it in body["items"]]
    assert all(0 < p <= 1 for p in props)
    assert min(props) < 1  # epsilon mixing: nothing is certain
    r = s.client.post("/recommend", json={"user_id": 3, "k": 10, "explore": True, "policy": "thompson"})
    assert r.json()["policy"] == "thompson"
    off = s.client.post("/recommend", json={"user_id": 3, "k": 10, "explore": False}).json()
    assert off["policy"] == "model" and all(it["propensity"] == 1.0 for it in off["items"])
    s.state.store.flush()
    imps = list(s.state.store.impressions())
    assert len(imps) == 3
    assert imps[0].propensities == pytest.approx(props, abs=1e-6)
    assert len(imps[0].candidates) == s.state.config.candidates
    assert imps[2].policy == "model"
    # feedback on an explored list updates that bandit
    before = s.state.bandits["linucb"].n_updates
    fb = s.client.post(
        "/feedback",
        json={"user_id": 3, "item_id": body["items"][0]["item_id"], "request_id": body["request_id"]},
        headers=AUTH,
    )
    assert fb.json()["bandit_updated"] and fb.json()["request_id"] == body["request_id"]
    assert s.state.bandits["linucb"].n_updates == before + 1


def test_mmr_diversifies(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    plain = s.client.post("/recommend", json={"user_id": 1, "k": 10}).json()
    div = s.client.post("/recommend", json={"user_id": 1, "k": 10, "diversity": 0.7}).json()
    assert div["policy"] == "mmr"
    feats = s.state.features

    def ils(body):
        return intra_list_similarity(feats[[s.state.item_index(it["item_id"]) for it in body["items"]]])

    assert ils(div) < ils(plain) - 0.05
    assert div["items"][0]["item_id"] == plain["items"][0]["item_id"]  # MMR keeps the best item first


# ---------------------------------------------------------------------- health, metrics, openapi
def test_health_and_metrics(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    s.client.post("/recommend", json={"user_id": 1})
    s.client.post("/recommend", json={"user_id": 99999999, "strict": True})
    h = s.client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "ease" and h["n_items"] == s.state.n_items
    assert h["ready"] is True and h["warm_s"] is not None
    r = s.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("lmrec_http_requests_total", route="/recommend", method="POST", status="200") == 1
    assert value("lmrec_http_requests_total", route="/recommend", method="POST", status="404") == 1
    assert value("lmrec_http_request_duration_seconds_count", route="/recommend", method="POST") == 2
    assert value("lmrec_recommendations_total", policy="model") == 1
    assert value("lmrec_items") == s.state.n_items
    assert value("lmrec_bandit_linucb_observations") == 0
    assert "# TYPE lmrec_http_request_duration_seconds histogram" in text
    for line in text.strip().splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def test_each_app_has_its_own_metrics(serve, ease_artifact: Path) -> None:
    """Two servers in one process: separate registries, no duplicate-metric errors, no shared counts."""
    a, b = serve(ease_artifact), serve(ease_artifact)
    a.client.post("/recommend", json={"user_id": 1})
    assert a.state.metrics.registry is not b.state.metrics.registry
    assert 'lmrec_recommendations_total{policy="model"} 1.0' in a.client.get("/metrics").text
    assert "lmrec_recommendations_total{" not in b.client.get("/metrics").text


def test_openapi_documents_limits_and_security(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    spec = s.client.get("/openapi.json").json()
    assert {"/recommend", "/feedback", "/items", "/items/{item_id}/similar", "/health", "/metrics"} <= set(
        spec["paths"]
    )
    req = spec["components"]["schemas"]["RecommendRequest"]["properties"]
    assert req["k"]["maximum"] == 100 and req["history"]["anyOf"][0]["maxItems"] == 1000
    assert spec["paths"]["/feedback"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in spec["paths"]["/recommend"]["post"]


def test_a_real_embedding_model_goes_through_faiss_with_the_same_ranking(
    serve, mls_small, tmp_path: Path
) -> None:
    mf = pytest.importorskip("lmrec.models.mf")
    data, _ = mls_small
    model = mf.ALS(factors=16, iterations=3, num_threads=1).fit(data)
    model.save(tmp_path / "als")
    s = serve(tmp_path / "als")
    assert s.state.index is not None and s.state.index.kind == "exact"
    for user in (1, 50, 414):
        got = s.client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
        want = model.recommend(user, k=10)
        assert [g["item_id"] for g in got] == want["item_id"].to_list()
        assert np.allclose([g["score"] for g in got], want["score"].to_numpy(), rtol=1e-4, atol=1e-5)
    sim = s.client.get("/items/260/similar", params={"k": 3}).json()
    assert sim["method"] == "item-vectors" and 260 not in [i["item_id"] for i in sim["items"]]
    # an ANN index above the threshold, tuned at start-up, still gives the exact top-3 here
    a = serve(tmp_path / "als", ann_threshold=10, index="auto")
    assert a.state.index.kind == "hnsw" and a.state.index.last_recall.recall >= 0.95
    r = a.client.post("/recommend", json={"user_id": 1, "k": 3}).json()["items"]
    assert [g["item_id"] for g in r] == model.recommend(1, k=3)["item_id"].to_list()
    assert a.client.get("/health").json()["index"]["kind"] == "hnsw"
    # past ivfpq_threshold: compressed IVF-PQ, tuned to the recall target; seen items stay out
    b = serve(tmp_path / "als", ann_threshold=10, ivfpq_threshold=300, index="auto")
    assert b.state.index.kind == "ivfpq" and b.state.index.last_recall.recall >= 0.95
    assert b.client.get("/health").json()["index"]["kind"] == "ivfpq"
    seen = set(data.interactions.filter(data.interactions["user_id"] == 414)["item_id"].to_list())
    got = b.client.post("/recommend", json={"user_id": 414, "k": 20}).json()["items"]
    assert len(got) == 20 and not seen & {g["item_id"] for g in got}


def test_post_items_with_the_real_content_model(serve, mls_small, tmp_path: Path) -> None:
    content = pytest.importorskip("lmrec.models.content")
    data, _ = mls_small
    model = content.ContentRecommender(encoder="hashing", show_progress=False).fit(data)
    model.save(tmp_path / "content")
    s = serve(tmp_path / "content")
    new = {
        "item_id": 990003,
        "title": "Zyxquor the Wombat",
        "text": "zyxquor wombat burrow saga",
        "tags": ["Nature"],
    }
    r = s.client.post("/items", json=new, headers=AUTH)
    assert r.status_code == 201, r.text
    r = s.client.post("/recommend", json={"text": "Zyxquor the Wombat zyxquor wombat burrow saga", "k": 5})
    assert r.status_code == 200 and r.json()["items"][0]["item_id"] == 990003
    bad = s.client.post("/items", json={"item_id": "not-an-int", "title": "x"}, headers=AUTH)
    assert bad.status_code == 400 and "integer" in bad.json()["detail"]


def test_bandit_state_is_rebuilt_from_the_log(serve, ease_artifact: Path, tmp_path: Path) -> None:
    db = tmp_path / "bandit.db"
    s = serve(ease_artifact, db=db, epsilon=0.1)
    lists = [
        s.client.post("/recommend", json={"user_id": u, "k": 5, "explore": True}).json() for u in (2, 3, 4)
    ]
    for u, body in zip((2, 3, 4), lists, strict=True):
        fb = {"user_id": u, "item_id": body["items"][1]["item_id"], "request_id": body["request_id"]}
        assert s.client.post("/feedback", json=fb, headers=AUTH).json()["bandit_updated"]
    # someone else's request id credits nothing
    foreign = {"user_id": 9, "item_id": lists[0]["items"][0]["item_id"], "request_id": lists[0]["request_id"]}
    assert not s.client.post("/feedback", json=foreign, headers=AUTH).json()["bandit_updated"]
    theta = s.state.bandits["linucb"].theta.copy()
    assert s.state.bandits["linucb"].n_updates == 3
    s.close()
    s2 = serve(ease_artifact, db=db)
    assert s2.state.bandits["linucb"].n_updates == 3
    assert np.allclose(s2.state.bandits["linucb"].theta, theta)
