"""`lmrec train`, `lmrec evaluate`, `lmrec recommend`, `lmrec quickstart`."""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lmrec.cli._common import parse_value
from lmrec.errors import LmrecError

console = Console()

DataDir = Annotated[
    str | None, typer.Option("--data-dir", help="folder holding dataset copies (overrides $LMREC_DATA_HOME)")
]


def _apply_sets(cfg: Any, sets: list[str] | None) -> Any:
    """Apply ``--set models.0.params.k=50`` style overrides to an ExperimentConfig."""
    from lmrec.experiment import ExperimentConfig

    if not sets:
        return cfg
    raw = cfg.model_dump(mode="json")
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise LmrecError(f"--set expects key=value, got {item!r}")
        node: Any = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = parse_value(value)
        else:
            node[last] = parse_value(value)
    return ExperimentConfig.model_validate(raw)


def _load_config(config: Path | None, data_dir: str | None, sets: list[str] | None) -> Any:
    from lmrec.experiment import ExperimentConfig

    cfg = ExperimentConfig.from_toml(config) if config else ExperimentConfig()
    cfg = _apply_sets(cfg, sets)
    if data_dir:
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"data_dir": data_dir})})
    return cfg


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
    config: Annotated[Path | None, typer.Option("--config", "-c", help="experiment TOML")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="report folder")] = None,
    data_dir: DataDir = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config key: a.b.c=value")
    ] = None,
) -> None:
    """Fit the configured models and evaluate them (full ranking).

    Protocol ([evaluation] protocol): "refit" (default) fits on train + valid with parameters chosen
    on validation (`lmrec tune`) and tests once; "train-only" fits on the training split only.
    """
    from lmrec.experiment import load_data, run_experiment

    cfg = _load_config(config, data_dir, set_)
    with console.status(f"loading {cfg.dataset.name}"):
        data = load_data(cfg.dataset)
    console.print(f"{data!r}")
    results = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as prog:
        task = prog.add_task("fitting", total=len(cfg.models))

        def done(spec: Any, res: Any) -> None:
            results.append(res)
            prog.update(
                task,
                advance=1,
                description=f"{spec.title}: ndcg@10={res.metrics.get('ndcg@10', float('nan')):.4f}",
            )

        run_experiment(cfg, out_dir=out, data=data, on_model=done)
    protocol = (
        results[0].info.get("protocol", cfg.evaluation.protocol) if results else cfg.evaluation.protocol
    )
    console.print(
        _results_table(
            results, f"{data.name} — {cfg.split.protocol} ({cfg.evaluation.phase}, {protocol} protocol)"
        )
    )
    if out:
        console.print(f"report written to {out}/report.md, report.json, metrics_at_k.png")


def train_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="registered model name")] = "ease",
    out: Annotated[Path, typer.Option("--out", "-o", help="artifact folder")] = Path("artifacts/model"),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="experiment TOML (dataset + model params)")
    ] = None,
    data_dir: DataDir = None,
    on_split: Annotated[
        bool, typer.Option("--on-split/--on-all", help="fit on the training split only")
    ] = False,
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
) -> None:
    """Fit one model and save it (safetensors + JSON) with its item catalogue."""
    from lmrec.experiment import ModelSpec, fit_model, load_data, make_split, save_catalog

    cfg = _load_config(config, data_dir, set_)
    spec = next((m for m in cfg.models if m.name == model), None) or ModelSpec(name=model)
    with console.status(f"loading {cfg.dataset.name}"):
        data = load_data(cfg.dataset)
    train = make_split(data, cfg.split).train if on_split else data
    with console.status(f"fitting {spec.title} on {train.n_interactions} interactions"):
        fitted, secs = fit_model(spec, train)
    fitted.save(out)
    save_catalog(data, out)
    console.print(f"[green]saved[/] {spec.title} to {out} (fit {secs:.2f}s)")


def recommend_cmd(
    artifact: Annotated[Path, typer.Argument(help="folder written by `lmrec train`")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="a known user id")] = None,
    history: Annotated[
        str | None, typer.Option("--history", help="comma-separated item ids, oldest first")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", "-t", help="free-text query")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="how many items")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Recommend for a known user, an unseen user's history, free text, or a mix."""
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
    recs = model.recommend(Query(user_id=user, history=hist, text=text), k=k)
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


def quickstart_cmd(
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/quickstart"),
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
) -> None:
    """Train and evaluate the baselines on MovieLens-100K and show a few users' recommendations."""
    from lmrec.experiment import ExperimentConfig, fit_model, load_data, make_split, run_experiment

    if config is None:
        text = resources.files("lmrec").joinpath("configs/quickstart_ml100k.toml").read_text()
        cfg = ExperimentConfig.model_validate(__import__("tomllib").loads(text))
    else:
        cfg = ExperimentConfig.from_toml(config)
    if data_dir or os.environ.get("LMREC_DATA_HOME"):
        cfg = cfg.model_copy(
            update={
                "dataset": cfg.dataset.model_copy(
                    update={"data_dir": data_dir or os.environ["LMREC_DATA_HOME"]}
                )
            }
        )
    t0 = time.perf_counter()
    with console.status("loading MovieLens-100K"):
        data = load_data(cfg.dataset)
    console.print(f"{data!r}")
    results = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as prog:
        task = prog.add_task("fitting and evaluating", total=len(cfg.models))

        def done(spec: Any, res: Any) -> None:
            results.append(res)
            prog.update(task, advance=1, description=f"{spec.title}: ndcg@10={res.metrics['ndcg@10']:.4f}")

        run_experiment(cfg, out_dir=out, data=data, on_model=done)
    protocol = results[0].info.get("protocol", "refit") if results else "refit"
    console.print(
        _results_table(results, f"MovieLens-100K, leave-last-out, full ranking (test, {protocol} protocol)")
    )
    # the demo model is fixed (EASE when configured), never picked by its test score
    demo_i = next((i for i, s in enumerate(cfg.models) if s.name == "ease"), len(cfg.models) - 1)
    spec = cfg.models[demo_i]
    sp = make_split(data, cfg.split)
    model, _ = fit_model(spec, sp.full)
    titles = dict(zip(data.item_vocab.ids, data.item_titles(), strict=True))
    recs = model.recommend([1, 2, 3], k=5)
    for uid in (1, 2, 3):
        table = Table(title=f"{spec.title}: user {uid}")
        table.add_column("rank")
        table.add_column("title")
        table.add_column("score", justify="right")
        for row in recs.filter(recs["user_id"] == uid).iter_rows(named=True):
            table.add_row(
                str(row["rank"]), titles.get(row["item_id"], str(row["item_id"])), f"{row['score']:.3f}"
            )
        console.print(table)
    console.print(f"report: {out}/report.md  ({time.perf_counter() - t0:.1f}s in all)")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("train")(train_cmd)
    app.command("recommend")(recommend_cmd)
    app.command("quickstart")(quickstart_cmd)
