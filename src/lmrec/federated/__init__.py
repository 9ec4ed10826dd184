"""Federated training with differential privacy: user data never leaves its client.

Built on Flower (``flwr``: ``ServerApp``/``ClientApp`` and its simulation engine) and Opacus
(DP-SGD and its RDP accountant); install with ``pip install 'lmrec[federated]'``.

* :func:`partition_users`: cross-silo (hash, occupation, zip prefix, any user column) or
  cross-device (one client per user) partitions (no Flower needed).
* :class:`FedMF` (registered as ``fed_mf``): federated BPR-MF whose artifact is a normal lmrec model.
* :class:`FedTwoTower` (``fed_two_tower``): a shared text item tower, user vectors kept local; its
  artifact is a BPR item table as well, plus the tower that places new items from their text.
* :func:`simulate`: the Flower simulation behind it, with the per-round :class:`RoundLog`.

The Flower-backed names are imported on first use, so partitions work without the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmrec.federated.config import FedMFConfig, FedTwoTowerConfig
from lmrec.federated.partition import partition_users

if TYPE_CHECKING:
    from lmrec.federated.clients import ClientData, client_data
    from lmrec.federated.model import FedMF, FedTwoTower
    from lmrec.federated.server import FederatedRun, RoundLog
    from lmrec.federated.simulation import simulate

_LAZY = {
    "FedMF": "lmrec.federated.model",
    "FedTwoTower": "lmrec.federated.model",
    "ClientData": "lmrec.federated.clients",
    "FederatedRun": "lmrec.federated.server",
    "RoundLog": "lmrec.federated.server",
    "client_data": "lmrec.federated.clients",
    "simulate": "lmrec.federated.simulation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmrec.federated' has no attribute {name!r}")


__all__ = [
    "ClientData",
    "FedMF",
    "FedMFConfig",
    "FedTwoTower",
    "FedTwoTowerConfig",
    "FederatedRun",
    "RoundLog",
    "client_data",
    "partition_users",
    "simulate",
]
