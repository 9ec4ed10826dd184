"""``lmrec rl``: train a long-term-reward policy in a simulator calibrated on a dataset
(a thin wrapper over :func:`lmrec.rl.train.train_policy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmrec.cli._common import print_report, with_errors


def train_command(
    dataset: Annotated[str, typer.Argument(help="A registered dataset (e.g. ml-100k).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the policy (safetensors + JSON).")],
    algo: Annotated[
        str, typer.Option("--algo", help="reinforce (off-policy, top-K corrected) or dqn.")
    ] = "reinforce",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A saved embedding model as the base (default: ALS fitted here); a sequence model "
            "(sasrec, bert4rec, unisrec) also re-encodes the state after every simulated click.",
            exists=True,
        ),
    ] = None,
    slate_size: Annotated[
        int, typer.Option("--slate-size", min=1, help="Items the policy fills per step (a slate).")
    ] = 1,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Dataset home.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    quick: Annotated[bool, typer.Option("--quick", help="Coarse calibration, short training.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Calibrate the user simulator on DATASET, train an RL policy in it and save it to --out.

    The report gives the click model's held-out AUC, simulated against real session lengths, and
    the policy's session reward against the greedy base model on validation users.
    """
    import torch

    from lmrec.data.loaders.load import load_dataset
    from lmrec.errors import LmrecError
    from lmrec.rl.train import train_policy

    if algo not in ("reinforce", "dqn"):
        raise LmrecError(f"--algo must be reinforce or dqn, got {algo!r}")
    torch.set_num_threads(1)
    base = None
    if model is not None:
        from lmrec.models.base import Recommender

        base = Recommender.load(model)
    data = load_dataset(dataset, data_dir)
    trained = train_policy(
        data,
        algo=algo,  # type: ignore[arg-type]
        model=base,
        seed=seed,
        quick=quick,
        slate_size=slate_size,
    )
    trained.save(out)
    r = trained.report
    c = r["calibration"]
    print_report(
        {**r, "out": str(out)},
        "lmrec rl train",
        json_out,
        rows={
            "policy": f"{algo} -> {out}",
            "click model AUC (test users)": f"{r['click_model']['auc_test']:.3f}",
            "session length real / simulated": f"{c['test_real_mean_length']:.1f} / {c['test_sim_mean_length']:.1f}",
            "valid reward policy / greedy": f"{r['valid_reward']:.2f} / {r['valid_greedy_reward']:.2f}",
        },
    )


def build_app() -> typer.Typer:
    group = typer.Typer(
        name="rl", help="Long-term-reward policies.", no_args_is_help=True, add_completion=False
    )
    group.command("train")(with_errors(train_command))
    return group


def register(app: typer.Typer) -> None:
    """Add the ``rl`` command group to the top-level ``lmrec`` app."""
    app.add_typer(build_app(), name="rl")


__all__ = ["build_app", "register"]
