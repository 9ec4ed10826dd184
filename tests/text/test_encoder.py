"""Text encoders: the offline MiniLM model and the model-free hashing encoder."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lmrec.errors import LmrecError
from lmrec.text.encoder import (
    DEFAULT_MODEL,
    HashingEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    default_model_path,
    get_encoder,
    l2_normalize,
    pick_device,
)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


# ------------------------------------------------------------------------------- hashing encoder
def test_hashing_encoder_is_deterministic_normalised_and_lexical() -> None:
    enc = HashingEncoder(dim=128)
    assert isinstance(enc, TextEncoder)
    texts = ["red guitar strings", "guitar strings, red", "stock market crash", ""]
    a = enc.encode(texts)
    b = HashingEncoder(dim=128).encode(texts)
    assert a.dtype == np.float32 and a.shape == (4, 128)
    np.testing.assert_array_equal(a, b)  # same text, same vector, across instances
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, rtol=1e-5)
    assert np.all(a[3] == 0)  # nothing to hash: a zero row, not NaN
    assert cos(a[0], a[1]) > 0.6 > cos(a[0], a[2])
    assert enc.model_id == "hashing-v1;dim=128;char=3-4"
    assert enc.calls == 4


def test_get_encoder_names() -> None:
    assert isinstance(get_encoder("hashing"), HashingEncoder)
    assert get_encoder("hashing:64").dim == 64
    with pytest.raises(LmrecError, match="hashing"):
        get_encoder("hashing:big")
    with pytest.raises(TypeError, match="not one string"):
        HashingEncoder().encode("just one string")  # type: ignore[arg-type]


def test_l2_normalize_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


# ------------------------------------------------------------------------------- the real model
def test_default_encoder_resolves_to_bundled_package_without_loading() -> None:
    enc = get_encoder()
    assert isinstance(enc, SentenceTransformerEncoder)
    assert enc.local_dir == default_model_path()
    assert (enc.local_dir / "model.safetensors").exists()
    # model id and dimension are known before (and without) loading the weights
    assert enc.model_id.startswith(DEFAULT_MODEL + "@")
    assert enc.dim == 384
    assert not enc.is_loaded
    # every alias names the same model, hence the same cache key
    assert get_encoder("all-MiniLM-L6-v2").model_id == enc.model_id == get_encoder("default").model_id
    assert get_encoder(None, max_seq_length=128).model_id != enc.model_id  # truncation changes vectors
    assert pick_device("cpu") == "cpu" and pick_device(None) in {"cpu", "cuda", "mps"}


def test_minilm_vectors_are_semantic_and_normalised(minilm: SentenceTransformerEncoder) -> None:
    texts = [
        "a cat sits on the mat",
        "a kitten is resting on a rug",
        "the stock market crashed today",
        "animated film for young children",
        "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy.",
        "Saving Private Ryan (1998). Genres: Action, Drama, War.",
    ]
    v = minilm.encode(texts)
    assert v.shape == (6, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.3
    # the query lands nearer the animated movie than the war movie
    assert cos(v[3], v[4]) > cos(v[3], v[5]) + 0.1
    assert minilm.device == "cpu"  # the test fixture pins the CPU (fp32: exact comparisons below)


def test_minilm_batching_and_order_do_not_change_vectors(minilm: SentenceTransformerEncoder) -> None:
    texts = ["short", "a somewhat longer sentence about music", "medium length text", "x" * 50, "short"]
    one = minilm.encode(texts, batch_size=1)
    many = minilm.encode(texts, batch_size=64)
    np.testing.assert_allclose(one, many, atol=2e-5)  # padding differs, vectors must not
    np.testing.assert_array_equal(many[0], many[4])  # length sorting is undone: rows stay aligned
    rev = minilm.encode(texts[::-1], batch_size=2)
    np.testing.assert_allclose(rev[::-1], many, atol=2e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_query_prefix_changes_only_queries() -> None:
    enc = get_encoder(None, query_prefix="query: ", device="cpu")
    assert "prefix" in enc.model_id
    assert enc.model_id != get_encoder().model_id


def test_unreachable_hub_model_fails_fast_with_a_clear_error() -> None:
    enc = get_encoder("no-such-org/no-such-model-xyz", local_files_only=True)
    assert not enc.is_loaded  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    with pytest.raises(LmrecError, match=r"no-such-org/no-such-model-xyz.*(offline|hub)"):
        enc.encode(["hello"])
    assert time.perf_counter() - t0 < 30


@pytest.mark.gpu
def test_cuda_fp16_matches_cpu_fp32() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = get_encoder(None)  # device=None picks CUDA, in fp16
    texts = [
        "Toy Story (1995). Genres: Animation, Children.",
        "Heat (1995). Genres: Action, Crime, Thriller.",
    ]
    v_gpu = gpu.encode(texts)
    assert gpu.device == "cuda" and gpu.model.dtype == torch.float16  # type: ignore[attr-defined]
    assert v_gpu.dtype == np.float32
    np.testing.assert_allclose(v_gpu, get_encoder(None, device="cpu").encode(texts), atol=5e-3)
