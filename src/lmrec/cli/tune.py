"""`lmrec tune`: validation-only hyperparameter search; writes an experiment TOML for the refit protocol."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lmrec.cli._common import parse_value, with_errors
from lmrec.errors import LmrecError

console = Console()


def _parse_pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LmrecError(f"{what} expects key=value, got {item!r}")
        out[key] = parse_value(value)
    return out


def _fixed_for(model: str, fixes: dict[str, Any]) -> dict[str, Any]:
    """``--fix sasrec.train.max_epochs=5`` -> ``{"train": {"max_epochs": 5}}`` for sasrec."""
    from lmrec.tuning.spaces import unflatten

    prefix = f"{model}."
    return unflatten({k[len(prefix) :]: v for k, v in fixes.items() if k.startswith(prefix)})


def _study_name(given: str | None, model: str, models: list[str]) -> str | None:
    """``--study-name`` for ``model``: as given for one model, suffixed ``.MODEL`` for several."""
    if given is None:
        return None
    return given if len(models) == 1 else f"{given}.{model}"


def tuned_config_toml(results: list[Any], dataset: str, split: str, split_params: dict[str, Any]) -> str:
    """An experiment TOML (``lmrec evaluate/train --config``) holding the tuned models, refit protocol."""
    from lmrec.experiment import DatasetSpec, EvaluationSpec, ExperimentConfig, ModelSpec, SplitSpec

    cfg = ExperimentConfig(
        dataset=DatasetSpec(name=dataset),
        split=SplitSpec(protocol=split, params=split_params),
        evaluation=EvaluationSpec(ks=[10, 20], phase="test", protocol="refit"),
        models=[ModelSpec(**r.to_model_entry()) for r in results],
    )
    metric = results[0].metric if results else "ndcg@10"
    header = (
        f"# Tuned by `lmrec tune` on {dataset} ({split}): Optuna TPE, scored on the validation phase only\n"
        f"# (best {metric}). Protocol: refit on train + valid with these parameters (neural models: the\n"
        "# epoch count chosen on validation, `epochs_tuned = true`), then test once.\n"
        "#   lmrec evaluate --config THIS.toml      lmrec train --model NAME --config THIS.toml\n\n"
    )
    return header + cfg.to_toml()


def _results_table(results: list[Any], title: str) -> Table:
    from lmrec.tuning import flat_params

    table = Table(title=title)
    metric = results[0].metric if results else "ndcg@10"
    table.add_column("model", no_wrap=True)
    table.add_column(
        f"best valid {metric.replace('ndcg', 'NDCG').replace('recall', 'Recall')}", justify="right"
    )
    table.add_column("params")
    table.add_column("epochs", justify="right")
    table.add_column("trials", justify="right")
    table.add_column("seconds", justify="right")
    for r in results:
        states = r.trials["state"].to_list()
        pruned = states.count("pruned")
        trials = f"{len(states)}" + (f" ({pruned} pruned)" if pruned else "")
        value = f"{r.best_value:.4f}" if math.isfinite(r.best_value) else "–"
        table.add_row(
            r.model,
            value,
            flat_params(r.params),
            "–" if r.epochs is None else str(r.epochs),
            trials,
            f"{r.seconds:.1f}",
        )
    return table


def tune_cmd(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset name (built-in or `lmrec datasets add`ed).")
    ] = "ml-100k",
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="registered model name (repeat for several)")
    ] = None,
    trials: Annotated[int | None, typer.Option("--trials", "-n", help="trials per model")] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="seconds per model (with --trials: whichever ends first)"),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="leave-last-out, temporal, random, cold-item or cold-user.")
    ] = "leave-last-out",
    split_param: Annotated[
        list[str] | None, typer.Option("--split-param", help="split parameter key=value (repeatable)")
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help="validation metric to maximise")] = "ndcg@10",
    seed: Annotated[int, typer.Option("--seed", help="seeds the TPE sampler")] = 0,
    fix: Annotated[
        list[str] | None,
        typer.Option("--fix", help="fix a parameter instead of searching it: MODEL.key=value (repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write the tuned experiment TOML here")
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", help="folder holding dataset copies (overrides $LMREC_DATA_HOME)"),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="shared Optuna storage URL (sqlite:///study.db, postgresql://...): several processes "
            "run trials of one study; --trials is then the study's total",
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option("--study-name", help="study to create or join in --storage (default lmrec-MODEL)"),
    ] = None,
) -> None:
    """Tune models on the validation phase only (Optuna TPE); write a refit-protocol experiment TOML.

    Without --trials or --timeout each model gets 20 trials. Test interactions are never scored: run `lmrec evaluate --config OUT` afterwards to refit on train + valid and test once.

    With --storage sqlite:///study.db --study-name NAME, start the same command in several processes
    (or machines sharing a database): they run the trials of one study together, and each prints
    the study's best so far.
    """
    from lmrec.data.split import PROTOCOLS
    from lmrec.evaluation.metrics import RANKING_METRICS
    from lmrec.experiment import DatasetSpec, SplitSpec, load_data, make_split
    from lmrec.models.registry import check_params, get_model_class
    from lmrec.tuning import tune

    models = model or ["ease"]
    for name in models:
        get_model_class(name)  # unknown names and missing extras fail before any data is loaded
    name_, _, cutoff = metric.partition("@")
    known = (*RANKING_METRICS, "novelty", "coverage", "ild")
    if name_ not in known or not cutoff.isdigit() or int(cutoff) < 1:
        raise LmrecError(f"--metric {metric!r}: use NAME@K with K >= 1 and NAME one of {', '.join(known)}")
    if trials is not None and trials < 1:
        raise LmrecError("--trials must be at least 1")
    if timeout is not None and timeout <= 0:
        raise LmrecError("--timeout must be positive")
    if study_name is not None and storage is None:
        raise LmrecError("--study-name names a study in a shared storage: give --storage too")
    fixes = _parse_pairs(fix, "--fix")
    unknown = {k.split(".")[0] for k in fixes} - set(models)
    if unknown:
        raise LmrecError(f"--fix names model(s) not being tuned: {', '.join(sorted(unknown))}")
    for name in models:  # a bad fixed value fails now, not after the first trials
        check_params(name, _fixed_for(name, fixes), where=f"--fix {name}")
    split_params = _parse_pairs(split_param, "--split-param")
    split = split.strip().replace("-", "_")  # leave-last-out as evaluate spells it
    if split not in PROTOCOLS:
        names = ", ".join(p.replace("_", "-") for p in PROTOCOLS)
        raise LmrecError(f"--split {split!r}: choose one of {names}")
    SplitSpec(protocol=split, params=split_params).check()
    with console.status(f"loading {dataset}"):
        data = load_data(DatasetSpec(name=dataset, data_dir=data_dir))
        sp = make_split(data, SplitSpec(protocol=split, params=split_params))
    console.print(f"{data!r}")
    results = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} trials"),
        TimeElapsedColumn(),
        console=console,
    ) as prog:
        for name in models:
            task = prog.add_task(f"{name}", total=trials)
            best = [-math.inf]

            def on_trial(trial: Any, name: str = name, task: Any = task, best: list[float] = best) -> None:
                if trial.value is not None and trial.value > best[0]:
                    best[0] = trial.value
                shown = f"{best[0]:.4f}" if math.isfinite(best[0]) else "–"
                prog.update(task, advance=1, description=f"{name}: best valid {metric}={shown}")

            res = tune(
                name,
                sp,
                n_trials=trials,
                timeout=timeout,
                metric=metric,
                seed=seed,
                fixed_params=_fixed_for(name, fixes),
                on_trial=on_trial,
                storage=storage,
                study_name=_study_name(study_name, name, models),
            )
            prog.update(task, total=res.n_trials, completed=res.n_trials)
            results.append(res)
    console.print(_results_table(results, f"{data.name} — {split}, tuned on validation ({metric})"))
    if out is not None:
        from lmrec._atomic import atomic_write_text

        atomic_write_text(out, tuned_config_toml(results, dataset, split, split_params))
        console.print(f"wrote {out}: lmrec evaluate --config {out}  (refit on train + valid, then test)")


def register(app: typer.Typer) -> None:
    app.command("tune")(with_errors(tune_cmd))
