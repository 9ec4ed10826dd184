"""The language-model text layer: encoders, profile texts, an embedding cache, review keyphrases.

Nothing here imports torch until a sentence-transformers model actually encodes something, so
``import lmrec.text`` is cheap and works without the ``text`` extra (the hashing encoder needs no model).
"""

from lmrec.text.cache import CacheStats, EmbeddingCache, cached_encode, default_cache_dir
from lmrec.text.encoder import (
    DEFAULT_MODEL,
    HashingEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    get_encoder,
    l2_normalize,
    shared_encoder,
)
from lmrec.text.keywords import extract_keywords, keyword_map, review_keywords
from lmrec.text.profiles import (
    ProfileConfig,
    build_item_texts,
    build_user_texts,
    drop_heldout_text,
    item_texts_from_frame,
    query_text,
    truncate,
    user_text,
)

__all__ = [
    "DEFAULT_MODEL",
    "CacheStats",
    "EmbeddingCache",
    "HashingEncoder",
    "ProfileConfig",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "build_item_texts",
    "build_user_texts",
    "cached_encode",
    "default_cache_dir",
    "drop_heldout_text",
    "extract_keywords",
    "get_encoder",
    "item_texts_from_frame",
    "keyword_map",
    "l2_normalize",
    "query_text",
    "review_keywords",
    "shared_encoder",
    "truncate",
    "user_text",
]
