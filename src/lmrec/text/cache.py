"""An on-disk embedding cache keyed by model id + text hash (safetensors shards + a JSON index).

Encoding 10,000 item profiles takes minutes on a CPU; the same profiles come back at every fit, every
benchmark run and every server start. The cache makes the second time a file read: only new or
changed texts (a changed text has a new hash) are sent to the model.

Layout, one directory per model (the model id is part of the key: vectors of two models never mix)::

    <root>/<model-slug>/index.json                  {"model_id", "dim", "shards": [{"file", "n"}]}
    <root>/<model-slug>/shard-<time>-<uuid>.safetensors   keys: uint8 (n, 32) sha256 of the text
                                                          vectors: float32 (n, dim)
    <root>/<model-slug>/.lock                        writers' lock file

Concurrency
    Shards are immutable once written. Every file is written to a temporary name in the same directory,
    flushed, fsync'ed and moved into place with ``os.replace`` (atomic on POSIX and Windows), so a reader
    sees either the old or the new ``index.json``, never a half-written one, and only ever opens complete
    shards. Writers serialise the read-modify-write of ``index.json`` with an exclusive ``flock`` on
    ``.lock`` (no locking where ``fcntl`` is missing: then two concurrent writers can drop one another's
    index entry, which costs a re-encode, never a wrong vector). Readers take no lock; if compaction
    deletes a shard between a reader's index read and its shard read, the reader starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from lmrec._atomic import atomic_write
from lmrec.errors import LmrecError
from lmrec.text.encoder import TextEncoder

try:  # POSIX advisory locks; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover - not on the CI platform
    fcntl = None  # type: ignore[assignment]

INDEX_FORMAT = 1
KEY_BYTES = 32


def text_key(text: str) -> bytes:
    """sha256 of the UTF-8 text: the cache key within one model's directory."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def model_slug(model_id: str) -> str:
    """A file-system-safe, collision-free directory name for ``model_id``."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:60].strip("_.")
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:10]}"


def default_cache_dir() -> Path:
    """``$LMREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/lmrec/embeddings``, else ``~/.cache/lmrec/embeddings``."""
    env = os.environ.get("LMREC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "lmrec" / "embeddings"


@dataclass
class CacheStats:
    """What the last :meth:`EmbeddingCache.encode` did."""

    n_texts: int = 0
    n_unique: int = 0
    hits: int = 0
    encoded: int = 0
    seconds: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.n_unique if self.n_unique else 1.0


class _ModelStore:
    """One model's directory, with its shards loaded into memory as they appear."""

    def __init__(self, root: Path, model_id: str) -> None:
        self.model_id = model_id
        self.dir = root / model_slug(model_id)
        self.index_path = self.dir / "index.json"
        self.rows: dict[bytes, int] = {}
        self.blocks: list[np.ndarray] = []
        self.n = 0
        self.dim: int | None = None
        self.loaded: set[str] = set()
        self._stamp: tuple[int, int, int] | None = None
        self._matrix: np.ndarray | None = None

    # ---------------------------------------------------------------- reading
    def _read_index(self) -> dict[str, Any]:
        try:
            raw = self.index_path.read_text()
        except FileNotFoundError:
            return {"format": INDEX_FORMAT, "model_id": self.model_id, "dim": None, "shards": []}
        try:
            index = json.loads(raw)
        except json.JSONDecodeError as exc:  # only a foreign writer could leave this behind
            raise LmrecError(
                f"embedding cache index {self.index_path} is corrupt ({exc}); delete the directory"
            ) from exc
        if index.get("model_id") != self.model_id:
            raise LmrecError(
                f"embedding cache {self.dir} belongs to model {index.get('model_id')!r}, not {self.model_id!r}"
            )
        return index  # type: ignore[no-any-return]

    def refresh(self) -> None:
        """Load shards listed in the index that are not in memory yet (cheap when nothing changed)."""
        for _attempt in range(5):
            try:
                st = self.index_path.stat()
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                return
            if stamp == self._stamp:
                return
            index = self._read_index()
            files = [s["file"] for s in index["shards"]]
            if not set(self.loaded) <= set(files):  # compacted: start over from the new shard set
                self.rows, self.blocks, self.n, self.loaded, self._matrix = {}, [], 0, set(), None
            try:
                for name in files:
                    if name not in self.loaded:
                        self._load_shard(self.dir / name)
                        self.loaded.add(name)
            except FileNotFoundError:
                continue  # a shard vanished under us (compaction): re-read the index
            self.dim = index.get("dim") or self.dim
            self._stamp = stamp
            return
        raise LmrecError(f"embedding cache {self.dir} keeps changing under this reader; try again")

    def _load_shard(self, path: Path) -> None:
        tensors = load_file(str(path))
        keys, vecs = tensors["keys"], tensors["vectors"]
        if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or len(keys) != len(vecs):
            raise LmrecError(f"embedding cache shard {path} is malformed")
        if self.dim is not None and vecs.shape[1] != self.dim:
            raise LmrecError(f"embedding cache shard {path} has dim {vecs.shape[1]}, expected {self.dim}")
        self.dim = int(vecs.shape[1])
        start = self.n
        for j, k in enumerate(keys):
            self.rows.setdefault(k.tobytes(), start + j)
        self.blocks.append(vecs.astype(np.float32, copy=False))
        self.n += len(vecs)
        self._matrix = None

    def matrix(self) -> np.ndarray:
        if self._matrix is None:
            self._matrix = (
                np.concatenate(self.blocks)
                if len(self.blocks) > 1
                else self.blocks[0]
                if self.blocks
                else np.zeros((0, self.dim or 0), np.float32)
            )
            self.blocks = [self._matrix] if self.n else []
        return self._matrix

    # ---------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write_index(self, index: dict[str, Any]) -> None:
        def write(tmp: Path) -> None:
            tmp.write_text(json.dumps(index, indent=1))

        atomic_write(self.index_path, write)

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> str:
        name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.safetensors"
        tensors: dict[str, np.ndarray] = {
            "keys": np.ascontiguousarray(keys, dtype=np.uint8),
            "vectors": np.ascontiguousarray(vectors, np.float32),
        }
        atomic_write(
            self.dir / name, lambda tmp: save_file(tensors, tmp, metadata={"model_id": self.model_id})
        )
        return name

    def append(self, keys: list[bytes], vectors: np.ndarray, max_shards: int) -> None:
        if not keys:
            return
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        with self._locked():
            name = self._write_shard(key_arr, vectors)
            index = self._read_index()
            if index.get("dim") not in (None, vectors.shape[1]):
                raise LmrecError(
                    f"embedding cache {self.dir} holds dim {index['dim']}, got vectors of dim {vectors.shape[1]}"
                )
            index["dim"] = int(vectors.shape[1])
            index["shards"].append({"file": name, "n": len(keys), "created": time.time()})
            self._write_index(index)
            if len(index["shards"]) > max_shards:
                self._compact(index)
        self.refresh()

    def _compact(self, index: dict[str, Any]) -> None:
        """Merge all shards into one (under the writers' lock), dropping duplicate keys."""
        seen: dict[bytes, int] = {}
        keys: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        for s in index["shards"]:
            t = load_file(str(self.dir / s["file"]))
            for k, v in zip(t["keys"], t["vectors"], strict=True):
                kb = k.tobytes()
                if kb not in seen:
                    seen[kb] = len(keys)
                    keys.append(k)
                    vecs.append(v)
        name = self._write_shard(np.stack(keys), np.stack(vecs))
        old = [s["file"] for s in index["shards"]]
        index["shards"] = [{"file": name, "n": len(keys), "created": time.time()}]
        self._write_index(index)
        for f in old:  # readers that still hold the old index retry (see refresh)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir / f)


class EmbeddingCache:
    """Embeddings on disk, keyed by ``(encoder.model_id, sha256(text))``.

    >>> cache = EmbeddingCache("~/.cache/lmrec/embeddings")      # doctest: +SKIP
    >>> vectors = cache.encode(texts, get_encoder())               # doctest: +SKIP
    >>> cache.last_stats.hits                                      # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, max_shards: int = 32) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_shards = max_shards
        self._stores: dict[str, _ModelStore] = {}
        self.last_stats = CacheStats()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r})"

    def _store(self, model_id: str) -> _ModelStore:
        if model_id not in self._stores:
            self._stores[model_id] = _ModelStore(self.root, model_id)
        store = self._stores[model_id]
        store.refresh()
        return store

    def get(self, model_id: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found, vectors)``: a boolean mask and an (n, dim) array (rows of missing texts are zero)."""
        store = self._store(model_id)
        rows = np.fromiter((store.rows.get(text_key(t), -1) for t in texts), dtype=np.int64, count=len(texts))
        found = rows >= 0
        if store.dim is None:
            return found, None
        out = np.zeros((len(texts), store.dim), np.float32)
        if found.any():
            out[found] = store.matrix()[rows[found]]
        return found, out

    def put(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors for texts (duplicates and already-cached texts are skipped)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(
                f"need one vector per text: {len(texts)} texts, vectors of shape {vectors.shape}"
            )
        store = self._store(model_id)
        keys, keep = [], []
        fresh: set[bytes] = set()
        for i, t in enumerate(texts):
            k = text_key(t)
            if k not in store.rows and k not in fresh:
                fresh.add(k)
                keys.append(k)
                keep.append(i)
        store.append(keys, vectors[keep], self.max_shards)

    def encode(
        self,
        texts: Sequence[str],
        encoder: TextEncoder,
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        kind: str = "document",
    ) -> np.ndarray:
        """``encoder.encode(texts)``, with cached texts read from disk and only the rest encoded.

        The encoder is not touched at all when every text is cached (a lazily loaded model then never
        loads). ``last_stats`` says how many texts were hits. Query-kind texts are keyed separately
        (prefix models encode them differently).
        """
        model_id = encoder.model_id if kind == "document" else f"{encoder.model_id};kind={kind}"
        texts = list(texts)
        return self.lookup_or_encode(
            model_id,
            texts,
            lambda missing: encoder.encode(
                missing, batch_size=batch_size, show_progress=show_progress, kind=kind
            ),
            dim=encoder.dim,
        )

    def lookup_or_encode(
        self,
        model_id: str,
        keys: Sequence[str],
        encode_missing: Callable[[list[str]], np.ndarray],
        *,
        dim: int,
    ) -> np.ndarray:
        """One row per key: cached rows read from disk, the rest from ``encode_missing(uncached
        distinct keys)`` and stored. Sets ``last_stats``. The text and image layers share it."""
        started = time.perf_counter()
        keys = list(keys)
        uniq = list(dict.fromkeys(keys))
        found, vecs = self.get(model_id, uniq)
        missing = [k for k, f in zip(uniq, found, strict=True) if not f]
        if missing:
            new = encode_missing(missing)
            self.put(model_id, missing, new)
            if vecs is None:
                vecs = np.zeros((len(uniq), new.shape[1]), np.float32)
            vecs[~found] = new
        pos = {k: i for i, k in enumerate(uniq)}
        out = vecs[[pos[k] for k in keys]] if vecs is not None else np.zeros((0, dim), np.float32)
        self.last_stats = CacheStats(
            n_texts=len(keys),
            n_unique=len(uniq),
            hits=int(found.sum()),
            encoded=len(missing),
            seconds=time.perf_counter() - started,
        )
        return out

    def size(self, model_id: str) -> int:
        """Number of cached texts for ``model_id``."""
        return len(self._store(model_id).rows)

    def clear(self, model_id: str | None = None) -> None:
        """Delete one model's cached vectors (or all of them)."""
        import shutil

        targets = (
            [self.root / model_slug(model_id)]
            if model_id
            else ([p for p in self.root.iterdir() if p.is_dir()] if self.root.exists() else [])
        )
        for d in targets:
            shutil.rmtree(d, ignore_errors=True)
        self._stores = {k: v for k, v in self._stores.items() if model_id is not None and k != model_id}


def cached_encode(
    texts: Sequence[str],
    encoder: TextEncoder,
    cache: EmbeddingCache | str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 64,
    show_progress: bool | None = None,
    kind: str = "document",
) -> np.ndarray:
    """Encode through ``cache`` when one is given (an :class:`EmbeddingCache` or a directory), else directly."""
    if cache is None:
        return encoder.encode(list(texts), batch_size=batch_size, show_progress=show_progress, kind=kind)
    if not isinstance(cache, EmbeddingCache):
        cache = EmbeddingCache(cache)
    return cache.encode(texts, encoder, batch_size=batch_size, show_progress=show_progress, kind=kind)


__all__ = ["CacheStats", "EmbeddingCache", "cached_encode", "default_cache_dir", "model_slug", "text_key"]
