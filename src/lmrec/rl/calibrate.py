"""Building the simulator from real logs and a fitted base model, and calibrating its dynamics.

The protocol (``benchmarks/longterm.py`` runs it on ml-100k):

1. **Split.** Users are split at random into *fit*, *validation* and *test* groups
   (:func:`user_groups`). Each user's time line is cut at 80% (:func:`time_split`): the first part is
   the training history (base model and simulator history), the rest is held out.
2. **Base model.** Any model with user and item vectors (``query_vectors``/``item_vectors``, e.g.
   ALS) trained on the training histories; :func:`world_from_model` takes its vectors, the
   training popularity and each user's top-``pool_size`` unseen items.
3. **Click model** (:func:`click_rows`): a held-out interaction is a positive; negatives are drawn
   from the catalogue by popularity (stand-ins for items shown and passed over, which MovieLens does
   not log). Features are computed from the history *before* the event. Fitted on fit users, its
   AUC is reported on test users. The level of the click rate is an assumption (one positive per
   ``n_neg`` negatives), since MovieLens records no impressions.
4. **Session statistics** (:func:`real_sessions`): a session is a run of a user's events with gaps
   of at most ``gap`` seconds (30 min); its length is truncated at the horizon. One simulated step
   stands for one logged interaction. The repetitiveness threshold is the 75th percentile of the
   cosine between consecutive items of real sessions (fit users), so "near-repeat rate" (share of
   consecutive pairs above it) is 25% on fit users by construction and is checked on test users.
5. **Dynamics** (:func:`calibrate_dynamics`): a grid over ``loss_noclick``, ``loss_repeat``,
   ``leave_base``, ``leave_slope`` and ``leave_spread``; the configuration whose simulated session lengths (fit
   users, logging policy) are closest to the real ones in Wasserstein-1 distance wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import ks_2samp, wasserstein_distance

from lmrec.nn.click import roc_auc
from lmrec.rl.simulator import ClickModel, DynamicsConfig, Simulator, World, click_features
from lmrec.rl.state import HistoryEncoder


def user_groups(
    n_users: int, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> list[np.ndarray]:
    """Disjoint random groups of user indices with the given shares."""
    perm = np.random.default_rng(seed).permutation(n_users)
    cuts = np.round(np.cumsum(fractions)[:-1] * n_users).astype(int)
    return [np.sort(g) for g in np.split(perm, cuts)]


def time_split(interactions: pl.DataFrame, frac: float = 0.8) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each user's first ``frac`` of events (by timestamp) and the rest."""
    df = interactions.sort(["user_idx", "timestamp", "item_idx"]).with_columns(
        pl.int_range(pl.len()).over("user_idx").alias("_pos"), pl.len().over("user_idx").alias("_n")
    )
    cut = (pl.col("_n") * frac).ceil()
    train = df.filter(pl.col("_pos") < cut).drop("_pos", "_n")
    held = df.filter(pl.col("_pos") >= cut).drop("_pos", "_n")
    return train, held


def real_sessions(interactions: pl.DataFrame, gap: float = 1800.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Session lengths and each session's item indices, splitting a user's events at gaps > ``gap`` s."""
    df = interactions.sort(["user_idx", "timestamp", "item_idx"])
    u = df["user_idx"].to_numpy()
    t = df["timestamp"].to_numpy()
    items = df["item_idx"].to_numpy()
    new = np.r_[True, (u[1:] != u[:-1]) | (np.diff(t) > gap)]
    starts = np.flatnonzero(new)
    sessions = np.split(items, starts[1:])
    return np.array([len(s) for s in sessions]), sessions


def consecutive_cosines(sessions: list[np.ndarray], item_unit: np.ndarray) -> np.ndarray:
    """Cosine between each pair of consecutive items within sessions."""
    pairs = [np.einsum("nd,nd->n", item_unit[s[:-1]], item_unit[s[1:]]) for s in sessions if len(s) > 1]
    return np.concatenate(pairs) if pairs else np.zeros(0)


@dataclass
class BaseVectors:
    """What the simulator takes from a base model, in the model's item indices."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray


def vectors_from_model(model: Any, user_ids: Sequence[Any]) -> BaseVectors:
    """User and item vectors of a fitted embedding model (ALS, BPR, two-tower, SASRec...).

    The user vector is the model's query vector for the known user (its training history); any
    model exposing ``encode_queries``/``query_vectors``/``item_vectors`` plugs in.
    """
    from lmrec.models.query import Query

    batch = model.encode_queries([Query(user_id=u) for u in user_ids])
    return BaseVectors(
        user_vectors=np.asarray(model.query_vectors(batch), dtype=np.float64),
        item_vectors=np.asarray(model.item_vectors(), dtype=np.float64),
    )


def build_world(
    vectors: BaseVectors,
    histories: list[np.ndarray],
    popularity: np.ndarray,
    click_model: ClickModel | None,
    *,
    pool_size: int = 100,
) -> World:
    """A :class:`World` whose pools are each user's top-``pool_size`` items outside their history."""
    scores = vectors.user_vectors @ vectors.item_vectors.T
    for u, h in enumerate(histories):
        scores[u, h] = -np.inf
    pools = np.argsort(-scores, axis=1, kind="stable")[:, :pool_size]
    placeholder = ClickModel(np.zeros(4), 0.0, np.zeros(4), np.ones(4))
    return World(
        item_vectors=vectors.item_vectors,
        popularity=popularity,
        user_vectors=vectors.user_vectors,
        histories=histories,
        pools=pools,
        pool_scores=np.take_along_axis(scores, pools, 1),
        click_model=click_model or placeholder,
    )


def click_rows(
    world: World,
    held_out: list[np.ndarray],
    users: np.ndarray,
    *,
    history_len: int = 10,
    n_neg: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Click-model training rows: each held-out event of ``users`` against ``n_neg`` popularity-sampled
    negatives, features from the history just before the event. Returns ``(X (m, 4), y (m,))``."""
    rng = np.random.default_rng(seed)
    pop = np.asarray(world.popularity, dtype=np.float64) + 1.0
    pop /= pop.sum()
    cands, hists, users_of = [], [], []
    for u in users:
        seq = np.concatenate([world.histories[u], held_out[u]])
        start = len(world.histories[u])
        seen = set(seq.tolist())
        for j in range(start, len(seq)):
            neg = rng.choice(len(pop), size=3 * n_neg, p=pop)
            neg = np.array([i for i in neg if i not in seen][:n_neg])
            if len(neg) < n_neg:
                continue
            h = np.full(history_len, -1)
            prev = seq[max(0, j - history_len) : j]
            if len(prev):
                h[-len(prev) :] = prev
            cands.append(np.r_[seq[j], neg])
            hists.append(h)
            users_of.append(u)
    c = np.array(cands)
    h = np.array(hists)
    uv = world.user_vectors[np.array(users_of)]
    base = np.einsum("md,mkd->mk", uv, world.item_vectors[c])
    f = click_features(base, world.log_pop[c], world.item_unit[c], world.item_unit[np.maximum(h, 0)], h >= 0)
    y = np.zeros(c.shape)
    y[:, 0] = 1.0
    return f.reshape(-1, f.shape[-1]), y.ravel()


def simulate_sessions(
    sim: Simulator,
    policy: Any,
    users: np.ndarray,
    rng: np.random.Generator,
    *,
    repeat_threshold: float,
    batch_size: int = 512,
) -> tuple[np.ndarray, float, float]:
    """Session lengths (steps before leaving), near-repeat rate of consecutive clicked items, and
    CTR under ``policy``."""
    lengths, rep_hits, rep_pairs, clicks, shown = [], 0, 0, 0.0, 0.0
    for s in range(0, len(users), batch_size):
        u = users[s : s + batch_size]
        obs = sim.reset(u, rng)
        length = np.zeros(len(u))
        last = np.full(len(u), -1)
        while not sim.done:
            a, _ = policy.act(obs, rng)
            res = sim.step(a, obs)
            rows = np.arange(len(u))
            item = obs.items[rows, a[rows, np.maximum(res.clicked_slot, 0)]]
            clicked = res.click > 0
            both = clicked & (last >= 0)
            if both.any():
                cos = np.einsum("nd,nd->n", sim.world.item_unit[item[both]], sim.world.item_unit[last[both]])
                rep_hits += int((cos > repeat_threshold).sum())
                rep_pairs += int(both.sum())
            last = np.where(clicked, item, last)
            length += obs.alive
            clicks += res.click[obs.alive].sum()
            shown += obs.alive.sum()
            obs = sim.observe()
        lengths.append(length)
    return np.concatenate(lengths), rep_hits / max(rep_pairs, 1), clicks / max(shown, 1)


DEFAULT_GRID: dict[str, Sequence[float]] = {
    "loss_noclick": (0.02, 0.1),
    "loss_repeat": (0.5, 2.0),
    "leave_base": (0.02, 0.05, 0.15),
    "leave_slope": (0.05, 0.2),
    "leave_spread": (1.0, 2.0, 3.0),
}


def calibrate_dynamics(
    world: World,
    users: np.ndarray,
    real_lengths: np.ndarray,
    policy: Any,
    base: DynamicsConfig,
    *,
    grid: dict[str, Sequence[float]] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[DynamicsConfig, list[dict[str, Any]]]:
    """The grid point whose simulated session lengths are closest (Wasserstein-1) to ``real_lengths``
    (already truncated at the horizon). Returns it and every point's distance."""
    from tqdm.auto import tqdm

    grid = grid or DEFAULT_GRID
    keys = list(grid)
    table = []
    best: tuple[float, DynamicsConfig] | None = None
    for values in tqdm(list(itertools.product(*grid.values())), desc="calibrate", disable=not progress):
        cfg = base.model_copy(update=dict(zip(keys, values, strict=True)))
        lengths, _, _ = simulate_sessions(
            Simulator(world, cfg), policy, users, np.random.default_rng(seed), repeat_threshold=1.0
        )
        d = float(wasserstein_distance(lengths, real_lengths))
        table.append({**dict(zip(keys, values, strict=True)), "w1": d, "mean_length": float(lengths.mean())})
        if best is None or d < best[0]:
            best = (d, cfg)
    assert best is not None
    return best[1], table


HISTOGRAM_BINS = [1, 2, 6, 11, 21, 50, 51]
HISTOGRAM_LABELS = ["1", "2-5", "6-10", "11-20", "21-49", "50"]


def length_histogram(lengths: np.ndarray, horizon: int) -> list[float]:
    """Shares of sessions in :data:`HISTOGRAM_LABELS` bins (lengths truncated at ``horizon``)."""
    bins = [b for b in HISTOGRAM_BINS if b <= horizon] + [horizon + 1]
    h, _ = np.histogram(np.minimum(lengths, horizon), bins=sorted(set(bins)))
    return (h / max(h.sum(), 1)).round(3).tolist()


@dataclass
class FittedSimulator:
    """A calibrated simulator: its world and dynamics, the user groups, the base model, the report."""

    world: World
    dynamics: DynamicsConfig
    #: (fit, validation, test) user indices
    groups: tuple[np.ndarray, np.ndarray, np.ndarray]
    model: Any
    report: dict[str, Any]


def _per_user(frame: pl.DataFrame, n_users: int) -> list[np.ndarray]:
    out: list[list[int]] = [[] for _ in range(n_users)]
    for u, i in zip(frame["user_idx"].to_numpy(), frame["item_idx"].to_numpy(), strict=True):
        out[u].append(int(i))
    return [np.asarray(x, dtype=np.int64) for x in out]


def fit_simulator(
    data: Any,
    *,
    model: Any = None,
    horizon: int = 50,
    pool_size: int = 100,
    gap: float = 1800.0,
    grid: dict[str, Sequence[float]] | None = None,
    seed: int = 0,
    max_group_users: int | None = None,
    slate_size: int = 1,
    encode_state: bool | None = None,
    state_len: int = 50,
    calibration_users: int | None = None,
    progress: bool = False,
) -> FittedSimulator:
    """The whole protocol of this module's docstring on a :class:`~lmrec.data.dataset.Dataset`.

    ``model``: a fitted embedding model to use as the base (its item vocabulary must be the
    dataset's); default ALS with 32 factors fitted here on the training part of the time split.
    A model fitted on *all* interactions has seen the held-out events, so the click-model AUC
    it reports is optimistic. ``max_group_users`` keeps only that many users per group (smoke runs).
    ``slate_size``: items per step (the pool grows to ``horizon·slate_size + 20``).
    ``encode_state``: re-encode each simulated history with ``model`` at every step (the state from
    the sequence encoder, :mod:`lmrec.rl.state`); None turns it on for sequence models (SASRec,
    BERT4Rec, UniSRec); ``state_len`` newest items are encoded. ``calibration_users``: the dynamics
    grid simulates a seeded sample of that many fit users (all of them by default; each grid point
    is a full simulation, so this bounds the calibration time).
    """
    from lmrec.rl.policies import SoftmaxBasePolicy

    train, held = time_split(data.interactions)
    n_users, n_items = data.n_users, data.n_items
    fit_u, valid_u, test_u = (g[:max_group_users] for g in user_groups(n_users, seed=seed))
    if model is None:
        from lmrec.models.mf import ALS, ALSConfig

        model = ALS(ALSConfig.model_validate({"factors": 32, "num_threads": 1, "seed": seed})).fit(
            data.with_interactions(train)
        )
    if list(model.item_vocab.ids) != list(data.item_vocab.ids):
        raise ValueError(
            "the base model's item vocabulary differs from the dataset's; fit it on this dataset"
        )
    if encode_state is None:
        from lmrec.models.sasrec import SequentialRecommender

        encode_state = isinstance(model, SequentialRecommender)
    pool_size = max(pool_size, horizon * slate_size + 20)
    histories, held_lists = _per_user(train, n_users), _per_user(held, n_users)
    encoder = HistoryEncoder(model, max_len=state_len) if encode_state else None
    if encoder is not None:
        # the session-start state is the encoder's reading of the training history
        vec = BaseVectors(user_vectors=encoder.encode(histories), item_vectors=encoder.item_vectors)
    else:
        vec = vectors_from_model(model, data.user_vocab.ids)
    pop = np.bincount(train["item_idx"].to_numpy(), minlength=n_items)
    world = build_world(vec, histories, pop, None, pool_size=pool_size)
    world.encoder = encoder
    Xf, yf = click_rows(world, held_lists, fit_u, seed=seed)
    world.click_model = ClickModel.fit(Xf, yf)
    Xt, yt = click_rows(world, held_lists, test_u, seed=seed + 1)
    click_report = {
        "auc_test": roc_auc(yt, world.click_model.logits(Xt)),
        "auc_test_base_score_only": roc_auc(yt, Xt[:, 0]),
        "auc_fit": roc_auc(yf, world.click_model.logits(Xf)),
        "n_fit_rows": len(yf),
        "n_test_rows": len(yt),
        "weights": dict(
            zip(
                ["base_score", "log_popularity", "hist_max_cos", "hist_mean_cos"],
                world.click_model.weights.round(3).tolist(),
                strict=True,
            )
        ),
    }

    def group_sessions(users: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        return real_sessions(data.interactions.filter(pl.col("user_idx").is_in(users.tolist())), gap)

    fit_len, fit_sess = group_sessions(fit_u)
    test_len, test_sess = group_sessions(test_u)
    threshold = float(np.quantile(consecutive_cosines(fit_sess, world.item_unit), 0.75))
    logging = SoftmaxBasePolicy(temperature=1.0, epsilon=0.1)
    base = DynamicsConfig(
        horizon=horizon, pool_size=pool_size, repeat_threshold=threshold, slate_size=slate_size
    )
    cal_u = fit_u
    if calibration_users is not None and calibration_users < len(fit_u):
        cal_u = np.sort(np.random.default_rng(seed).choice(fit_u, calibration_users, replace=False))
    calibrated, table = calibrate_dynamics(
        world, cal_u, np.minimum(fit_len, horizon), logging, base, grid=grid, seed=seed, progress=progress
    )
    sim_len, sim_rep, sim_ctr = simulate_sessions(
        Simulator(world, calibrated),
        logging,
        np.repeat(test_u, 5),
        np.random.default_rng(seed + 7),
        repeat_threshold=threshold,
    )
    test_cos = consecutive_cosines(test_sess, world.item_unit)
    real_trunc = np.minimum(test_len, horizon)
    calibration = {
        "session_gap_s": gap,
        "repeat_threshold": threshold,
        "chosen": calibrated.model_dump(),
        "state_encoder": type(model).__name__ if world.encoder is not None else None,
        "grid_best_w1_fit": min(r["w1"] for r in table),
        "grid_points": len(table),
        "calibration_users": len(cal_u),
        "test_real_mean_length": float(real_trunc.mean()),
        "test_sim_mean_length": float(sim_len.mean()),
        "test_w1": float(wasserstein_distance(sim_len, real_trunc)),
        "test_ks": float(ks_2samp(sim_len, real_trunc).statistic),
        "bins": HISTOGRAM_LABELS,
        "test_real_hist": length_histogram(real_trunc, horizon),
        "test_sim_hist": length_histogram(sim_len, horizon),
        "test_real_near_repeat_rate": float((test_cos > threshold).mean()),
        "test_sim_near_repeat_rate": sim_rep,
        "logging_policy_ctr": sim_ctr,
    }
    return FittedSimulator(
        world=world,
        dynamics=calibrated,
        groups=(fit_u, valid_u, test_u),
        model=model,
        report={"click_model": click_report, "calibration": calibration},
    )


__all__ = [
    "DEFAULT_GRID",
    "BaseVectors",
    "FittedSimulator",
    "build_world",
    "calibrate_dynamics",
    "click_rows",
    "consecutive_cosines",
    "fit_simulator",
    "length_histogram",
    "real_sessions",
    "simulate_sessions",
    "time_split",
    "user_groups",
    "vectors_from_model",
]
