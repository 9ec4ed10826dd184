"""Datasets, vocabularies, loaders and splits."""

from lmrec.data.dataset import Dataset
from lmrec.data.split import Split, cold_item, cold_user, leave_last_out, random_split, split, temporal
from lmrec.data.vocabulary import Vocabulary

__all__ = [
    "Dataset",
    "Split",
    "Vocabulary",
    "cold_item",
    "cold_user",
    "leave_last_out",
    "random_split",
    "split",
    "temporal",
]
