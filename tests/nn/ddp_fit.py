"""Run by tests/nn/test_distributed.py: fit a tiny two-tower under DDP, one JSON per rank.

``python tests/nn/ddp_fit.py OUT`` with ``strategy="ddp", devices=2``: Lightning's launcher
re-runs this script for rank 1. Each rank writes ``OUT/rank<r>.json`` with its report, a digest of
its weights and its top-1 list, so the test can compare the ranks.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from lmrec.models.two_tower import TwoTower
from lmrec.testing import make_checkerboard

torch.set_num_threads(1)

#: the checkerboard fit of tests/models/test_two_tower.py, on two CPU processes through gloo
PARAMS = {
    "dim": 16,
    "n_heads": 2,
    "n_layers": 1,
    "max_len": 12,
    "dropout": 0.0,
    "encoder": "hashing",
    "shuffle_prob": 0.5,
    "val_fraction": 0.2,
    "train": {
        "max_epochs": 4,
        "batch_size": 16,
        "lr": 1e-2,
        "progress_bar": False,
        "accelerator": "cpu",
        "strategy": "ddp",
        "devices": 2,
        "process_group_backend": "gloo",
    },
}


def main(out: Path) -> None:
    data = make_checkerboard(n_users=100, n_items=20)
    model = TwoTower(PARAMS).fit(data)
    assert model.net is not None and model.report_ is not None
    state = model.net.state_dict()
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    recs = model.recommend(list(range(data.n_users)), k=1)
    rank = model.report_.global_rank
    result = {"report": model.report_.to_dict(), "digest": digest, "top1": recs["item_id"].to_list()}
    (out / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
