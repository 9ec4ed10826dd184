"""Which process of a distributed job this is, without importing torch.

``lmrec train`` under DDP runs once per process (``torchrun`` starts them, or Lightning re-runs the
command line for each extra device); every process fits, but only global rank 0 may write the
artifact, or two processes would race to replace the same folder. Before the process group
exists the launcher's environment tells (torchrun: ``RANK``; Lightning's launcher: ``LOCAL_RANK``
and ``NODE_RANK`` of its children); after ``fit`` the process group itself does.
"""

from __future__ import annotations

import os
import sys

__all__ = ["barrier", "is_global_zero"]


def _group() -> object | None:
    # torch.distributed only when something already imported it: a plain EASE run stays torch-free
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def is_global_zero() -> bool:
    """Whether this process writes artifacts and prints results (rank 0, or not distributed)."""
    dist = _group()
    if dist is not None:
        return int(dist.get_rank()) == 0  # type: ignore[attr-defined]
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    # Lightning's launcher gives its children LOCAL_RANK (and NODE_RANK), not RANK
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def barrier() -> None:
    """Wait for every process of the job (a no-op when not distributed)."""
    dist = _group()
    if dist is not None:
        dist.barrier()  # type: ignore[attr-defined]
