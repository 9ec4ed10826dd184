"""The clients' private data in a simulation: each client's records, and how Ray actors read them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ClientData:
    """One client's private data: its users' records, local user indices ``0 .. n_users - 1``."""

    #: internal (global) indices of the client's users; only used to build the data, never sent
    users: np.ndarray
    #: per record: local user index and item index
    record_users: np.ndarray
    record_items: np.ndarray
    #: held-out validation targets (local user index, item index), possibly empty
    valid_users: np.ndarray
    valid_items: np.ndarray

    @property
    def n_records(self) -> int:
        return len(self.record_users)


def client_data(
    owner: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    valid_users: np.ndarray | None = None,
    valid_items: np.ndarray | None = None,
) -> list[ClientData]:
    """Split records (``users``/``items``: internal indices) over clients by ``owner[user]``."""
    n_clients = int(owner.max()) + 1 if len(owner) else 0
    vu = np.zeros(0, np.int64) if valid_users is None else np.asarray(valid_users, np.int64)
    vi = np.zeros(0, np.int64) if valid_items is None else np.asarray(valid_items, np.int64)
    users = np.asarray(users, np.int64)
    # one stable sort by owner instead of a scan of every record per client (943 clients)
    rec_order = np.argsort(owner[users], kind="stable")
    rec_cuts = np.searchsorted(owner[users][rec_order], np.arange(n_clients + 1))
    val_order = np.argsort(owner[vu], kind="stable")
    val_cuts = np.searchsorted(owner[vu][val_order], np.arange(n_clients + 1))
    user_order = np.argsort(owner, kind="stable")
    user_cuts = np.searchsorted(owner[user_order], np.arange(n_clients + 1))
    local = np.empty(len(owner), np.int64)
    out = []
    for c in range(n_clients):
        mine = user_order[user_cuts[c] : user_cuts[c + 1]]
        local[mine] = np.arange(len(mine))
        r = rec_order[rec_cuts[c] : rec_cuts[c + 1]]
        v = val_order[val_cuts[c] : val_cuts[c + 1]]
        out.append(ClientData(mine, local[users[r]], np.asarray(items[r], np.int64), local[vu[v]], vi[v]))
    return out


_FIELDS = ("users", "record_users", "record_items", "valid_users", "valid_items")


def save_clients(clients: list[ClientData], path: Path) -> None:
    """All clients' arrays in one ``.npz`` (each field concatenated, with per-client offsets)."""
    arrays: dict[str, np.ndarray] = {}
    for f in _FIELDS:
        parts = [np.asarray(getattr(d, f), np.int64) for d in clients]
        arrays[f] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        arrays[f"{f}.offsets"] = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle clashes with **kwds


@functools.lru_cache(maxsize=2)
def load_clients(path: str) -> list[ClientData]:
    """The clients of ``path``, read once per process (a Ray actor serves many messages).

    Flower's Ray backend pickles the ClientApp with every message; a ClientApp that captured the
    data itself would ship every client's records with every message (943 clients: seconds each).
    """
    with np.load(path) as z:
        cols = {f: (z[f], z[f"{f}.offsets"]) for f in _FIELDS}
    n = len(cols["users"][1]) - 1
    return [ClientData(*(v[o[i] : o[i + 1]] for v, o in (cols[f] for f in _FIELDS))) for i in range(n)]
