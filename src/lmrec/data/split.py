"""Seeded, deterministic train/validation/test splits.

Every split returns a :class:`Split` whose ``train`` is a :class:`Dataset` sharing the full id
vocabularies (so items that appear only in test are known ids with no training signal: cold items),
and whose ``protocol`` dict records exactly what was done, for the evaluation report.

Protocols
---------
* ``leave_last_out``: per user, by timestamp (ties broken by file order), the last interaction is
  test and the one before it validation.
* ``temporal``: one global time cut; everything after it is test (the previous slice is validation).
* ``random``: per user, a seeded random fraction is held out.
* ``cold_item``: a seeded random set of items whose every interaction is held out; those items are
  never seen in training.
* ``cold_user``: a seeded random set of users removed from training; at test time the first part of
  their history (by time) is revealed as a query history and the rest are targets.

Repeated (user, item) pairs (a song played twice) can put a held-out target in the history its user
is queried with, where it is masked and can never be hit. Every protocol counts such targets
(:func:`targets_in_history`, recorded in ``protocol["targets_in_history"]``) and logs a warning, or
refuses with ``seen_targets="error"``; :func:`lmrec.evaluation.evaluate` leaves them out.

Validation for early stopping (neural models): :func:`split_validation` turns a held-out frame, or a
``val_fraction`` of users' last events (:func:`holdout_last`), into :class:`ValidationData`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError

PROTOCOLS = ("leave_last_out", "temporal", "random", "cold_item", "cold_user")
#: what a split does when a held-out target is already in its user's history at query time
SeenTargets = Literal["warn", "error"]

log = logging.getLogger("lmrec.data")


@dataclass(frozen=True)
class Split:
    """A train dataset plus held-out interaction frames (with ``user_idx``/``item_idx`` columns)."""

    train: Dataset
    test: pl.DataFrame
    valid: pl.DataFrame | None = None
    #: interactions revealed at query time for users absent from training (cold-user protocol)
    test_history: pl.DataFrame | None = None
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def full(self) -> Dataset:
        """Train + validation: the training history users have at test time."""
        if self.valid is None or self.valid.height == 0:
            return self.train
        return self.train.with_interactions(
            pl.concat([self.train.interactions, self.valid], how="diagonal_relaxed")
        )

    def cold_items(self) -> np.ndarray:
        """Internal indices of items with no training interactions."""
        seen = np.zeros(self.train.n_items, dtype=bool)
        seen[self.train.interactions["item_idx"].to_numpy()] = True
        return np.flatnonzero(~seen)

    def summary(self) -> dict[str, Any]:
        out = dict(self.protocol)
        out.update(
            train_rows=self.train.n_interactions,
            valid_rows=0 if self.valid is None else self.valid.height,
            test_rows=self.test.height,
            test_users=self.test["user_idx"].n_unique(),
        )
        return out


def targets_in_history(sp: Split) -> dict[str, int]:
    """Held-out rows whose (user, item) pair the user already has in the history they are queried
    with: training for ``valid``; training, validation and revealed history for ``test``.

    Only repeated (user, item) pairs in the data cause this (a song played twice, a product bought
    again). Such a target is excluded from its user's ranking like every history item, so it can
    never be hit; :func:`lmrec.evaluation.evaluate` leaves these targets out.
    """
    keys = ["user_idx", "item_idx"]
    known = [sp.train.interactions.select(keys)]
    out = {}
    if sp.valid is not None and sp.valid.height:
        out["valid"] = sp.valid.join(known[0].unique(), on=keys, how="semi").height
        known.append(sp.valid.select(keys))
    if sp.test_history is not None and sp.test_history.height:
        known.append(sp.test_history.select(keys))
    out["test"] = sp.test.join(pl.concat(known).unique(), on=keys, how="semi").height
    return {k: v for k, v in out.items() if v}


def _checked(sp: Split, seen_targets: SeenTargets) -> Split:
    """Warn (``seen_targets="warn"``) or refuse (``"error"``) when targets sit in the history."""
    if seen_targets not in ("warn", "error"):
        raise DataError(f"seen_targets={seen_targets!r}: use 'warn' or 'error'")
    found = targets_in_history(sp)
    if not found:
        return sp
    what = " and ".join(f"{n} {phase}" for phase, n in found.items())
    message = (
        f"{sp.protocol.get('name', 'split')} split of {sp.train.name}: {what} target(s) are already in "
        "their user's history at query time (the data repeats (user, item) pairs), so they can never "
        "be recommended"
    )
    if seen_targets == "error":
        raise DataError(f"{message}; load the data with duplicates='last' to keep one row per pair")
    log.warning(
        "%s; evaluation leaves them out. Load the data with duplicates='last' to keep one row per "
        "pair, or split with seen_targets='error' to refuse",
        message,
    )
    sp.protocol["targets_in_history"] = found
    return sp


def _restore(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("_row").drop("_row")


def leave_last_out(
    data: Dataset,
    *,
    n_test: int = 1,
    n_valid: int = 1,
    min_train: int = 1,
    seen_targets: SeenTargets = "warn",
) -> Split:
    """Hold out each user's last ``n_test`` interactions (test) and the ``n_valid`` before them.

    Users with fewer than ``n_test + n_valid + min_train`` interactions stay entirely in training.
    """
    if n_test < 1 or n_valid < 0:
        raise DataError(f"leave_last_out needs n_test >= 1 and n_valid >= 0, got {n_test}, {n_valid}")
    df = data.time_ordered()
    df = df.with_columns(
        pl.int_range(pl.len(), 0, -1).over("user_idx").alias("_from_end"),  # 1 = last
        pl.len().over("user_idx").alias("_n"),
    )
    eligible = pl.col("_n") >= n_test + n_valid + min_train
    test = df.filter(eligible & (pl.col("_from_end") <= n_test))
    valid = df.filter(eligible & (pl.col("_from_end") > n_test) & (pl.col("_from_end") <= n_test + n_valid))
    train = df.filter(~eligible | (pl.col("_from_end") > n_test + n_valid))
    drop = ["_from_end", "_n"]
    return _checked(
        Split(
            train=data.with_interactions(_restore(train.drop(drop))),
            test=_restore(test.drop(drop)),
            valid=_restore(valid.drop(drop)) if n_valid else None,
            protocol={
                "name": "leave_last_out",
                "n_test": n_test,
                "n_valid": n_valid,
                "min_train": min_train,
                "tie_break": "file order",
            },
        ),
        seen_targets,
    )


def temporal(
    data: Dataset,
    *,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.0,
    cut: float | None = None,
    seen_targets: SeenTargets = "warn",
) -> Split:
    """One global time cut: the latest ``test_fraction`` of interactions (or those after ``cut``) are test."""
    ts = data.interactions["timestamp"].cast(pl.Float64)
    if cut is None:
        if not 0 < test_fraction < 1:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        cut = float(ts.quantile(1 - test_fraction, interpolation="lower") or 0.0)
    vcut = (
        float(ts.quantile(max(1 - test_fraction - valid_fraction, 0.0), interpolation="lower") or 0.0)
        if valid_fraction
        else cut
    )
    df = data.interactions.with_row_index("_row")
    t = pl.col("timestamp").cast(pl.Float64)
    test = df.filter(t > cut)
    valid = df.filter((t > vcut) & (t <= cut)) if valid_fraction else None
    train = df.filter(t <= vcut)
    return _checked(
        Split(
            train=data.with_interactions(train.drop("_row")),
            test=test.drop("_row"),
            valid=valid.drop("_row") if valid is not None else None,
            protocol={
                "name": "temporal",
                "cut": cut,
                "valid_cut": vcut,
                "test_fraction": test_fraction,
                "valid_fraction": valid_fraction,
            },
        ),
        seen_targets,
    )


def random_split(
    data: Dataset,
    *,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.0,
    seed: int = 42,
    seen_targets: SeenTargets = "warn",
) -> Split:
    """Per user, a seeded random ``test_fraction`` (and ``valid_fraction``) of interactions held out."""
    if not 0 < test_fraction < 1 or not 0 <= valid_fraction < 1 - test_fraction:
        raise DataError(f"bad fractions test={test_fraction} valid={valid_fraction}")
    rng = np.random.default_rng(seed)
    df = data.interactions.with_row_index("_row").with_columns(
        pl.Series("_r", rng.random(data.n_interactions))
    )
    df = df.with_columns(
        (pl.col("_r").rank("ordinal").over("user_idx") / pl.len().over("user_idx")).alias("_q"),
        pl.len().over("user_idx").alias("_n"),
    )
    eligible = pl.col("_n") >= 2
    test = df.filter(eligible & (pl.col("_q") > 1 - test_fraction))
    valid = df.filter(
        eligible & (pl.col("_q") > 1 - test_fraction - valid_fraction) & (pl.col("_q") <= 1 - test_fraction)
    )
    train = df.filter(~eligible | (pl.col("_q") <= 1 - test_fraction - valid_fraction))
    drop = ["_row", "_r", "_q", "_n"]
    return _checked(
        Split(
            train=data.with_interactions(train.sort("_row").drop(drop)),
            test=test.sort("_row").drop(drop),
            valid=valid.sort("_row").drop(drop) if valid_fraction else None,
            protocol={
                "name": "random",
                "test_fraction": test_fraction,
                "valid_fraction": valid_fraction,
                "seed": seed,
            },
        ),
        seen_targets,
    )


def cold_item(
    data: Dataset,
    *,
    item_fraction: float = 0.1,
    valid_fraction: float = 0.0,
    seed: int = 42,
    seen_targets: SeenTargets = "warn",
) -> Split:
    """Hold out every interaction of a seeded random ``item_fraction`` of the interacted items.

    With ``valid_fraction`` a second, disjoint set of items forms a cold validation set.
    """
    items = np.unique(data.interactions["item_idx"].to_numpy())
    rng = np.random.default_rng(seed)
    perm = rng.permutation(items)
    n_test = max(1, round(item_fraction * len(items)))
    n_valid = round(valid_fraction * len(items))
    test_items = perm[:n_test]
    valid_items = perm[n_test : n_test + n_valid]
    df = data.interactions
    is_test = pl.col("item_idx").is_in(test_items.tolist())
    is_valid = pl.col("item_idx").is_in(valid_items.tolist())
    return _checked(
        Split(
            train=data.with_interactions(df.filter(~is_test & ~is_valid)),
            test=df.filter(is_test),
            valid=df.filter(is_valid) if n_valid else None,
            protocol={
                "name": "cold_item",
                "item_fraction": item_fraction,
                "valid_fraction": valid_fraction,
                "seed": seed,
                "n_cold_items": int(n_test),
            },
        ),
        seen_targets,
    )


def cold_user(
    data: Dataset,
    *,
    user_fraction: float = 0.1,
    history_fraction: float = 0.5,
    seed: int = 42,
    seen_targets: SeenTargets = "warn",
) -> Split:
    """Remove a seeded random ``user_fraction`` of users from training.

    For each of them the earliest ``history_fraction`` of interactions (at least one) is revealed at
    query time (``test_history``) and the rest are the targets.
    """
    users = np.unique(data.interactions["user_idx"].to_numpy())
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(users)[: max(1, round(user_fraction * len(users)))]
    df = data.time_ordered()
    is_cold = pl.col("user_idx").is_in(chosen.tolist())
    cold = df.filter(is_cold).with_columns(
        pl.int_range(pl.len()).over("user_idx").alias("_pos"), pl.len().over("user_idx").alias("_n")
    )
    n_hist = pl.max_horizontal(pl.lit(1), (pl.col("_n") * history_fraction).floor().cast(pl.Int64))
    hist = cold.filter(pl.col("_pos") < n_hist).drop(["_pos", "_n"])
    test = cold.filter(pl.col("_pos") >= n_hist).drop(["_pos", "_n"])
    return _checked(
        Split(
            train=data.with_interactions(_restore(df.filter(~is_cold))),
            test=_restore(test),
            test_history=_restore(hist),
            protocol={
                "name": "cold_user",
                "user_fraction": user_fraction,
                "history_fraction": history_fraction,
                "seed": seed,
                "n_cold_users": len(chosen),
            },
        ),
        seen_targets,
    )


def split_function(protocol: str) -> Callable[..., Split]:
    """The function behind a protocol name (:data:`PROTOCOLS`)."""
    funcs: dict[str, Callable[..., Split]] = {
        "leave_last_out": leave_last_out,
        "temporal": temporal,
        "random": random_split,
        "cold_item": cold_item,
        "cold_user": cold_user,
    }
    if protocol not in funcs:
        raise DataError(f"unknown split protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return funcs[protocol]


def split(data: Dataset, protocol: str = "leave_last_out", **params: Any) -> Split:
    """Dispatch by protocol name (used by the CLI and configs)."""
    func = split_function(protocol)
    try:
        inspect.signature(func).bind(data, **params)
    except TypeError as exc:
        raise DataError(f"split protocol {protocol!r}: {exc}") from None
    return func(data, **params)


# ---------------------------------------------------------------------------------------- validation data
@dataclass
class ValidationData:
    """Held-out interactions for early stopping: one row per validation user."""

    #: internal user indices, unique, ascending
    users: np.ndarray
    #: (len(users), n_items) CSR of each user's held-out items
    targets: sp.csr_matrix

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, data: Dataset) -> ValidationData:
        """From a frame with ``user_idx``/``item_idx`` (or ``user_id``/``item_id``) columns."""
        if {"user_idx", "item_idx"} <= set(frame.columns):
            u = frame["user_idx"].to_numpy().astype(np.int64)
            i = frame["item_idx"].to_numpy().astype(np.int64)
        elif {"user_id", "item_id"} <= set(frame.columns):
            u = data.user_vocab.indices(frame["user_id"].to_list())
            i = data.item_vocab.indices(frame["item_id"].to_list())
        else:
            raise DataError(
                f"validation frame needs user_idx/item_idx or user_id/item_id columns, got {frame.columns}"
            )
        if len(u) == 0:
            raise DataError("validation frame is empty")
        users, row = np.unique(u, return_inverse=True)
        targets = sp.csr_matrix(
            (np.ones(len(u), np.float32), (row, i)), shape=(len(users), data.n_items), dtype=np.float32
        )
        targets.sum_duplicates()
        targets.data[:] = 1.0
        return cls(users=users, targets=targets)

    def __len__(self) -> int:
        return len(self.users)


def holdout_last(
    data: Dataset, fraction: float, *, seed: int = 42, min_interactions: int = 3
) -> tuple[Dataset, pl.DataFrame]:
    """Remove the last interaction (by time, ties by file order) of a seeded ``fraction`` of users.

    Only users with at least ``min_interactions`` events are eligible, so nobody loses their whole
    history. Returns (training data without those rows, the held-out rows).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"val_fraction must be in (0, 1], got {fraction}")
    df = data.interactions.with_row_index("_row")
    counts = df.group_by("user_idx").len()
    eligible = np.sort(counts.filter(pl.col("len") >= min_interactions)["user_idx"].to_numpy())
    if len(eligible) == 0:
        return data, df.head(0).drop("_row")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=max(1, round(fraction * len(eligible))), replace=False)
    last_rows = (
        df.filter(pl.col("user_idx").is_in(chosen.tolist()))
        .sort(["user_idx", "timestamp", "_row"])
        .group_by("user_idx", maintain_order=True)
        .last()["_row"]
    )
    is_held = pl.col("_row").is_in(last_rows.to_list())
    train = df.filter(~is_held).drop("_row")
    held = df.filter(is_held).drop("_row")
    return data.with_interactions(train), held


def split_validation(
    data: Dataset, valid: pl.DataFrame | None, val_fraction: float, *, seed: int = 42
) -> tuple[Dataset, ValidationData | None]:
    """The shared rule for early-stopping data of neural models.

    ``valid`` (held-out interactions, e.g. ``Split.valid``) is used as given (an empty frame: no
    validation). Without it, ``val_fraction > 0`` holds out the *last* interaction of that seeded
    fraction of users from ``data`` (:func:`holdout_last`: leak-free, it only uses training data).
    With neither, there is no validation data. Returns (training data, validation data or None).
    """
    if valid is not None:
        if valid.height == 0:
            return data, None
        return data, ValidationData.from_frame(valid, data)
    if val_fraction > 0:
        train, held = holdout_last(data, val_fraction, seed=seed)
        if held.height == 0:
            return data, None
        return train, ValidationData.from_frame(held, data)
    return data, None
