"""Datasets, vocabularies, loaders and splits."""

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import list_datasets, load_dataset
from lmrec.data.split import Split, cold_item, cold_user, leave_last_out, random_split, split, temporal
from lmrec.data.vocabulary import Vocabulary

__all__ = [
    "Dataset",
    "Split",
    "Vocabulary",
    "cold_item",
    "cold_user",
    "leave_last_out",
    "list_datasets",
    "load_dataset",
    "random_split",
    "split",
    "temporal",
]
