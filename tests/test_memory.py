"""The memory guard: limits read from meminfo / cgroups / $LMREC_MEMORY_LIMIT, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec import _memory
from lmrec._memory import available_memory, check_memory, gib, parse_bytes, rows_per_batch
from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError, MemoryBudgetError
from lmrec.models import ease as ease_module
from lmrec.models.ease import EASE, memory_needed


def _data(n_users: int = 60, n_items: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, 600)
    i = rng.integers(0, n_items, 600)
    frame = pl.DataFrame({"user_id": u, "item_id": i}).unique(maintain_order=True)
    return Dataset.from_frames(frame)


def test_parse_bytes() -> None:
    assert parse_bytes("8GiB") == 8 * 2**30
    assert parse_bytes("512 MB") == 512_000_000
    assert parse_bytes("1.5g") == 1_500_000_000
    assert parse_bytes("1024") == 1024
    with pytest.raises(ValueError, match="'lots'"):
        parse_bytes("lots")
    assert gib(3 * 2**30) == "3.0 GiB" and gib(48 * 2**20) == "48 MiB"


def test_env_cap_is_the_smallest_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_memory.LIMIT_ENV, "100TiB")
    assert available_memory().source != f"${_memory.LIMIT_ENV}=100TiB"  # the machine is smaller
    monkeypatch.setenv(_memory.LIMIT_ENV, "1GiB")
    got = available_memory()
    assert got.source == "$LMREC_MEMORY_LIMIT=1GiB" and got.bytes is not None and got.bytes < 2**30
    monkeypatch.setenv(_memory.LIMIT_ENV, "plenty")
    with pytest.raises(MemoryBudgetError, match=r"LMREC_MEMORY_LIMIT.*'plenty'"):
        available_memory()


def test_cgroup_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_memory.LIMIT_ENV, raising=False)
    monkeypatch.setattr(_memory, "_meminfo", lambda: 64 * 2**30)
    monkeypatch.setattr(_memory, "_CGROUP_ROOT", tmp_path)
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1: no limit
    assert available_memory() == _memory.Available(64 * 2**30, "MemAvailable")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(4 * 2**30))
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text(str(2**30))
    assert available_memory() == _memory.Available(3 * 2**30, "cgroup limit")
    (tmp_path / "memory.max").write_text(str(2 * 2**30))  # v2 wins over v1
    (tmp_path / "memory.current").write_text(str(2**29))
    assert available_memory() == _memory.Available(3 * 2**29, "cgroup limit")
    (tmp_path / "memory.max").write_text("max\n")  # v2 without a limit: the v1 limit still counts
    assert available_memory().source == "cgroup limit"


def test_unknown_memory_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memory, "available_memory", lambda: _memory.Available(None, "unknown"))
    check_memory(10**18, what="x", alternative="y")


def test_check_memory_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memory, "available_memory", lambda: _memory.Available(2**30, "cgroup limit"))
    check_memory(int(0.8 * 2**30), what="x", alternative="y")
    with pytest.raises(
        MemoryBudgetError, match=r"^thing needs 2\.0 GiB but 1\.0 GiB is available \(cgroup limit\); do z$"
    ):
        check_memory(2 * 2**30, what="thing", alternative="do z")


def test_ease_refuses_before_fitting(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data()
    n = data.n_items
    # a fixed resident size: the real one moves by more than this tiny EASE needs in a long session
    monkeypatch.setattr(_memory, "_rss", lambda: 2**30)
    monkeypatch.setenv(_memory.LIMIT_ENV, str(2**30 + memory_needed(n) // 2))
    with pytest.raises(MemoryBudgetError) as err:
        EASE().fit(data)
    msg = str(err.value)
    assert f"EASE on {n:,} items" in msg and "MiB" in msg and "item_knn or als" in msg
    assert isinstance(err.value, LmrecError) and isinstance(err.value, MemoryError)
    monkeypatch.setenv(_memory.LIMIT_ENV, str(2**30 + 4 * memory_needed(n)))
    assert EASE().fit(data).weights_.shape == (n, n)


def test_ease_memory_need_grows_with_items_squared() -> None:
    assert memory_needed(27_278) == pytest.approx(2 * 8 * 27_278**2, rel=0.02)  # ml-20m: 11.1 GiB
    assert memory_needed(2_000) / memory_needed(1_000) > 3.5


def test_ease_blockwise_gram_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(n_items=37)
    whole = EASE(l2=3.0).fit(data).weights_
    monkeypatch.setattr(ease_module, "_BLOCK_FLOATS", 37 * 5)  # 5 columns per block, last one short
    blocks = EASE(l2=3.0).fit(data).weights_
    np.testing.assert_allclose(blocks, whole, rtol=1e-6, atol=1e-7)
    x = data.csr("binary")
    np.testing.assert_array_equal(ease_module._dense_gram(x), (x.T @ x).toarray())


def test_rows_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memory, "available_memory", lambda: _memory.Available(100 * 2**30, "MemAvailable"))
    assert rows_per_batch(1024, 4 * 10_000) == 1024
    assert rows_per_batch(1024, 4 * 1_000_000) == 134  # 512 MiB of float32 rows over 1M items
    monkeypatch.setattr(_memory, "available_memory", lambda: _memory.Available(40 * 2**20, "cgroup limit"))
    assert rows_per_batch(1024, 4 * 1_000_000) == 1  # never zero
    monkeypatch.setattr(_memory, "available_memory", lambda: pytest.fail("small batches read no limits"))
    assert rows_per_batch(1, 8 * 1_000_000) == 1


def test_recommend_and_evaluate_batches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmrec.data.split import leave_last_out
    from lmrec.evaluation import evaluate

    data = _data(n_users=80, n_items=40)
    split = leave_last_out(data)
    model = EASE().fit(split.train)
    users = data.user_vocab.ids[:50]
    full = model.recommend(users, k=5)
    metrics = evaluate(model, split, ks=(5,), beyond_accuracy=False)["ndcg@5"]
    # a budget of 3 score rows: same answers, in many small batches
    monkeypatch.setattr(_memory, "_SMALL", 0)
    monkeypatch.setattr(_memory, "available_memory", lambda: _memory.Available(10 * 3 * 3 * 4 * 40, "test"))
    seen: list[int] = []
    real = model.rank
    monkeypatch.setattr(
        model, "rank", lambda batch, *a, **kw: seen.append(len(batch)) or real(batch, *a, **kw)
    )
    assert model.recommend(users, k=5).equals(full)
    assert max(seen) <= 4
    assert evaluate(model, split, ks=(5,), beyond_accuracy=False)["ndcg@5"] == pytest.approx(metrics)


def test_ease_at_200k_items_refuses_at_once_without_allocating() -> None:
    """Issue #17: EASE on a 200k-item catalogue (a 640 GB Gram matrix and inverse) must fail fast
    with the clear error, on the real memory of whatever machine runs the test, and allocate
    nothing of catalogue-squared size on the way."""
    import time
    import tracemalloc

    n_items = 200_000
    items = np.arange(n_items)
    frame = pl.DataFrame({"user_id": items % 5_000, "item_id": items})
    data = Dataset.from_frames(frame)
    assert data.n_items == n_items
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(
            MemoryBudgetError, match=r"^EASE on 200,000 items .* needs [0-9.]+ GiB but"
        ) as err:
            EASE().fit(data)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "item_knn or als" in str(err.value)  # names the alternative
    assert peak < 64 * 2**20, f"allocated {peak / 2**20:.0f} MiB before refusing"
    # generous bound for a loaded CI machine; the refusal itself takes milliseconds
    assert elapsed < 1.0, f"took {elapsed:.2f} s to refuse"
