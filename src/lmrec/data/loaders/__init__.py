"""Dataset loaders: a registry of public datasets (MovieLens, Amazon reviews, Last.fm) with pinned
checksums and verified, atomic downloads, plus a general loader for your own tables.

``catalogue.toml`` (read by :mod:`.catalogue`) lists the built-in datasets; :mod:`.registry` looks
names up and registers your own; :mod:`.locate` finds the local copy, :mod:`.verify` checks it,
:mod:`.download` fetches a missing one and :mod:`.load` puts it together as ``load_dataset``. The
format readers are :mod:`.movielens`, :mod:`.amazon`, :mod:`.lastfm`, :mod:`.converted` and
:mod:`.tabular`.

>>> from lmrec.data.loaders import load_dataset
>>> ds = load_dataset("ml-100k")            # local copy if present and verified, else downloaded
>>> ds.meta["checksums"]["u.data"]
'md5:6e47046882bad158b0efbb84cd5cb987'
"""

from lmrec.data.loaders.amazon import load_amazon
from lmrec.data.loaders.catalogue import Archive, DatasetSpec, FileSpec
from lmrec.data.loaders.download import download_dataset
from lmrec.data.loaders.lastfm import load_lastfm
from lmrec.data.loaders.load import load_dataset
from lmrec.data.loaders.locate import data_home, dataset_dir, is_present, missing_files
from lmrec.data.loaders.movielens import load_movielens
from lmrec.data.loaders.registry import (
    AMAZON_2014_CATEGORIES,
    AMAZON_2018_CATEGORIES,
    dataset_info,
    list_datasets,
    register_dataset,
    unregister_dataset,
)
from lmrec.data.loaders.tabular import load_table, read_table
from lmrec.data.loaders.verify import FileCheck, VerifyReport, local_status, verify_dataset

__all__ = [
    "AMAZON_2014_CATEGORIES",
    "AMAZON_2018_CATEGORIES",
    "Archive",
    "DatasetSpec",
    "FileCheck",
    "FileSpec",
    "VerifyReport",
    "data_home",
    "dataset_dir",
    "dataset_info",
    "download_dataset",
    "is_present",
    "list_datasets",
    "load_amazon",
    "load_dataset",
    "load_lastfm",
    "load_movielens",
    "load_table",
    "local_status",
    "missing_files",
    "read_table",
    "register_dataset",
    "unregister_dataset",
    "verify_dataset",
]
