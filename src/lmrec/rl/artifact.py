"""Saving and loading a trained RL policy: safetensors for the network, JSON for everything else.

The folder holds ``policy.safetensors`` (network weights and the input scaler) and
``rl_policy.json``: the algorithm, the network width, the simulator's dynamics and click model
(serving recomputes the same candidate features with them) and the training report. No pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from lmrec._atomic import atomic_directory
from lmrec.errors import LmrecError
from lmrec.rl.policies import QPolicy, Scaler, ScoredPolicy, SoftmaxPolicy, make_net
from lmrec.rl.simulator import CANDIDATE_FEATURES, STATE_FEATURES, ClickModel, DynamicsConfig

WEIGHTS = "policy.safetensors"
META = "rl_policy.json"
KINDS = {"dqn": QPolicy, "reinforce": SoftmaxPolicy}


def save_policy(
    policy: ScoredPolicy,
    path: str | os.PathLike[str],
    *,
    kind: str,
    hidden: int,
    dynamics: DynamicsConfig,
    click_model: ClickModel,
    report: dict[str, Any] | None = None,
) -> Path:
    """Write ``policy`` to the folder ``path`` (replaced atomically if it is an lmrec artifact)."""
    from lmrec import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown RL policy kind {kind!r}; available: {', '.join(KINDS)}")
    meta = {
        "lmrec_version": __version__,
        "kind": kind,
        "hidden": hidden,
        "state_features": list(STATE_FEATURES),
        "candidate_features": list(CANDIDATE_FEATURES),
        "dynamics": dynamics.model_dump(),
        "click_model": click_model.to_json(),
        "report": report or {},
    }
    with atomic_directory(path, "rl") as tmp:
        save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps(meta, indent=1, default=float), encoding="utf-8")
    return Path(path)


def load_policy(path: str | os.PathLike[str]) -> tuple[ScoredPolicy, dict[str, Any]]:
    """The policy saved by :func:`save_policy` and its metadata (``dynamics`` and ``click_model``
    come back as :class:`DynamicsConfig` and :class:`ClickModel`)."""
    folder = Path(path)
    meta_path = folder / META
    if not meta_path.is_file():
        raise LmrecError(f"{meta_path} not found: {folder} is not a policy written by `lmrec rl train`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("kind") not in KINDS:
        raise LmrecError(f"{meta_path}: unknown policy kind {meta.get('kind')!r}")
    if meta["state_features"] != list(STATE_FEATURES) or meta["candidate_features"] != list(
        CANDIDATE_FEATURES
    ):
        raise LmrecError(f"{meta_path}: saved with other features than this lmrec computes")
    tensors = load_file(str(folder / WEIGHTS))
    net = make_net(int(meta["hidden"]), 0)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    scaler = Scaler(
        mean=tensors["scaler.mean"].numpy().astype(np.float64),
        std=tensors["scaler.std"].numpy().astype(np.float64),
    )
    policy: ScoredPolicy = KINDS[meta["kind"]](net, scaler)
    meta["dynamics"] = DynamicsConfig(**meta["dynamics"])
    meta["click_model"] = ClickModel.from_json(meta["click_model"])
    return policy, meta


__all__ = ["KINDS", "META", "WEIGHTS", "load_policy", "save_policy"]
