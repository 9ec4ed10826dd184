"""Synthetic item vectors with cluster structure, for index benchmarks and tests."""

from __future__ import annotations

import math

import numpy as np


def clustered_vectors(
    n: int,
    dim: int = 64,
    *,
    n_clusters: int = 1000,
    spread: float = 0.35,
    intrinsic_dim: int | None = None,
    seed: int = 0,
    normalize: bool = True,
) -> np.ndarray:
    """A synthetic catalogue with cluster structure, for index benchmarks and tests.

    Real item embeddings are clustered and have a low intrinsic dimension; i.i.d. noise is the
    worst case for graph and IVF indexes and not what a server sees. Without ``intrinsic_dim``,
    points are cluster centres on the unit sphere plus isotropic noise of norm ≈ ``4 · spread``
    (a hard setting: the noise dominates). With ``intrinsic_dim = r``, clusters live in an
    r-dimensional latent space (centres ~ N(0, I), noise ``spread``) mapped linearly into ``dim``
    dimensions plus a little full-rank noise, as sentence and MF embeddings roughly do. The same
    ``seed`` gives the same centres, so queries drawn with it come from the catalogue's clusters.
    """
    rng = np.random.default_rng(seed)
    if intrinsic_dim:
        centres = rng.standard_normal((n_clusters, intrinsic_dim)).astype(np.float32)
        proj = (rng.standard_normal((intrinsic_dim, dim)) / math.sqrt(intrinsic_dim)).astype(np.float32)
    else:
        centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        proj = None
    out = np.empty((n, dim), np.float32)
    step = 200_000
    # a second stream for the points, so that n does not change the centres
    prng = np.random.default_rng([seed, n])
    for start in range(0, n, step):
        m = min(step, n - start)
        assign = prng.integers(0, n_clusters, m)
        if proj is not None:
            latent = centres[assign] + spread * prng.standard_normal((m, centres.shape[1])).astype(np.float32)
            block = latent @ proj + 0.05 * prng.standard_normal((m, dim)).astype(np.float32)
        else:
            noise = prng.standard_normal((m, dim)).astype(np.float32)
            block = centres[assign] + spread * noise / math.sqrt(dim) * 4
        if normalize:
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


__all__ = ["clustered_vectors"]
