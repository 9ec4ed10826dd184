"""Long-term reward on a simulator calibrated on ml-100k: RL policies vs the greedy base model.

Protocol (details in :mod:`lmrec.rl.calibrate`):

* users split 60/20/20 into fit / validation / test (seed 0); each user's first 80% of events train
  the base model and form the simulated history; the rest is held out. The base model is SASRec
  (``--base sasrec``, the default; epochs by early stopping on 10% of users' last training event),
  which is also the *sequence encoder*: every simulated click is appended to the history and the
  history re-encoded, so the candidates, the greedy baseline and the policies' ``seq_score`` /
  ``seq_drift`` features follow the session (``--base als``: ALS with 32 factors, static scores);
* every step shows a slate of ``--slate-size`` items (default 3); the user scans it top-down and
  clicks at most one (cascade); the REINFORCE top-K correction uses K = the slate size and DQN
  values a slate as the mean of its items' Q (slate-Q decomposition);
* click model: logistic on [base score, log popularity, max/mean cosine to the last 10 items],
  fitted on fit users' held-out events (4 popularity-sampled negatives each), AUC on test users;
* dynamics: grid-searched so that simulated session lengths under the logging policy (softmax over
  base scores, T=1, ε=0.1) match real ml-100k sessions (30-min gap, truncated at 50) on fit users
  (the grid simulates a seeded sample of 300 of them; the real lengths are all fit users');
  reported against test users' real sessions;
* policies: greedy (base model's top item), LinUCB and Thompson (lmrec.bandits defaults, learning
  online during evaluation), DQN (trained online in the simulator on fit users), off-policy
  REINFORCE with the top-K correction (trained on logging-policy sessions of fit users). RL
  hyperparameters are chosen on validation users with a separate simulator seed; test users and the
  evaluation seeds are used for the reported numbers only;
* evaluation: 50-step sessions, every test user ``--sessions`` times, 3 seeds (each seed retrains the
  RL policies and reseeds the simulator); 95% CI = t-interval over the 3 seed means. The robustness
  simulator changes parameters no policy was trained or selected on (repetition loss ×1.5, leave
  slope ×1.5, click logits −0.3, repetition threshold −0.05);
* OPE: logging-policy sessions of one item per step (off-policy estimators of a single decision) on
  test users; IPS / SNIPS / DR estimates (bootstrap 95% CI) of each
  target policy's per-decision click rate on the logged states, against the simulator's exact value
  ``mean Σ_a π(a|x)·P(click|x,a)`` on the same states.

    python benchmarks/longterm.py [--data-dir ../shared/data] [--seeds 0,1,2] [--sessions 5]
        [--base sasrec|als] [--slate-size 3] [--out-dir benchmarks/results/longterm] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from lmrec.bandits import LinearThompson, LinUCB
from lmrec.data.loaders.load import load_dataset
from lmrec.rl.calibrate import fit_simulator
from lmrec.rl.learners import DQNConfig, ReinforceConfig, train_dqn, train_reinforce
from lmrec.rl.ope import estimate, fit_reward_model
from lmrec.rl.policies import (
    BanditPolicy,
    GreedyPolicy,
    MyopicPolicy,
    SoftmaxBasePolicy,
    SoftmaxPolicy,
    UniformPolicy,
    rollout,
)
from lmrec.rl.simulator import DynamicsConfig, Simulator, World

HORIZON = 50
#: fit users the dynamics grid simulates (a seeded sample; all 566 took ~4 of the 20 minutes)
CALIBRATION_USERS = 300
LOGGING = SoftmaxBasePolicy(temperature=1.0, epsilon=0.1)


def base_model(data: Any, kind: str, seed: int, quick: bool) -> Any:
    """The base model fitted on the training part of the time split (None: fit_simulator's ALS)."""
    if kind == "als":
        return None
    from lmrec.models.sasrec import SASRec
    from lmrec.rl.calibrate import time_split

    train, _ = time_split(data.interactions)
    cfg = {"max_epochs": 2 if quick else 40, "seed": seed, "progress_bar": False}
    return SASRec(val_fraction=0.1, train=cfg).fit(data.with_interactions(train))


def build(data_dir: str | None, quick: bool, base: str, slate_size: int) -> dict[str, Any]:
    """Base model, world, click model, calibrated dynamics and the calibration report."""
    grid = None
    if quick:
        grid = {
            "loss_noclick": (0.05,),
            "loss_repeat": (1.0,),
            "leave_base": (0.02, 0.05),
            "leave_slope": (0.1,),
            "leave_spread": (1.0, 2.0),
        }
    data = load_dataset("ml-100k", data_dir)
    model = base_model(data, base, 0, quick)
    fitted = fit_simulator(
        data,
        model=model,
        horizon=HORIZON,
        grid=grid,
        slate_size=slate_size,
        max_group_users=80 if quick else None,
        calibration_users=CALIBRATION_USERS,
        progress=True,
    )
    report = getattr(model, "report_", None)
    return {
        "base_epochs": getattr(report, "n_epochs", None),
        "world": fitted.world,
        "dynamics": fitted.dynamics,
        "groups": fitted.groups,
        "click_model": fitted.report["click_model"],
        "calibration": fitted.report["calibration"],
    }


def robust_variant(cfg: DynamicsConfig) -> DynamicsConfig:
    return cfg.model_copy(
        update={
            "loss_repeat": cfg.loss_repeat * 1.5,
            "leave_slope": min(1.0, cfg.leave_slope * 1.5),
            "click_shift": cfg.click_shift - 0.3,
            "repeat_threshold": cfg.repeat_threshold - 0.05,
        }
    )


def train_policies(
    world: World, dyn: DynamicsConfig, fit_u: np.ndarray, seed: int, dqn: DQNConfig, rf: ReinforceConfig
) -> dict[str, Any]:
    sim = Simulator(world, dyn)
    q = train_dqn(sim, fit_u, dqn.model_copy(update={"seed": seed}))
    logs = rollout(sim, LOGGING, np.repeat(fit_u, 4), np.random.default_rng(100 + seed), record=True)
    pi = train_reinforce(logs["trajectories"], rf.model_copy(update={"seed": seed}))
    return {"dqn": q, "reinforce": pi}


def bandits(world: World, seed: int) -> dict[str, Any]:
    dim = 1 + world.item_vectors.shape[1]
    return {
        "linucb": BanditPolicy(LinUCB(dim, seed=seed), world.item_vectors),
        "thompson": BanditPolicy(LinearThompson(dim, seed=seed), world.item_vectors),
    }


def select(
    world: World, dyn: DynamicsConfig, fit_u: np.ndarray, valid_u: np.ndarray, quick: bool
) -> dict[str, Any]:
    """RL hyperparameters by validation reward (validation users, simulator seed 999)."""
    sim = Simulator(world, dyn)
    users = np.repeat(valid_u, 2)
    choices: dict[str, Any] = {"dqn": [], "reinforce": []}
    gammas = (0.9,) if quick else (0.9, 0.97)
    dqn_grid = [DQNConfig(gamma=g, iterations=5 if quick else 25) for g in gammas]
    rf_grid = [ReinforceConfig(gamma=g, epochs=3 if quick else 20, minibatch=8192) for g in gammas]
    logs = rollout(sim, LOGGING, np.repeat(fit_u, 4), np.random.default_rng(50), record=True)["trajectories"]
    best = {}
    for name, grid in (("dqn", dqn_grid), ("reinforce", rf_grid)):
        scored = []
        for cfg in tqdm(grid, desc=f"select {name}"):
            pol = train_dqn(sim, fit_u, cfg) if name == "dqn" else train_reinforce(logs, cfg)
            v = float(rollout(sim, pol, users, np.random.default_rng(999))["reward"].mean())
            scored.append((v, cfg))
            choices[name].append({"config": cfg.model_dump(), "valid_reward": v})
        best[name] = max(scored, key=lambda s: s[0])[1]
    greedy_v = float(rollout(sim, GreedyPolicy(), users, np.random.default_rng(999))["reward"].mean())
    return {"dqn": best["dqn"], "reinforce": best["reinforce"], "table": choices, "valid_greedy": greedy_v}


def ci(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=np.float64)
    m = float(a.mean())
    if len(a) < 2:
        return m, m, m
    h = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return m, m - h, m + h


def ope_check(
    world: World, dyn: DynamicsConfig, test_u: np.ndarray, policies: dict[str, Any], seed: int
) -> list[dict[str, Any]]:
    sim = Simulator(world, dyn.model_copy(update={"slate_size": 1}))
    tr = rollout(sim, LOGGING, np.repeat(test_u, 3), np.random.default_rng(500 + seed), record=True)[
        "trajectories"
    ]
    alive = tr.alive.astype(bool)
    # rebuild Observations of the logged states to ask each target policy for its probabilities
    from lmrec.rl.simulator import Observation

    n = int(alive.sum())
    obs = Observation(
        items=np.zeros((n, dyn.n_candidates), dtype=np.int64),
        base_scores=tr.cand[alive][..., 0],
        cand_feats=tr.cand[alive],
        state_feats=tr.state[alive],
        alive=np.ones(n, dtype=bool),
        click_prob=tr.click_prob[alive],
    )
    a, prop, r = tr.action[alive][:, 0], tr.propensity[alive][:, 0], tr.click[alive]
    q = fit_reward_model(obs.cand_feats, a, r, seed=seed)
    rows = []
    for name, pol in policies.items():
        target = pol.probabilities(obs)
        truth = float((target * obs.click_prob).sum(1).mean())
        est = estimate(target, a, prop, r, q=q, n_boot=200, seed=seed)
        rows.append(
            {
                "policy": name,
                "truth": truth,
                **{k: e.as_dict() for k, e in est.items()},
                "dr_covers": est["dr"].covers(truth),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("LMREC_DATA_HOME"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sessions", type=int, default=5, help="sessions per test user per seed")
    ap.add_argument("--out-dir", default="benchmarks/results/longterm")
    ap.add_argument("--base", choices=("sasrec", "als"), default="sasrec", help="base model / state encoder")
    ap.add_argument("--slate-size", type=int, default=3, help="items shown per step")
    ap.add_argument("--quick", action="store_true", help="small grids and few iterations (smoke run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    built = build(args.data_dir, args.quick, args.base, args.slate_size)
    world, dyn = built["world"], built["dynamics"]
    fit_u, valid_u, test_u = built["groups"]
    t_build = time.perf_counter() - t0
    chosen = select(world, dyn, fit_u, valid_u, args.quick)
    t_select = time.perf_counter() - t0 - t_build
    variants = {"calibrated": dyn, "robustness": robust_variant(dyn)}
    names = ["greedy", "myopic", "logging", "linucb", "thompson", "dqn", "reinforce"]
    per_seed: dict[str, dict[str, list[dict[str, Any]]]] = {v: {n: [] for n in names} for v in variants}
    ope_rows = []
    eval_users = np.repeat(test_u, args.sessions)
    for seed in tqdm(seeds, desc="seeds"):
        learned = train_policies(world, dyn, fit_u, seed, chosen["dqn"], chosen["reinforce"])
        for vname, vcfg in variants.items():
            sim = Simulator(world, vcfg)
            pols = {
                "greedy": GreedyPolicy(),
                "myopic": MyopicPolicy(),
                "logging": LOGGING,
                **bandits(world, seed),
                **learned,
            }
            for pname in names:
                r = rollout(sim, pols[pname], eval_users, np.random.default_rng(10_000 + seed))
                per_seed[vname][pname].append(
                    {
                        "reward": float(r["reward"].mean()),
                        "clicks": float(r["clicks"].mean()),
                        "length": float(r["length"].mean()),
                        "first_ctr": r["first_ctr"],
                        "curve": np.cumsum(r["reward_curve"]).tolist(),
                    }
                )
        targets = {
            "greedy": GreedyPolicy(),
            "uniform": UniformPolicy(),
            "myopic": MyopicPolicy(),
            "dqn_eps0.1": learned["dqn"].__class__(learned["dqn"].net, learned["dqn"].scaler, epsilon=0.1),
            "reinforce_softmax": SoftmaxPolicy(
                learned["reinforce"].net, learned["reinforce"].scaler, greedy=False
            ),
        }
        ope_rows += [{"seed": seed, **row} for row in ope_check(world, dyn, test_u, targets, seed)]
    summary: dict[str, Any] = {}
    for vname in variants:
        g_rewards = [s["reward"] for s in per_seed[vname]["greedy"]]
        g_ctr = [s["first_ctr"] for s in per_seed[vname]["greedy"]]
        m_rewards = [s["reward"] for s in per_seed[vname]["myopic"]]
        rows = {}
        for pname in names:
            runs = per_seed[vname][pname]
            rew = [s["reward"] for s in runs]
            ratio = [r / g for r, g in zip(rew, g_rewards, strict=True)]
            ctr_ratio = [s["first_ctr"] / g for s, g in zip(runs, g_ctr, strict=True)]
            rows[pname] = {
                "reward": ci(rew),
                "ratio_vs_greedy": ci(ratio),
                # the click-maximiser on the same click model: what is left is the long-term part
                "ratio_vs_myopic": ci([r / m for r, m in zip(rew, m_rewards, strict=True)]),
                "first_ctr": ci([s["first_ctr"] for s in runs]),
                "first_ctr_ratio": ci(ctr_ratio),
                "clicks": ci([s["clicks"] for s in runs]),
                "length": ci([s["length"] for s in runs]),
                "curve": np.mean([s["curve"] for s in runs], axis=0).tolist(),
            }
        summary[vname] = rows
    result = {
        "dataset": "ml-100k",
        "base": args.base,
        "base_epochs": built["base_epochs"],
        "state_encoder": built["calibration"].get("state_encoder"),
        "slate_size": args.slate_size,
        "seeds": seeds,
        "sessions_per_user": args.sessions,
        "n_test_users": len(test_u),
        "click_model": built["click_model"],
        "calibration": built["calibration"],
        "selection": {
            "dqn": chosen["dqn"].model_dump(),
            "reinforce": chosen["reinforce"].model_dump(),
            "table": chosen["table"],
            "valid_greedy": chosen["valid_greedy"],
        },
        "results": summary,
        "per_seed": {
            v: {p: [{k: x for k, x in s.items() if k != "curve"} for s in runs] for p, runs in rows.items()}
            for v, rows in per_seed.items()
        },
        "ope": ope_rows,
        "timing_s": {"build": t_build, "select": t_select, "total": time.perf_counter() - t0},
        "load": os.getloadavg(),
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "longterm.json").write_text(json.dumps(result, indent=1, default=float))
    plot(summary, out / "longterm.png")
    table = markdown(result)
    (out / "longterm.md").write_text(table)
    print(json.dumps({k: v for k, v in result.items() if k != "results"}, default=float)[:4000])
    print(table)
    return result


def fmt(t: tuple[float, float, float], p: int = 2) -> str:
    return f"{t[0]:.{p}f} [{t[1]:.{p}f}, {t[2]:.{p}f}]"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"ml-100k simulator; base model {result['base']} (state encoder: {result['state_encoder']}); "
        f"slate of {result['slate_size']} per step; {result['sessions_per_user']} sessions per test user; "
        f"{result['timing_s']['total']:.0f} s"
    ]
    for vname, rows in result["results"].items():
        lines += [
            f"\n### {vname} simulator (test users, {len(result['seeds'])} seeds, 95% CI)\n",
            "| policy | cumulative reward | × greedy | × myopic | first-step CTR | first CTR / greedy | clicks "
            "| session length |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for pname, r in rows.items():
            lines.append(
                f"| {pname} | {fmt(r['reward'])} | {fmt(r['ratio_vs_greedy'], 3)} | {fmt(r['ratio_vs_myopic'], 3)} "
                f"| {fmt(r['first_ctr'], 3)} | "
                f"{fmt(r['first_ctr_ratio'], 3)} | {fmt(r['clicks'])} | {fmt(r['length'], 1)} |"
            )
    c = result["calibration"]
    lines += [
        "\n### calibration (test users)\n",
        f"click model AUC {result['click_model']['auc_test']:.3f} (base score alone {result['click_model']['auc_test_base_score_only']:.3f}); "
        f"session length real {c['test_real_mean_length']:.1f} vs simulated {c['test_sim_mean_length']:.1f} "
        f"(W1 {c['test_w1']:.2f}, KS {c['test_ks']:.3f}); near-repeat rate real {c['test_real_near_repeat_rate']:.3f} "
        f"vs simulated {c['test_sim_near_repeat_rate']:.3f}",
        "",
        "| length bin | " + " | ".join(c["bins"]) + " |",
        "|---|" + "---|" * len(c["bins"]),
        "| real | " + " | ".join(f"{x:.3f}" for x in c["test_real_hist"]) + " |",
        "| simulated | " + " | ".join(f"{x:.3f}" for x in c["test_sim_hist"]) + " |",
        "\n### OPE: per-decision click rate on logging-policy sessions (test users)\n",
        "| seed | policy | truth | IPS | SNIPS | DR | DR covers |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["ope"]:
        ests = " | ".join(
            f"{r[k]['value']:.4f} [{r[k]['ci_low']:.4f}, {r[k]['ci_high']:.4f}]"
            for k in ("ips", "snips", "dr")
        )
        lines.append(f"| {r['seed']} | {r['policy']} | {r['truth']:.4f} | {ests} | {r['dr_covers']} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4), squeeze=False)
    for ax, (vname, rows) in zip(axes[0], summary.items(), strict=True):
        for pname, r in rows.items():
            ax.plot(np.arange(1, len(r["curve"]) + 1), r["curve"], label=pname)
        ax.set_title(f"{vname} simulator")
        ax.set_xlabel("step")
        ax.set_ylabel("cumulative reward per session")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
