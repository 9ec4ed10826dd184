"""Recommendation models sharing one protocol (see :mod:`lmrec.models.base`)."""

from lmrec.models.base import EmbeddingRecommender, ModelConfig, Query, QueryBatch, Recommender
from lmrec.models.popularity import Popularity, RandomModel
from lmrec.models.registry import available_models, create_model, get_model_class, register_model

__all__ = [
    "EmbeddingRecommender",
    "ModelConfig",
    "Popularity",
    "Query",
    "QueryBatch",
    "RandomModel",
    "Recommender",
    "available_models",
    "create_model",
    "get_model_class",
    "register_model",
]
