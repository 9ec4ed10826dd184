"""The on-disk embedding cache: hits, misses, model isolation, atomic files, concurrent readers."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from lmrec.errors import LmrecError
from lmrec.text.cache import EmbeddingCache, cached_encode, model_slug, text_key
from lmrec.text.encoder import HashingEncoder, SentenceTransformerEncoder


def test_second_encode_is_served_from_disk_and_only_changes_are_encoded(tmp_path: Path) -> None:
    enc = HashingEncoder(dim=64)
    texts = [f"item number {i}" for i in range(50)] + ["item number 3"]  # one duplicate
    first = EmbeddingCache(tmp_path).encode(texts, enc)
    assert enc.calls == 50  # the duplicate is encoded once
    np.testing.assert_array_equal(first, HashingEncoder(dim=64).encode(texts))

    fresh = HashingEncoder(dim=64)
    cache = EmbeddingCache(tmp_path)  # a new object reads what the first one wrote
    again = cache.encode(texts, fresh)
    assert fresh.calls == 0 and cache.last_stats.hits == 50 and cache.last_stats.encoded == 0
    np.testing.assert_array_equal(first, again)

    changed = [*texts[:10], "item number 10 (director's cut)", *texts[11:]]
    out = cache.encode(changed, fresh)
    assert fresh.calls == 1 and cache.last_stats.encoded == 1  # only the changed text
    np.testing.assert_array_equal(
        out[10], HashingEncoder(dim=64).encode(["item number 10 (director's cut)"])[0]
    )
    assert cache.size(enc.model_id) == 51


def test_models_never_share_vectors(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    a, b = HashingEncoder(dim=32), HashingEncoder(dim=48)
    va = cache.encode(["same text"], a)
    vb = cache.encode(["same text"], b)
    assert va.shape == (1, 32) and vb.shape == (1, 48) and b.calls == 1
    dirs = sorted(p.name for p in tmp_path.iterdir())
    assert dirs == sorted([model_slug(a.model_id), model_slug(b.model_id)])
    # query-kind texts are keyed apart from documents (prefix models encode them differently)
    cache.encode(["same text"], a, kind="query")
    assert a.calls == 2


def test_files_are_written_atomically_and_index_is_valid(tmp_path: Path) -> None:
    enc = HashingEncoder(dim=16)
    cache = EmbeddingCache(tmp_path)
    for i in range(3):
        cache.encode([f"batch {i} text {j}" for j in range(5)], enc)
    d = tmp_path / model_slug(enc.model_id)
    index = json.loads((d / "index.json").read_text())
    assert index["model_id"] == enc.model_id and index["dim"] == 16
    assert [s["n"] for s in index["shards"]] == [5, 5, 5]
    assert not list(d.glob("*.tmp")) and not list(d.glob(".*.tmp"))  # no temporary files left behind
    assert {p.name for p in d.glob("shard-*.safetensors")} == {s["file"] for s in index["shards"]}


def test_compaction_merges_shards_without_changing_vectors(tmp_path: Path) -> None:
    enc = HashingEncoder(dim=16)
    cache = EmbeddingCache(tmp_path, max_shards=2)
    expected = {}
    for i in range(5):
        texts = [f"text {i}-{j}" for j in range(4)]
        for t, v in zip(texts, cache.encode(texts, enc), strict=True):
            expected[t] = v
    d = tmp_path / model_slug(enc.model_id)
    assert len(list(d.glob("shard-*.safetensors"))) <= 2
    reader = EmbeddingCache(tmp_path)
    found, vecs = reader.get(enc.model_id, list(expected))
    assert found.all()
    np.testing.assert_array_equal(vecs, np.stack(list(expected.values())))


def test_cache_refuses_a_foreign_or_corrupt_index(tmp_path: Path) -> None:
    enc = HashingEncoder(dim=16)
    EmbeddingCache(tmp_path).encode(["a"], enc)
    index = tmp_path / model_slug(enc.model_id) / "index.json"
    index.write_text(json.dumps({"model_id": "someone-else", "dim": 16, "shards": []}))
    with pytest.raises(LmrecError, match="belongs to model 'someone-else'"):
        EmbeddingCache(tmp_path).encode(["a"], enc)
    index.write_text("{not json")
    with pytest.raises(LmrecError, match="corrupt"):
        EmbeddingCache(tmp_path).encode(["a"], enc)


def test_put_checks_shapes_and_cached_encode_without_cache(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(ValueError, match="one vector per text"):
        cache.put("m", ["a", "b"], np.zeros((1, 4)))
    enc = HashingEncoder(dim=16)
    np.testing.assert_array_equal(cached_encode(["x"], enc, None), enc.encode(["x"]))
    np.testing.assert_array_equal(cached_encode(["x"], enc, tmp_path), enc.encode(["x"]))
    assert text_key("x") != text_key("x ")


def _reader(root: str, model_id: str, texts: list[str], ready, done, queue: mp.Queue) -> None:  # type: ignore[no-untyped-def]
    """Read in a loop while another process writes and compacts; report inconsistent reads."""
    bad = rounds = 0
    expected = HashingEncoder(dim=32).encode(texts)
    ready.set()
    while not done.is_set() or rounds == 0:
        found, vecs = EmbeddingCache(root).get(model_id, texts)
        if vecs is not None and found.any() and not np.array_equal(vecs[found], expected[found]):
            bad += 1
        rounds += 1
    queue.put((bad, rounds))


def test_concurrent_readers_see_only_complete_vectors(tmp_path: Path) -> None:
    enc = HashingEncoder(dim=32)
    texts = [f"concurrent text {i}" for i in range(400)]
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    done = ctx.Event()
    readies = [ctx.Event() for _ in range(2)]
    readers = [
        ctx.Process(target=_reader, args=(str(tmp_path), enc.model_id, texts, r, done, queue))
        for r in readies
    ]
    for p in readers:
        p.start()
    for r in readies:
        assert r.wait(timeout=60)
    writer = EmbeddingCache(tmp_path, max_shards=3)  # compaction deletes shards while readers read
    for i in range(0, 400, 10):
        writer.encode(texts[i : i + 10], enc)
    done.set()
    results = [queue.get(timeout=60) for _ in readers]
    for p in readers:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert [bad for bad, _ in results] == [0, 0]
    assert all(rounds > 1 for _, rounds in results)  # they really did read during the writes
    found, _ = EmbeddingCache(tmp_path).get(enc.model_id, texts)
    assert found.all()


def test_cache_with_the_real_model(tmp_path: Path, minilm: SentenceTransformerEncoder) -> None:
    texts = ["Heat (1995). Genres: Action, Crime, Thriller.", "Babe (1995). Genres: Children, Drama."]
    cache = EmbeddingCache(tmp_path)
    direct = minilm.encode(texts)
    np.testing.assert_allclose(cache.encode(texts, minilm), direct, atol=1e-6)
    again = EmbeddingCache(tmp_path)
    np.testing.assert_array_equal(again.encode(texts, minilm), cache.encode(texts, minilm))
    assert again.last_stats.hits == 2
