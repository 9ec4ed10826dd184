"""Shared Optuna storage for :func:`lmrec.tuning.tune`: opening it, seeding each process's sampler,
and the claim a study keeps of what it tunes (model, metric, fixed parameters, data, split).

Several processes may open, create and claim one study at the same moment: creating the tables is
retried, and a claim another process is still writing is waited for, not read as a mismatch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import optuna

from lmrec.data.split import Split
from lmrec.errors import LmrecError


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for ``url``; SQLite waits for a busy database instead of failing."""
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several processes write one SQLite file: wait up to a minute for its lock
        engine["connect_args"] = {"timeout": 60}
    last: Exception | None = None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except Exception as exc:  # SQLAlchemy's URL, driver and connection errors, all one line
            last = exc
            # processes that open a new database at the same moment race to create its tables;
            # the loser sees a unique-constraint error and finds the tables on a second try
            if "constraint" not in str(exc).lower() and "already exists" not in str(exc).lower():
                break
            time.sleep(0.2 * (attempt + 1))
    reason = " ".join(str(last).split())[:200] or type(last).__name__
    raise LmrecError(f"cannot open the tuning storage {url!r}: {reason}") from None


def worker_seed(seed: int) -> int:
    """``seed`` mixed with this process's id: processes sharing a study must not propose alike."""
    return (seed * 1_000_003 + os.getpid()) % 2**32


def claim_study(
    study: optuna.Study, storage: str, model: str, metric: str, fixed: Mapping[str, Any], split: Split
) -> None:
    """Record what a new shared study tunes, or refuse to join one that tunes something else."""
    want = {
        "lmrec_model": model,
        "lmrec_metric": metric,
        "lmrec_fixed": json.dumps(fixed, sort_keys=True, default=str),
        "lmrec_data": str(split.train.meta.get("source_checksum", split.train.checksum())),
        "lmrec_split": json.dumps(split.protocol, sort_keys=True, default=str),
    }
    have = _settled_claim(study, want)
    if not have:
        for key, value in want.items():
            study.set_user_attr(key, value)
        # two processes may have claimed at once: what the storage holds now is the claim
        have = _settled_claim(study, want)
    for key, value in want.items():
        if have.get(key) != value:
            what = key.removeprefix("lmrec_")
            raise LmrecError(
                f"study {study.study_name!r} in {storage} was created with {what} {have.get(key)!r}, "
                f"this run has {value!r}; join it with the same settings or choose another study name"
            )


def _settled_claim(study: optuna.Study, keys: Mapping[str, Any], wait: float = 30.0) -> dict[str, Any]:
    """The study's user attributes once no claim is half-written: another process claiming the
    study writes its keys one by one, and a process joining in between must not read the missing
    ones as a mismatch (it waits up to ``wait`` seconds for the rest)."""
    deadline = time.monotonic() + wait
    while True:
        have = study.user_attrs
        present = sum(key in have for key in keys)
        if present in (0, len(keys)) or time.monotonic() > deadline:
            return have
        time.sleep(0.05)
