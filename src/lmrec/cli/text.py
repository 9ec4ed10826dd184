"""``lmrec encode``, ``lmrec tags``, ``lmrec keywords``, ``lmrec finetune``: the text layer from the
command line.

Thin wrappers over :mod:`lmrec.text` and :mod:`lmrec.text.tagging`. Free-text recommendation is
``lmrec recommend MODEL_DIR --text "..."`` (in :mod:`lmrec.cli.experiment`) on a saved ``content``
model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from lmrec.cli._common import errors, print_report, stdout_console
from lmrec.errors import LmrecError

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Dataset home folder (overrides LMREC_DATA_HOME).")
]
DatasetName = Annotated[
    str, typer.Argument(help="Dataset name, e.g. ml-latest-small (see `lmrec datasets list`).")
]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Text model: default = bundled offline all-MiniLM-L6-v2; any sentence-transformers name or "
        "local directory; 'hashing' = model-free test encoder.",
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Embedding cache folder (default: $LMREC_CACHE_DIR or ~/.cache/lmrec/embeddings)."
    ),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Encode everything, read and write no cache.")]
Device = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1, mps (default: CUDA when present).")
]


def _load(name: str, data_dir: Path | None) -> Any:
    from lmrec.data.loaders import load_dataset

    return load_dataset(name, data_dir)


def _profile(fields: str | None, template: str | None) -> Any:
    from lmrec.text.profiles import ProfileConfig

    update: dict[str, Any] = {}
    if fields:
        update["fields"] = tuple(f.strip() for f in fields.split(",") if f.strip())
    if template:
        update["template"] = template
    return ProfileConfig(**update)


def encode_command(
    dataset: DatasetName,
    data_dir: DataDir = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write item vectors here (.safetensors).")
    ] = None,
    model: ModelName = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    device: Device = None,
    fields: Annotated[
        str | None, typer.Option("--fields", help="Comma-separated profile fields, most important first.")
    ] = None,
    template: Annotated[
        str | None, typer.Option("--template", help='Profile template, e.g. "{title}. {genres}".')
    ] = None,
    show: Annotated[int, typer.Option("--show", help="Print this many example profiles.")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Encode every item profile of a dataset (through the embedding cache) and report throughput."""
    from safetensors.numpy import save_file

    from lmrec.text import EmbeddingCache, build_item_texts, get_encoder

    with errors():
        data = _load(dataset, data_dir)
        texts = build_item_texts(data, _profile(fields, template))
        encoder = get_encoder(model, device=device)
        cache = None if no_cache else EmbeddingCache(cache_dir)
        t0 = time.perf_counter()
        if cache is None:
            vectors = encoder.encode(texts, batch_size=batch_size, show_progress=True)
            hits = 0
        else:
            vectors = cache.encode(texts, encoder, batch_size=batch_size, show_progress=True)
            hits = cache.last_stats.hits
        seconds = time.perf_counter() - t0
        report = {
            "dataset": dataset,
            "n_items": len(texts),
            "model_id": encoder.model_id,
            "dim": int(vectors.shape[1]),
            "device": getattr(encoder, "device", None) or "n/a (not loaded: all cached)",
            "seconds": round(seconds, 3),
            "texts_per_second": round(len(texts) / seconds, 1) if seconds > 0 else None,
            "cache": None if cache is None else str(cache.root),
            "cache_hits": hits,
            "encoded": len(texts) - hits if cache is not None else len(texts),
        }
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp")
            save_file(
                {"vectors": np.ascontiguousarray(vectors)},
                str(tmp),
                metadata={
                    "model_id": encoder.model_id,
                    "dataset": dataset,
                    "item_ids": json.dumps(data.item_vocab.ids),
                },
            )
            tmp.replace(out)
            report["out"] = str(out)
        console = print_report(report, f"encoded {dataset}", json_out)
        if console is None:
            return
        for t in texts[:show]:
            console.print(f"  • {escape(t)}")


def tags_command(
    dataset: DatasetName,
    data_dir: DataDir = None,
    model: ModelName = None,
    holdout: Annotated[
        float, typer.Option("--holdout", help="Share of tagged items held out for evaluation.")
    ] = 0.2,
    min_items: Annotated[
        int, typer.Option("--min-items", help="Learn tags used on at least this many items.")
    ] = 5,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden layer width (0 = linear).")] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    show: Annotated[int, typer.Option("--show", help="Untagged items to show predictions for.")] = 5,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the trained predictor here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train a tag predictor on item text, report held-out P@5 / F1, tag a few untagged items."""
    from lmrec.text import EmbeddingCache, get_encoder
    from lmrec.text.tagging import TagPredictor, tag_task

    with errors():
        if not 0 < holdout < 1:
            raise LmrecError(f"--holdout must be in (0, 1), got {holdout}")
        data = _load(dataset, data_dir)
        ids, texts, labels, untagged_ids, untagged_texts = tag_task(data)
        encoder = get_encoder(model)
        cache = None if no_cache else EmbeddingCache(cache_dir)
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(ids))
        n_test = max(1, round(holdout * len(ids)))
        test, train = perm[:n_test], perm[n_test:]
        shown_untagged = untagged_texts[:show]
        all_texts = texts + shown_untagged
        t0 = time.perf_counter()
        X = (
            cache.encode(all_texts, encoder, show_progress=True)
            if cache
            else encoder.encode(all_texts, show_progress=True)
        )
        encode_s = time.perf_counter() - t0
        predictor = TagPredictor(
            text_encoder=encoder,
            encoder=model,
            min_items=min_items,
            hidden=hidden,
            seed=seed,
            cache_dir=str(cache.root) if cache else None,
        )
        predictor.fit(X[train], [labels[i] for i in train], encoder_id=encoder.model_id)
        metrics = predictor.evaluate(X[test], [labels[i] for i in test], k=5)
        report: dict[str, Any] = {
            "dataset": dataset,
            "model_id": encoder.model_id,
            "n_tagged_items": len(ids),
            "n_train_items": len(train),
            "n_heldout_items": len(test),
            "n_tags_learned": len(predictor.tags_),
            "threshold": round(predictor.threshold_, 3),
            "encode_seconds": round(encode_s, 2),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.to_dict().items()},
        }
        titles = dict(zip(data.item_vocab.ids, data.item_titles(), strict=True))
        preds = predictor.predict(X[len(texts) :], k=5) if shown_untagged else []
        report["untagged_examples"] = [
            {"item_id": i, "title": titles.get(i, str(i)), "predicted": [t for t, _ in p]}
            for i, p in zip(untagged_ids[:show], preds, strict=True)
        ]
        if out is not None:
            predictor.save(out)
            report["saved"] = str(out)
        console = stdout_console()
        if json_out:
            console.print_json(json.dumps(report, default=str))
            return
        table = Table(title=f"tag prediction on {dataset} (held-out items)", title_justify="left")
        table.add_column("metric")
        table.add_column("value")
        for k, v in report.items():
            if k != "untagged_examples":
                table.add_row(k, escape(str(v)))
        console.print(table)
        for ex in report["untagged_examples"]:
            console.print(f"  • {escape(str(ex['title']))}: {escape(', '.join(ex['predicted']))}")


def keywords_command(
    dataset: DatasetName,
    data_dir: DataDir = None,
    model: ModelName = None,
    items: Annotated[int, typer.Option("--items", help="How many items (with reviews) to show.")] = 5,
    top_n: Annotated[int, typer.Option("--top-n", help="Keyphrases per item.")] = 5,
    diversity: Annotated[
        float, typer.Option("--diversity", help="0 = most relevant, 1 = most diverse.")
    ] = 0.5,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
) -> None:
    """Keyphrases from each item's reviews (candidate n-grams ranked by similarity to the reviews)."""
    from lmrec.text import EmbeddingCache, get_encoder, keyword_map, review_keywords

    with errors():
        data = _load(dataset, data_dir)
        if data.reviews is None:
            raise LmrecError(f"dataset {dataset!r} has no reviews")
        chosen = data.reviews["item_id"].unique(maintain_order=True).head(items).to_list()
        frame = review_keywords(
            data,
            get_encoder(model),
            top_n=top_n,
            items=chosen,
            diversity=diversity,
            cache=None if no_cache else EmbeddingCache(cache_dir),
        )
        console = stdout_console()
        titles = dict(zip(data.item_vocab.ids, data.item_titles(), strict=True))
        for item, kws in keyword_map(frame).items():
            console.print(f"  • {escape(str(titles.get(item, item)))}: {escape(', '.join(kws))}")


def finetune_command(
    dataset: DatasetName,
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the fine-tuned model.")],
    data_dir: DataDir = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Base model: default = bundled all-MiniLM-L6-v2, or a local dir."),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="Pairs from which interactions: 'none' (all), or the training part of 'cold-item' or "
            "'leave-last-out' (the same split, by seed, as an evaluation run's).",
        ),
    ] = "none",
    seed: Annotated[int, typer.Option("--seed", help="Split seed (and training seed).")] = 42,
    item_fraction: Annotated[
        float, typer.Option("--item-fraction", help="cold-item split: cold test (and validation) share.")
    ] = 0.1,
    max_steps: Annotated[int, typer.Option("--max-steps", min=0)] = 300,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Training time limit.")] = 600.0,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = 8,
    lr: Annotated[float, typer.Option("--lr")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Pairs per step.")] = 32,
    max_seq_length: Annotated[int, typer.Option("--max-seq-length", min=8)] = 128,
    window: Annotated[int, typer.Option("--window", min=1, help="Max positions apart in a history.")] = 2,
    max_pairs_per_item: Annotated[int, typer.Option("--max-pairs-per-item", min=1)] = 20,
    valid_fraction: Annotated[
        float, typer.Option("--valid-fraction", help="Share of pairs held out for loss / pair recall@10.")
    ] = 0.05,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """LoRA-fine-tune the text encoder on item co-occurrence pairs; save a plain sentence-transformers
    folder usable as any model's ``encoder``."""
    from lmrec.text.finetune import FinetuneConfig, finetune_encoder

    with errors():
        data = _load(dataset, data_dir)
        if split == "cold-item":
            from lmrec.data.split import cold_item

            data = cold_item(data, item_fraction=item_fraction, valid_fraction=item_fraction, seed=seed).train
        elif split == "leave-last-out":
            from lmrec.data.split import leave_last_out

            data = leave_last_out(data).train
        elif split != "none":
            raise LmrecError(f"--split must be none, cold-item or leave-last-out, got {split!r}")
        cfg = FinetuneConfig(
            base_model=model,
            rank=rank,
            lr=lr,
            batch_size=batch_size,
            max_steps=max_steps,
            max_seconds=max_seconds,
            max_seq_length=max_seq_length,
            window=window,
            max_pairs_per_item=max_pairs_per_item,
            valid_fraction=valid_fraction,
            seed=seed,
        )
        report = finetune_encoder(data, out, cfg).model_dump(mode="json")
        report["out"] = str(out)
        report["split"] = split
        keys = ("out", "base_model", "n_train_pairs", "n_valid_pairs", "steps", "seconds", "stopped_by")
        rows = {k: str(report[k]) for k in keys}
        for k in ("valid_before", "valid_after"):
            rows[k] = ", ".join(f"{m}={v:.4g}" for m, v in report[k].items())
        console = print_report(report, f"fine-tuned on {dataset} ({split})", json_out, rows)
        if console is None:
            return
        console.print(f"use it with: encoder={escape(str(out))!r}")


def register(app: typer.Typer) -> None:
    """Add ``encode``, ``tags``, ``keywords`` and ``finetune`` to the top-level ``lmrec`` app."""
    app.command("encode")(encode_command)
    app.command("tags")(tags_command)
    app.command("keywords")(keywords_command)
    app.command("finetune")(finetune_command)


__all__ = ["encode_command", "finetune_command", "keywords_command", "register", "tags_command"]
