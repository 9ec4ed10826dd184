"""Inspection of what federated clients send: shared by the FedMF and fed_two_tower simulation tests."""

from __future__ import annotations

import numpy as np
from flwr.app import RecordDict

from lmrec.data.split import Split
from lmrec.federated import client_data, partition_users
from lmrec.federated.clients import ClientData

#: the only numbers a client may send: its record count and aggregate statistics
ALLOWED_METRICS = {"num-examples", "loss", "epsilon", "ndcg"}


def leaks(content: RecordDict, clients: list[ClientData], shape: tuple[int, int]) -> list[str]:
    """What in a message the server received is not the shared item parameters (one float32
    ``items`` array of ``shape``) or an allowed aggregate."""
    problems = []
    if content.config_records:
        problems.append(f"config records {list(content.config_records)}")
    for name, rec in content.array_records.items():
        for key, arr in rec.items():
            a = arr.numpy()
            if key != "items" or a.shape != shape or a.dtype != np.float32:
                problems.append(f"array {name}.{key} {a.dtype}{list(a.shape)}")
    counts = {c.n_records for c in clients} | {len(c.users) for c in clients}
    for rec in content.metric_records.values():
        extra = set(rec) - ALLOWED_METRICS
        if extra:
            problems.append(f"metrics {sorted(extra)}")
        n = rec.get("num-examples")
        if not isinstance(n, (int, float)) or n not in counts:
            problems.append(f"num-examples {n!r}")
    return problems


def hashed_clients(split: Split, seed: int) -> list[ClientData]:
    """The two clients' data as the simulation tests' ``partition="hash"`` fit made them."""
    inter = split.train.interactions
    owner = partition_users(split.train, "hash", 2, seed=seed)
    return client_data(owner, inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy())
