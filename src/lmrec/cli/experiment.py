"""`lmrec train`, `lmrec evaluate`, `lmrec recommend` (`lmrec quickstart`: :mod:`.quickstart`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lmrec.cli._common import parse_value, with_errors
from lmrec.errors import LmrecError

console = Console()

SET_HELP = (
    "Override a config key: ease.l2=300 (a model's parameter, by its label or name), "
    "models.0.params.l2=300, evaluation.ks=[10,20]. Repeatable."
)
DataDir = Annotated[
    str | None, typer.Option("--data-dir", help="Folder holding dataset copies (overrides $LMREC_DATA_HOME).")
]
Sets = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=SET_HELP)]
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset", "-d", metavar="NAME", help="Dataset name (built-in or `lmrec datasets add`ed)."
    ),
]
#: the top-level tables of an experiment config: a ``--set`` key starting otherwise names a model
_TABLES = ("dataset", "split", "models", "evaluation")


def _model_position(models: list[Any], key: str, item: str) -> int:
    """Which entry of ``models`` a ``--set models.<key>...`` names: an index, a label or a name."""
    choices = ", ".join(
        f"{i} ({m.get('label') or m.get('name')})" if isinstance(m, dict) else str(i)
        for i, m in enumerate(models)
    )
    if key.lstrip("-").isdigit():
        i = int(key)
        if not 0 <= i < len(models):
            raise LmrecError(f"--set {item}: there is no model {i}; models: {choices or 'none'}")
        return i
    hits = [i for i, m in enumerate(models) if isinstance(m, dict) and m.get("label") == key]
    hits = hits or [i for i, m in enumerate(models) if isinstance(m, dict) and m.get("name") == key]
    if not hits:
        raise LmrecError(f"--set {item}: no model named {key!r}; models: {choices or 'none'}")
    if len(hits) > 1:
        raise LmrecError(
            f"--set {item}: {len(hits)} models are named {key!r}; give a label or an index: {choices}"
        )
    return hits[0]


def _apply_sets(cfg: Any, sets: list[str] | None) -> Any:
    """Apply ``--set models.ease.params.l2=300`` style overrides to an ExperimentConfig.

    A model is addressed by its label, its name or its index (``models.0``); one that matches
    nothing is an error listing the models, and the result is validated like a config file.
    """
    from lmrec.experiment import ExperimentConfig

    if not sets:
        return cfg
    raw = cfg.model_dump(mode="json")
    for item in sets:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise LmrecError(
                f"--set expects key=value with a dotted key (ease.l2=300, evaluation.ks=[10]), got {item!r}"
            )
        if parts[0] not in _TABLES:  # the short form: ease.l2=300 is models.ease.params.l2=300
            names = {m.get("label") or m.get("name") for m in raw["models"]} | {
                m.get("name") for m in raw["models"]
            }
            if parts[0] not in names:
                raise LmrecError(
                    f"--set {item}: {parts[0]!r} is neither a config table ({', '.join(_TABLES)}) nor a "
                    f"model ({', '.join(sorted(n for n in names if n)) or 'none'})"
                )
            parts = ["models", parts[0], "params", *parts[1:]]
        node: Any = raw
        for depth, p in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = node[_model_position(node, p, item)]
            elif isinstance(node, dict):
                node = node.setdefault(p, {})
            else:
                raise LmrecError(f"--set {item}: {'.'.join(parts[: depth + 1])} is not a table")
        last = parts[-1]
        if isinstance(node, list):
            node[_model_position(node, last, item)] = parse_value(value)
        elif isinstance(node, dict):
            node[last] = parse_value(value)
        else:
            raise LmrecError(f"--set {item}: {'.'.join(parts[:-1])} is not a table")
    return ExperimentConfig.parse(raw, source="--set")


def _shortcuts(
    cfg: Any, dataset: str | None, models: list[str] | None, protocol: str | None, split: str | None
) -> Any:
    """``--dataset``, ``--model`` (repeatable), ``--protocol`` and ``--split`` over a config: a model
    the config already has keeps its parameters; a changed split drops the old split's parameters."""
    from lmrec.data.split import PROTOCOLS
    from lmrec.experiment import ModelSpec, SplitSpec

    update: dict[str, Any] = {}
    if dataset:
        update["dataset"] = cfg.dataset.model_copy(update={"name": dataset})
    if models:
        known = {m.name: m for m in reversed(cfg.models)}
        update["models"] = [known.get(n) or ModelSpec(name=n) for n in dict.fromkeys(models)]
    if protocol is not None:
        if protocol not in ("refit", "train-only"):
            raise LmrecError(f"--protocol {protocol!r}: choose refit or train-only")
        update["evaluation"] = cfg.evaluation.model_copy(update={"protocol": protocol})
    if split is not None:
        try:
            new = SplitSpec(protocol=split)
        except ValueError:
            names = ", ".join(p.replace("_", "-") for p in PROTOCOLS)
            raise LmrecError(f"--split {split!r}: choose one of {names}") from None
        if new.protocol != cfg.split.protocol:
            update["split"] = new
    return cfg.model_copy(update=update) if update else cfg


def _load_config(
    config: Path | None,
    data_dir: str | None,
    sets: list[str] | None,
    *,
    model: str | None = None,
    dataset: str | None = None,
    models: list[str] | None = None,
    protocol: str | None = None,
    split: str | None = None,
) -> Any:
    """The experiment config of a command, with the shortcuts (:func:`_shortcuts`) and ``--set``
    applied and checked before any data is loaded or model fitted (:meth:`ExperimentConfig.check`).
    ``model``: the model ``lmrec train`` fits, added to the models when the config has none of that
    name (so ``--set`` can address it)."""
    from lmrec.experiment import ExperimentConfig, ModelSpec

    cfg = ExperimentConfig.from_toml(config) if config else ExperimentConfig()
    cfg = _shortcuts(cfg, dataset, models, protocol, split)
    if model is not None and not any(m.name == model for m in cfg.models):
        cfg = cfg.model_copy(update={"models": [*cfg.models, ModelSpec(name=model)]})
    cfg = _apply_sets(cfg, sets)
    if data_dir:
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"data_dir": data_dir})})
    if model is not None:  # only the trained model is built: only its parameters must be valid
        i, spec = next((i, m) for i, m in enumerate(cfg.models) if m.name == model)
        spec.check(where=f"models.{i} ({spec.title})")
        cfg.split.check()
        return cfg
    return cfg.check()


def _results_table(results: list[Any], title: str) -> Table:
    table = Table(title=title)
    cols = {
        "recall@10": "Recall@10",
        "ndcg@10": "NDCG@10",
        "mrr@10": "MRR@10",
        "auc": "AUC",
        "coverage@10": "Cov@10",
    }
    table.add_column("model", no_wrap=True)
    for label in cols.values():
        table.add_column(label, justify="right")
    table.add_column("fit s", justify="right")
    for r in results:
        table.add_row(
            r.model,
            *(f"{r.metrics[c]:.4f}" if c in r.metrics else "–" for c in cols),
            f"{r.info.get('fit_seconds', float('nan')):.2f}",
        )
    return table


def evaluate_cmd(
    dataset: DatasetOpt = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="NAME", help="A model to evaluate; repeat for several."),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option("--protocol", metavar="refit|train-only", help="Fit on train + valid, or train only."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="NAME",
            help="leave-last-out (default), temporal, random, cold-item or cold-user.",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Experiment TOML (optional).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write report.md/.html/.json and plots here.")
    ] = None,
    data_dir: DataDir = None,
    set_: Sets = None,
) -> None:
    """Fit models and evaluate them (full ranking, seen items excluded).

    No config file is needed: lmrec evaluate --dataset ml-100k --model ease --model sasrec. With
    --config, the options given override the file.

    Protocol: "refit" (default) fits on train + valid with parameters chosen on validation (`lmrec
    tune`) and tests once; "train-only" fits on the training split only.
    """
    from lmrec.experiment import load_data

    cfg = _load_config(config, data_dir, set_, dataset=dataset, models=model, protocol=protocol, split=split)
    with console.status(f"loading {cfg.dataset.name}"):
        data = load_data(cfg.dataset)
    console.print(f"{data!r}")
    results = run_with_progress(cfg, data, out)
    protocol = (
        results[0].info.get("protocol", cfg.evaluation.protocol) if results else cfg.evaluation.protocol
    )
    console.print(
        _results_table(
            results, f"{data.name} — {cfg.split.protocol} ({cfg.evaluation.phase}, {protocol} protocol)"
        )
    )
    if out:
        console.print(f"report: {out}/report.html (also report.md, report.json and the plots)")


def run_with_progress(cfg: Any, data: Any, out: Path | None) -> list[Any]:
    """``run_experiment`` with a progress line per model (its NDCG@10 as each one finishes)."""
    from lmrec.experiment import run_experiment

    results: list[Any] = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as prog:
        task = prog.add_task("fitting and evaluating", total=len(cfg.models))

        def done(spec: Any, res: Any) -> None:
            results.append(res)
            ndcg = res.metrics.get("ndcg@10", float("nan"))
            prog.update(task, advance=1, description=f"{spec.title}: ndcg@10={ndcg:.4f}")

        run_experiment(cfg, out_dir=out, data=data, on_model=done)
    return results


def train_cmd(
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="Model name.")] = "ease",
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact folder.")] = Path("artifacts/model"),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Experiment TOML (dataset, model parameters).")
    ] = None,
    data_dir: DataDir = None,
    on_split: Annotated[
        bool, typer.Option("--on-split/--on-all", help="Fit on the training split only.")
    ] = False,
    set_: Sets = None,
) -> None:
    """Fit one model and save it (safetensors + JSON) with its item catalogue.

    Neural models train on several processes with --set MODEL.train.strategy=ddp (and
    train.devices, train.num_nodes), started by torchrun or by Lightning; only rank 0 saves.
    """
    from lmrec._distributed import barrier, is_global_zero
    from lmrec.experiment import fit_model, load_data, make_split, save_catalog

    cfg = _load_config(config, data_dir, set_, model=model, dataset=dataset)
    spec = next(m for m in cfg.models if m.name == model)
    out_console = console if is_global_zero() else Console(quiet=True)
    with out_console.status(f"loading {cfg.dataset.name}"):
        data = load_data(cfg.dataset)
    train = make_split(data, cfg.split).train if on_split else data
    with out_console.status(f"fitting {spec.title} on {train.n_interactions} interactions"):
        fitted, secs = fit_model(spec, train)
    # under DDP every rank holds the same weights: one writes, the others wait until it is saved
    if is_global_zero():
        fitted.save(out)
        save_catalog(data, out)
        report = getattr(fitted, "report_", None)
        ranks = f", {report.world_size} processes" if report is not None and report.world_size > 1 else ""
        console.print(f"[green]saved[/] {spec.title} to {out} (fit {secs:.2f}s{ranks})")
    barrier()


def recommend_cmd(
    artifact: Annotated[Path, typer.Argument(help="folder written by `lmrec train`")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="a known user id")] = None,
    history: Annotated[
        str | None, typer.Option("--history", help="comma-separated item ids, oldest first")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", "-t", help="free-text query")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="how many items")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="unknown ids are an error (default: popularity fallback)")
    ] = False,
) -> None:
    """Recommend for a known user, an unseen user's history, free text, or a mix.

    An unknown user gets the most popular items (flagged: ``fallback``) and unknown history items
    are left out, each with a warning on stderr; ``--strict`` makes them an error."""
    import warnings

    from lmrec.cli._common import stderr_console
    from lmrec.errors import UnknownIdWarning
    from lmrec.experiment import load_catalog
    from lmrec.models.base import Query, Recommender

    if user is None and history is None and text is None:
        raise LmrecError("give --user, --history and/or --text")
    if text is not None and not text.strip():
        raise LmrecError("--text is blank: give words to search for, or leave --text out")
    hist = [h.strip() for h in history.split(",") if h.strip()] if history is not None else None
    if hist is not None and not hist:
        raise LmrecError("--history is empty: give comma-separated item ids, oldest first")
    model = Recommender.load(artifact)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownIdWarning)
        recs = model.recommend(Query(user_id=user, history=hist, text=text), k=k, strict=strict)
    for w in caught:
        stderr_console().print(f"warning: {w.message}", markup=False)
    catalog = load_catalog(artifact)
    if catalog is not None and "title" in catalog.columns:
        recs = recs.join(
            catalog.select("item_id", "title").with_columns(catalog["item_id"].cast(recs["item_id"].dtype)),
            on="item_id",
            how="left",
            maintain_order="left",
        )
    if as_json:
        for row in recs.iter_rows(named=True):
            print(json.dumps(row, default=str))
        return
    table = Table(title=f"{model.name}: top {k}")
    for c in ("rank", "item_id", "title", "score"):
        if c in recs.columns:
            table.add_column(c)
    for row in recs.iter_rows(named=True):
        table.add_row(
            *(
                f"{row[c]:.4f}" if c == "score" else str(row[c])
                for c in ("rank", "item_id", "title", "score")
                if c in recs.columns
            )
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(with_errors(evaluate_cmd))
    app.command("train")(with_errors(train_cmd))
    app.command("recommend")(with_errors(recommend_cmd))
