"""The configs of federated MF (``fed_mf``) and federated two-tower (``fed_two_tower``): model,
federation, strategy and privacy settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmrec.models.mf import BPRConfig
from lmrec.text.profiles import ProfileConfig


class FedMFConfig(BPRConfig):
    """Federated BPR-MF. The model fields are BPR's (the artifact *is* a BPR model: item factors with
    a bias column, user vectors folded in from history); ``iterations`` counts federated rounds.

    Defaults: the local training chosen on ml-100k leave-last-out validation NDCG@10 of the central
    model (benchmarks/federated_tune.py; the grid is in docs/federated.md). For non-IID silos the
    validation winner was ``strategy="fedavgm", server_momentum=0.9``; for cross-device (one client per
    user) ``strategy="fedavgm", server_learning_rate=10, batch_size=64, local_epochs=5``. Weight decay
    stays 0 by default: 1e-5 helped the central and silo runs (the benchmark sets it), but with Adam
    it moves every row a full step, which wrecked the cross-device run.
    """

    #: federated rounds
    iterations: int = Field(40, ge=1)
    #: local step size (on the batch-mean loss)
    learning_rate: float = Field(0.006, gt=0.0)
    #: local optimiser; Adam's moments start afresh every round (they are not sent)
    local_optimizer: Literal["adam", "sgd"] = "adam"
    #: local weight decay on every factor
    weight_decay: float = Field(0.0, ge=0.0)
    #: λ of the serving-time fold-in (BPR's Newton step), not a training penalty
    regularization: float = Field(0.1, ge=0.0)
    #: local epochs over the client's records per round
    local_epochs: int = Field(1, ge=1)
    #: local batch size (DP: expected Poisson batch size)
    batch_size: int = Field(1024, ge=1)
    #: number of clients (cross-silo); ignored when ``partition == "user"`` (one client per user)
    clients: int = Field(10, ge=1)
    #: how users are split over clients: "hash", "user" (cross-device), "occupation", "zip" (first
    #: character of ``zip_code``) or the name of any column of the dataset's user table
    partition: str = "hash"
    #: share of clients sampled for training each round (cross-device: 0.1)
    fraction: float = Field(1.0, gt=0.0, le=1.0)
    #: Flower strategy: FedAvg, FedAvgM (server step size and momentum on the averaged update),
    #: FedProx (with ``proximal_mu``) or FedAdam (server-side Adam)
    strategy: Literal["fedavg", "fedavgm", "fedprox", "fedadam"] = "fedavg"
    #: FedProx's μ
    proximal_mu: float = Field(0.01, ge=0.0)
    #: server step size η on the averaged update: FedAvgM's ``server_learning_rate`` (None: 1.0),
    #: FedAdam's ``eta`` (None: 0.01). With K silos each client takes ~1/K of central's local steps
    #: per round, and η > 1 makes up for it without the client drift of more local epochs
    server_learning_rate: float | None = Field(None, gt=0.0)
    #: FedAvgM's server momentum
    server_momentum: float = Field(0.0, ge=0.0, lt=1.0)
    #: differential privacy: "record" = DP-SGD on each client (Opacus); "client" = Flower's
    #: server-side fixed clipping + Gaussian noise on each client's update (user-level when one
    #: client is one user)
    dp: Literal["none", "record", "client"] = "none"
    #: where ``dp="client"`` clips each client's update: "server" (Flower's
    #: ``DifferentialPrivacyServerSideFixedClipping``: the server sees every update) or "client"
    #: (``DifferentialPrivacyClientSideFixedClipping`` + ``fixedclipping_mod``: each client clips its
    #: own; the only one that works with ``secagg``). Same clipping, noise and ε either way
    dp_clipping: Literal["server", "client"] = "server"
    #: target ε over all rounds (Opacus picks the noise multiplier); or give ``noise_multiplier``
    dp_epsilon: float | None = Field(None, gt=0.0)
    #: Gaussian noise multiplier (σ / clipping norm); overrides ``dp_epsilon``
    noise_multiplier: float | None = Field(None, ge=0.0)
    #: clipping norm: per record ("record") or per client update ("client")
    max_grad_norm: float = Field(1.0, gt=0.0)
    #: δ of the reported ε; None: 1 / number of users
    dp_delta: float | None = Field(None, gt=0.0, lt=1.0)
    #: secure aggregation with Flower's SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``): the
    #: server learns only the weighted sum of the sampled clients' item tables, never one client's
    secagg: bool = False
    #: SecAgg+ clipping range R: each client clips ``(weight / max_weight) * entry`` to [-R, R] before
    #: quantising. Flower's default 8 kept: the largest |entry| of the plain silo run's tables stays
    #: far below it, and validation NDCG@10 with SecAgg+ matched the plain run (docs/federated.md)
    secagg_clipping_range: float = Field(8.0, gt=0.0)
    #: SecAgg+ quantisation levels Q (Flower's default 2**22): quantisation step 2R/Q ≈ 3.8e-6 at R = 8
    secagg_quantization_range: int = Field(2**22, ge=2, lt=2**32)
    #: SecAgg+ shares of each client's secrets: an int > 2, or a share (0, 1] of the sampled clients
    #: (1.0: every sampled client is a neighbour of every other, SecAgg's complete graph; smaller
    #: shares are SecAgg+'s sparse graph, cheaper for cross-device)
    secagg_num_shares: int | float = 1.0
    #: SecAgg+ shares needed to rebuild a secret: an int, or a share (0, 1] of ``secagg_num_shares``.
    #: Above one half, so a server cannot collect enough shares to unmask both a client's mask and
    #: its pairwise keys (Bonawitz et al. 2017); below one, so a neighbour may drop out
    secagg_reconstruction_threshold: int | float = 0.6
    #: SecAgg+ largest client weight (record count); None: the largest client's record count, which
    #: the simulation knows (a deployment agrees on a public cap instead). A client with more records
    #: would overflow the masked sum, so the simulation refuses it
    secagg_max_weight: float | None = Field(None, gt=0.0)
    #: clients evaluate (validation NDCG@10 with their own user factors) every this many rounds and
    #: in the last round; ``RoundLog.valid_ndcg`` is None in the other rounds. Evaluation changes no
    #: client state, so the model is the same; larger values only save the evaluation messages
    evaluate_every: int = Field(1, ge=1)
    #: ray CPUs for the simulated clients (one client runs per CPU)
    simulation_cpus: int = Field(1, ge=1)
    #: address of a running Ray cluster to simulate on (``lmrec.federated.cluster.ray_cluster``);
    #: None: each simulation starts and stops its own (``simulation_cpus`` CPUs)
    ray_address: str | None = None
    #: SGD is the only local optimiser; implicit's thread setting has no meaning here
    num_threads: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _dp_needs_a_budget(self) -> FedMFConfig:
        if self.dp != "none" and self.dp_epsilon is None and self.noise_multiplier is None:
            raise ValueError(f"dp={self.dp!r} needs dp_epsilon or noise_multiplier")
        return self

    @model_validator(mode="after")
    def _secagg_composes(self) -> FedMFConfig:
        """SecAgg+ hides every client's update from the server: whatever needs one cannot work."""
        if not self.secagg:
            return self
        if self.dp == "client" and self.dp_clipping == "server":
            raise ValueError(
                "secagg=True with dp='client' needs dp_clipping='client': under SecAgg+ the server never "
                "sees a client's update, so it cannot clip one (or use dp='record', or secagg=False)"
            )
        if self.evaluate_every != 1:
            raise ValueError(
                f"secagg=True evaluates every round: evaluate_every={self.evaluate_every} needs secagg=False"
            )
        if self.partition != "user" and self.clients < 2:
            raise ValueError(
                "secagg=True needs at least 2 clients (a sum over one client is that client's update)"
            )
        shares, threshold = self.secagg_num_shares, self.secagg_reconstruction_threshold
        if isinstance(shares, int) and not isinstance(shares, bool) and shares <= 2:
            raise ValueError(f"secagg_num_shares={shares}: an int must be > 2 (or give a share in (0, 1])")
        if isinstance(shares, float) and not 0.0 < shares <= 1.0:
            raise ValueError(f"secagg_num_shares={shares}: a float is a share of the clients, in (0, 1]")
        if isinstance(threshold, float) and not 0.0 < threshold <= 1.0:
            raise ValueError(f"secagg_reconstruction_threshold={threshold}: a float is a share, in (0, 1]")
        if isinstance(threshold, int) and isinstance(shares, int) and not 2 <= threshold < shares:
            raise ValueError(
                f"secagg_reconstruction_threshold={threshold}: an int must be in [2, secagg_num_shares={shares})"
            )
        return self


class FedTwoTowerConfig(FedMFConfig):
    """Federated two-tower (``fed_two_tower``): every FedMF field (federation, strategy, privacy,
    local training, the serving-time fold-in) plus the item tower's.

    The item tower is a linear projection of each item's frozen, centrally computed text vector
    (``fusion="text_only"``), optionally plus a per-item ID embedding (``"sum"``, as lmrec's
    two_tower fuses them); see :mod:`lmrec.federated.tower`. The artifact is a BPR item table like
    FedMF's, with the projection kept so that new items are placed from their text.
    """

    #: item tower: "text_only" (projected text; only the projection travels) or "sum" (projected
    #: text + an ID embedding per item; the ID table travels too)
    fusion: Literal["text_only", "sum"] = "sum"
    #: text model: None = the bundled offline all-MiniLM-L6-v2, a sentence-transformers name or local
    #: dir, "hashing" for the model-free test encoder
    encoder: str | None = None
    #: device for the text encoder (None: CUDA when present)
    encoder_device: str | None = None
    #: how item profile texts are built
    profile: ProfileConfig = ProfileConfig()
    #: on-disk embedding cache directory (None: encode every time)
    cache_dir: str | None = None
