"""`lmrec quickstart`: what the library is for, on MovieLens-100K, in about a minute on a laptop.

1. the baselines beside the language-model models (``content``: zero-shot item text;
   ``two_tower``: a text-fused neural model trained briefly), one metrics table, refit protocol;
2. a free-text query answered with titles (``content``);
3. a brand-new movie with no interactions at all, placed from its text alone: the users it would
   be recommended to and the movies nearest to it (``content.add_items``: no refit);
4. where the report went (HTML, Markdown, JSON, plots).

Text vectors go through the on-disk embedding cache, so a second run does not encode again.
"""

from __future__ import annotations

import os
import time
import tomllib
import warnings
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from lmrec.cli._common import with_errors
from lmrec.cli.experiment import DataDir, _results_table, run_with_progress

console = Console()

#: the free-text query of the demo
TEXT_QUERY = "animated movie for young kids"
#: a movie MovieLens-100K has never seen: only its text is known
NEW_MOVIE = {
    "title": "Paper Lanterns (1998)",
    "genres": "Animation|Children's|Musical",
    "description": "A shy girl and her paper dragon sing their way through a lantern festival to "
    "bring her little brother home; a gentle cartoon for young children.",
}


def _with_cache(cfg: Any) -> Any:
    """Give every model that reads text the default embedding cache (unless the config set one)."""
    from lmrec.models.registry import get_model_class
    from lmrec.text.cache import default_cache_dir

    models = []
    for spec in cfg.models:
        fields = getattr(get_model_class(spec.name), "Config", None)
        if fields is not None and "cache_dir" in fields.model_fields and "cache_dir" not in spec.params:
            spec = spec.model_copy(update={"params": {**spec.params, "cache_dir": str(default_cache_dir())}})
        models.append(spec)
    return cfg.model_copy(update={"models": models})


def _titles(data: Any) -> dict[Any, str]:
    return dict(zip(data.item_vocab.ids, data.item_titles(), strict=True))


def _demo_cf(data: Any, sp: Any, cfg: Any) -> None:
    """Top 3 of a classic CF model (EASE when configured, never chosen by its test score)."""
    from lmrec.experiment import fit_model

    spec = next((s for s in cfg.models if s.name == "ease"), cfg.models[0])
    model, _ = fit_model(spec, sp.full)
    titles = _titles(data)
    recs = model.recommend([1, 2, 3], k=3)
    table = Table(title=f"{spec.title}: top 3 for users 1-3 (collaborative filtering)")
    for col in ("user", "rank", "title"):
        table.add_column(col)
    for row in recs.iter_rows(named=True):
        table.add_row(str(row["user_id"]), str(row["rank"]), titles.get(row["item_id"], str(row["item_id"])))
    console.print(table)


def _demo_text(data: Any, sp: Any, cfg: Any) -> None:
    """A free-text query, then a new movie placed from its text alone (content model)."""
    from lmrec.experiment import ModelSpec, fit_model
    from lmrec.models import Query
    from lmrec.models.protocols import SupportsAddItems

    spec = next((s for s in cfg.models if s.name == "content"), None)
    if spec is None:
        spec = _with_cache(cfg.model_copy(update={"models": [ModelSpec(name="content")]})).models[0]
    model, _ = fit_model(spec, sp.full)
    titles = _titles(data)
    recs = model.recommend(Query(text=TEXT_QUERY), k=5)
    table = Table(title=f'content: "{TEXT_QUERY}"')
    table.add_column("rank")
    table.add_column("title")
    for row in recs.iter_rows(named=True):
        table.add_row(str(row["rank"]), titles.get(row["item_id"], str(row["item_id"])))
    console.print(table)

    new_id = int(max(data.item_vocab.ids)) + 1
    assert isinstance(model, SupportsAddItems)  # the content model takes new items
    model.add_items(pl.DataFrame({"item_id": [new_id], **{k: [v] for k, v in NEW_MOVIE.items()}}))
    console.print(
        f"\nA new movie with no interactions, known only by its text (item {new_id}):\n"
        f"  {NEW_MOVIE['title']}: {NEW_MOVIE['genres'].replace('|', ', ')}. {NEW_MOVIE['description']}"
    )
    users = data.user_vocab.ids
    scores = model.score(list(users), items=[new_id])[:, 0]
    history = data.interactions.sort("timestamp", descending=True).group_by("user_idx", maintain_order=True)
    recent = dict(history.agg(pl.col("item_idx").head(3)).iter_rows())
    table = Table(title="content: the users it would be recommended to (from its text alone)")
    for col in ("user", "score", "recently watched"):
        table.add_column(col)
    for u in scores.argsort()[::-1][:3]:
        seen = [titles[data.item_vocab.ids[i]] for i in recent.get(int(u), [])]
        table.add_row(str(users[u]), f"{scores[u]:.3f}", "; ".join(seen))
    console.print(table)
    similar = model.recommend(Query(history=[new_id]), k=5)
    console.print(
        "content: nearest movies: " + "; ".join(titles.get(i, str(i)) for i in similar["item_id"].to_list())
    )


def quickstart_cmd(
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("runs/quickstart"),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Experiment TOML (default: the built-in one).")
    ] = None,
) -> None:
    """Evaluate the baselines and the language-model models on MovieLens-100K, answer a free-text
    query, place a brand-new movie from its text alone, and write an HTML report."""
    from lmrec.experiment import ExperimentConfig, load_data, make_split

    # a deprecation inside Lightning, printed mid-table otherwise; nothing the user can act on
    warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
    if config is None:
        text = resources.files("lmrec").joinpath("configs/quickstart_ml100k.toml").read_text()
        cfg = ExperimentConfig.parse(tomllib.loads(text))
    else:
        cfg = ExperimentConfig.from_toml(config)
    cfg = _with_cache(cfg).check()
    home = data_dir or os.environ.get("LMREC_DATA_HOME")
    if home:
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"data_dir": home})})
    t0 = time.perf_counter()
    with console.status(f"loading {cfg.dataset.name}"):
        data = load_data(cfg.dataset)
    console.print(f"{data!r}")
    results = run_with_progress(cfg, data, out)
    protocol = results[0].info.get("protocol", "refit") if results else "refit"
    console.print(
        _results_table(results, f"{data.name}, leave-last-out, full ranking (test, {protocol} protocol)")
    )
    sp = make_split(data, cfg.split)
    _demo_cf(data, sp, cfg)
    with console.status("content model: text query and a new movie"):
        _demo_text(data, sp, cfg)
    plots = ", ".join(p.name for p in sorted(out.glob("*.png")))
    console.print(
        f"\nreport: {out / 'report.html'} (open it in a browser; one file, plots inlined)\n"
        f"        also {out / 'report.md'}, report.json and {plots}\n"
        f"({time.perf_counter() - t0:.1f}s in all)"
    )


def register(app: typer.Typer) -> None:
    app.command("quickstart")(with_errors(quickstart_cmd))
