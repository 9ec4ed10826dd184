"""Matrix factorisation through the ``implicit`` library: ALS and BPR.

ALS trains on implicit's CUDA solver when one is usable (``use_gpu=None``, the default, means "when
``implicit.gpu.HAS_CUDA``": implicit's PyPI wheel carries the CUDA extension and needs ``rmm-cu13``
and a GPU at run time); the factors come back to the CPU after the fit, and every fold-in, query and
saved artifact is the same as after a CPU fit. BPR always trains on the CPU.

Both models learn item factors with ``implicit`` and then treat a *user vector as a function of the
user's history*: every query (known user, known user with new events, unseen user) gets its vector
by "folding in" its history against the fixed item factors. That makes one code path serve all
query kinds without retraining, makes a known user and an unseen user with the same history
indistinguishable, and means events added with ``add_interactions`` count at once. At test time in
leave-last-out evaluation every user carries the validation item as extra history, so the fold-in is
what is being evaluated anyway.

* **ALS** (Hu, Koren & Volinsky 2008): the fold-in is the exact ALS user step, a ridge regression
  with confidence weights, solved by implicit's own ``recalculate_user`` (Cholesky per user).
* **BPR** (Rendle et al. 2009): implicit has no fold-in for BPR. A least-squares fold-in on BPR's item
  factors ranks poorly, because BPR's item space is trained for pairwise logits, not for reconstructing
  0/1. So we solve the user's own BPR problem: maximise ``mean log σ(u·(v_i − v_j)) − λ/2 |u|²`` over
  pairs of a history item ``i`` and a sampled non-history item ``j``, item factors fixed. It is
  concave in ``u``, so a few Newton steps solve it (~8 ms per user). Validation NDCG@10 on ml-100k
  leave-last-out (tuned defaults; 64 factors, lr .01, 100 epochs in brackets): SGD-trained user factors .051
  (.059), least-squares fold-in .033 (.031), Newton fold-in .073 (.070): the fold-in beats the trained
  factors because SGD leaves the user factors under-converged. The negatives come from a generator
  seeded by the config seed and the history itself, so a query's vector does not depend on the batch
  it is in.

``implicit`` warns when OpenBLAS runs its own thread pool (it slows its solvers badly); we construct
and fit inside ``threadpoolctl.threadpool_limits(1, "blas")``, which both fixes the cause and keeps the
warning from firing. implicit is imported at module level on purpose: a BLAS library that is first
loaded *inside* the ``threadpool_limits`` block is not limited by it.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from pydantic import Field
from threadpoolctl import threadpool_limits

from lmrec._threads import single_blas_thread
from lmrec.data.dataset import Dataset
from lmrec.models.base import EmbeddingRecommender, ModelConfig, QueryBatch


class _MFConfig(ModelConfig):
    """Defaults of ALS and BPR: best validation NDCG@10 on ml-100k leave-last-out (benchmarks/tune_cf.py)."""

    #: latent dimensions
    factors: int = Field(32, ge=1)
    #: L2 penalty (implicit's ``regularization``)
    regularization: float = Field(0.01, ge=0.0)
    #: training epochs (ALS sweeps or BPR passes over the data)
    iterations: int = Field(15, ge=1)
    #: use 1/0 interactions instead of the ``weight`` column
    binary: bool = True
    #: seeds the factor initialisation (and BPR's sampling)
    seed: int = 42
    #: implicit's threads; 0 means every core
    num_threads: int = Field(0, ge=0)
    #: show implicit's tqdm progress bar while fitting
    progress: bool = False


class _ImplicitMF(EmbeddingRecommender):
    """Shared parts: matrix preparation, fitting under a BLAS thread limit, persistence."""

    config: _MFConfig
    supports = frozenset({"user", "history"})

    def _make(self) -> Any:
        raise NotImplementedError

    def _matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        if self.config.binary:
            m.data[:] = 1.0
        return m

    def _fit(self, data: Dataset) -> None:
        x = self._matrix(data.csr("binary" if self.config.binary else "weight"))
        self.popularity_ = data.item_popularity().astype(np.float32)
        self.item_factors_ = np.ascontiguousarray(self._train(x), dtype=np.float32)
        self._after_fit()

    def _train(self, x: sp.csr_matrix) -> np.ndarray:
        """implicit's CPU fit on the user x item matrix; the item factors."""
        with threadpool_limits(1, "blas"):
            model = self._make()
            model.fit(x, show_progress=self.config.progress)
        return np.asarray(model.item_factors)

    def _after_fit(self) -> None:
        """Hook for derived state that is rebuilt after fit and load (not persisted)."""

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _score(self, batch: QueryBatch) -> np.ndarray:
        scores = np.asarray(super()._score(batch), dtype=np.float32)
        empty = np.diff(batch.history.indptr) == 0
        if empty.any():  # nothing personal to go on: the popular items
            scores[empty] = self.popularity_[None, :]
        return scores

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors_, "popularity": self.popularity_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.item_factors_ = tensors["item_factors"]
        self.popularity_ = tensors["popularity"]
        self._after_fit()


class ALSConfig(_MFConfig):
    #: confidence scaling: an observed interaction of weight w has confidence alpha * w
    alpha: float = Field(1.0, gt=0.0)
    #: conjugate-gradient solver during training (faster; fold-in is always exact Cholesky)
    use_cg: bool = True
    #: train on implicit's CUDA solver: None = when implicit reports a usable GPU, True = require it
    #: (an error names what is missing), False = never. The GPU solver always uses conjugate gradient.
    use_gpu: bool | None = None


def _gpu_als_unavailable() -> str | None:
    """Why implicit's CUDA ALS cannot run here, or None when it can."""
    # implicit.gpu warns at import when its extension cannot load (no GPU, an rmm it was not built
    # against); the reason belongs in our answer, not in a warning on every ALS construction
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import implicit.gpu
    if not implicit.gpu.HAS_RMM:
        return "implicit's GPU solver needs the rmm-cu13 package (pip install rmm-cu13)"
    if not implicit.gpu.HAS_CUDA:
        why = "; ".join(str(w.message) for w in caught) or "no usable CUDA device or extension"
        return f"implicit cannot use the GPU ({why})"
    return None


class ALS(_ImplicitMF):
    """Implicit-feedback ALS (implicit's ``AlternatingLeastSquares``); user vectors folded in exactly."""

    name = "als"
    Config = ALSConfig
    config: ALSConfig

    def on_gpu(self) -> bool:
        """Whether ``fit`` trains on implicit's CUDA solver (see ``ALSConfig.use_gpu``)."""
        if self.config.use_gpu is False:
            return False
        why = _gpu_als_unavailable()
        if why is not None and self.config.use_gpu:
            raise RuntimeError(f"ALS use_gpu=True, but {why}; set use_gpu to None or False")
        return why is None

    def _train(self, x: sp.csr_matrix) -> np.ndarray:
        if not self.on_gpu():
            return super()._train(x)
        from implicit.gpu.als import AlternatingLeastSquares as GpuALS

        c = self.config
        model = GpuALS(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            random_state=c.seed,
            dtype=np.float32,
        )
        model.fit(x, show_progress=c.progress)
        return np.asarray(model.to_cpu().item_factors)

    def _make(self, num_threads: int | None = None) -> Any:
        c = self.config
        return AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            use_cg=c.use_cg,
            num_threads=c.num_threads if num_threads is None else num_threads,
            random_state=c.seed,
            dtype=np.float32,
        )

    def _after_fit(self) -> None:
        # an implicit model holding only the item factors: its recalculate_user is the ALS user step.
        # One thread: a fold-in is a small solve per user, and thread start-up dominated it (15 ms vs
        # 1.2 ms per single-user query when serving).
        with threadpool_limits(1, "blas"):
            self._solver = self._make(num_threads=1)
        self._solver.item_factors = self.item_factors_

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        h = self._matrix(batch.history)
        if len(batch) == 0:
            return np.zeros((0, self.item_factors_.shape[1]), np.float32)
        with single_blas_thread():  # per request: threadpool_limits itself costs ~4 ms
            u = self._solver.recalculate_user(np.arange(len(batch)), h)
        return np.asarray(u, dtype=np.float32).reshape(len(batch), -1)


class BPRConfig(_MFConfig):
    iterations: int = Field(200, ge=1)
    #: SGD step size
    learning_rate: float = Field(0.05, gt=0.0)
    #: implicit runs BPR "hogwild" across threads, which is not reproducible; 1 keeps fits exact
    num_threads: int = Field(1, ge=0)
    #: fold-in: negatives sampled per history item
    fold_in_negatives: int = Field(10, ge=1)
    #: fold-in: at most this many Newton steps
    fold_in_steps: int = Field(10, ge=1)


class BPR(_ImplicitMF):
    """Bayesian Personalised Ranking (implicit's CPU ``BayesianPersonalizedRanking``).

    implicit stores an item bias in the last item-factor column and a constant 1 in the last user
    column; the fold-in keeps that convention.
    """

    name = "bpr"
    Config = BPRConfig
    config: BPRConfig

    def _make(self) -> Any:
        c = self.config
        return BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            num_threads=c.num_threads,
            random_state=c.seed,
            verify_negative_samples=True,
            dtype=np.float32,
        )

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        v = self.item_factors_.astype(np.float64)
        dim = v.shape[1]
        out = np.zeros((len(batch), dim), np.float32)
        out[:, -1] = 1.0  # the item-bias column
        h = batch.history
        # many small BLAS calls: a BLAS thread pool only adds synchronisation (10x slower when the
        # machine is busy), so run them single-threaded
        with single_blas_thread():
            for q in range(len(batch)):
                row = h.indices[h.indptr[q] : h.indptr[q + 1]]
                pos = np.unique(row[h.data[h.indptr[q] : h.indptr[q + 1]] > 0])
                if len(pos):
                    out[q, :-1] = self._fold_in(v, pos)
        return out

    def _fold_in(self, v: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Newton's method on one user's BPR objective with the item factors held fixed."""
        c = self.config
        n_items, dim = v.shape
        mask = np.ones(n_items, bool)
        mask[pos] = False
        negatives = np.flatnonzero(mask)
        f = dim - 1
        if len(negatives) == 0:
            return np.zeros(f)
        # seeded by the history itself, so the vector does not depend on batch composition
        rng = np.random.default_rng([c.seed, zlib.crc32(pos.astype(np.int64).tobytes()), len(pos)])
        neg = negatives[rng.integers(0, len(negatives), size=len(pos) * c.fold_in_negatives)]
        i = np.repeat(pos, c.fold_in_negatives)
        d = v[i] - v[neg]
        diff, offset = d[:, :-1], d[:, -1]  # factor differences, item-bias differences
        n_pairs = len(i)
        lam = max(c.regularization, 1e-6)
        w = np.zeros(f)
        for _ in range(c.fold_in_steps):
            x = diff @ w + offset
            s = 0.5 * (1.0 - np.tanh(0.5 * x))  # σ(-x), overflow-free
            grad = diff.T @ s / n_pairs - lam * w
            hess = (diff.T * (s * (1.0 - s))) @ diff / n_pairs + lam * np.eye(f)
            step = np.linalg.solve(hess, grad)
            w += step
            if np.abs(step).max() < 1e-6 * (1.0 + np.abs(w).max()):
                break
        return w
