"""lmrec: recommender systems with pretrained language models beside collaborative filtering."""

from lmrec._version import __version__
from lmrec.data import Dataset, Split, Vocabulary, leave_last_out, load_dataset, split
from lmrec.errors import DataError, LmrecError, UnknownIdError, UnsupportedQueryError
from lmrec.models import Query, Recommender, create_model

__all__ = [
    "DataError",
    "Dataset",
    "LmrecError",
    "Query",
    "Recommender",
    "Split",
    "UnknownIdError",
    "UnsupportedQueryError",
    "Vocabulary",
    "__version__",
    "create_model",
    "leave_last_out",
    "load_dataset",
    "split",
]
