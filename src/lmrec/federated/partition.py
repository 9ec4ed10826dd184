"""Which client holds which user: the partitions of a federation.

Cross-silo: ``n_clients`` clients, users split by a hash of their id (IID-ish), or by a user
attribute (non-IID: every user of one occupation, or of one zip prefix, sits in one silo, like the
customers of one shop). Cross-device: one client per user.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError

#: partition names that are not a column of the user table
BUILT_IN = ("hash", "user", "occupation", "zip")


def partition_users(data: Dataset, by: str = "hash", n_clients: int = 10, *, seed: int = 0) -> np.ndarray:
    """Client index (0 .. n - 1) of every user, by internal user index.

    ``by``: ``"hash"`` (crc32 of the external id and the seed, modulo ``n_clients``), ``"user"`` (one
    client per user; ``n_clients`` ignored), ``"occupation"``, ``"zip"`` (first character of
    ``zip_code``) or any column of ``data.users``. An attribute's groups are packed onto the
    ``n_clients`` silos largest first, each onto the silo with the fewest users so far, so silos are
    of similar size but every group stays whole (a silo holds a few occupations, never part of one).
    """
    n_users = data.n_users
    if by == "user":
        return np.arange(n_users, dtype=np.int64)
    if n_clients < 1:
        raise DataError(f"partition {by!r}: n_clients must be at least 1, got {n_clients}")
    if by == "hash":
        ids = data.user_vocab.external(np.arange(n_users))
        return np.array([zlib.crc32(f"{seed}:{u}".encode()) % n_clients for u in ids], dtype=np.int64)
    groups = _user_groups(data, by)
    values, codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(values) < n_clients:
        raise DataError(
            f"partition {by!r}: the user table has {len(values)} distinct values, fewer than the "
            f"{n_clients} clients asked for"
        )
    load = np.zeros(n_clients, dtype=np.int64)
    silo_of = np.zeros(len(values), dtype=np.int64)
    for g in np.lexsort((np.arange(len(values)), -sizes)):  # largest first, ties by value order
        silo = int(np.argmin(load))
        silo_of[g] = silo
        load[silo] += sizes[g]
    return silo_of[codes]


def _user_groups(data: Dataset, by: str) -> np.ndarray:
    """The attribute ``by`` of every user (as strings, by internal index); missing -> ``""``."""
    if data.users is None:
        raise DataError(f"partition {by!r}: dataset {data.name!r} has no user table")
    column = "zip_code" if by == "zip" else by
    if column not in data.users.columns:
        raise DataError(
            f"partition {by!r}: the user table of {data.name!r} has no column {column!r} "
            f"(columns: {', '.join(c for c in data.users.columns if c != 'user_id')}; or use "
            f"{', '.join(BUILT_IN)})"
        )
    table = data.users.select("user_id", pl.col(column).cast(pl.String).fill_null(""))
    if by == "zip":
        table = table.with_columns(pl.col(column).str.slice(0, 1))
    idx = data.user_vocab.indices(table["user_id"].to_list(), missing="mark")
    out = np.full(data.n_users, "", dtype=object)
    keep = idx >= 0
    out[idx[keep]] = np.asarray(table[column].to_list(), dtype=object)[keep]
    return out.astype(str)
