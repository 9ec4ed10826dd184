"""Encoding throughput of the text layer on ml-latest-small's 9,742 movie profiles, cold vs cached.

Run 1 encodes every profile into an empty embedding cache (texts/s of the model on this machine);
run 2 uses a fresh cache object and a fresh, not-yet-loaded encoder, as a second process would, and
must be served entirely from disk without loading the model. Prints JSON and a Markdown table.

    python benchmarks/encode_throughput.py [--data-dir ../shared/data] [--model NAME] [--batch-size 64]
        [--cache-dir DIR (default: a new temporary folder)] [--out results.json]

Timings on a shared machine are noisy: they are reported as measured, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from lmrec.data.loaders import load_dataset
from lmrec.text import EmbeddingCache, build_item_texts, get_encoder
from lmrec.text.encoder import SentenceTransformerEncoder, pick_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="ml-latest-small")
    ap.add_argument("--model", default=None, help="text model (default: bundled all-MiniLM-L6-v2)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cache-dir", default=None, help="cache folder; must be empty for a cold first run")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()

    import torch

    data = load_dataset(args.dataset, args.data_dir, download=False)
    texts = build_item_texts(data)
    cache_dir = (
        Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="lmrec-encode-bench-"))
    )
    load1 = os.getloadavg()[0]

    encoder = get_encoder(args.model)
    t0 = time.perf_counter()
    if isinstance(encoder, SentenceTransformerEncoder):
        encoder.load()
    load_s = time.perf_counter() - t0

    cache = EmbeddingCache(cache_dir)
    t0 = time.perf_counter()
    first = cache.encode(texts, encoder, batch_size=args.batch_size, show_progress=True)
    first_s = time.perf_counter() - t0
    stats1 = cache.last_stats

    # run 2: what a second process sees: a new cache object, an encoder that has not loaded weights
    encoder2 = get_encoder(args.model)
    cache2 = EmbeddingCache(cache_dir)
    t0 = time.perf_counter()
    second = cache2.encode(texts, encoder2, batch_size=args.batch_size)
    second_s = time.perf_counter() - t0
    stats2 = cache2.last_stats
    loaded2 = getattr(encoder2, "is_loaded", False)

    lengths = np.array([len(t) for t in texts])
    result = {
        "dataset": args.dataset,
        "n_texts": len(texts),
        "mean_chars": round(float(lengths.mean()), 1),
        "max_chars": int(lengths.max()),
        "model_id": encoder.model_id,
        "device": getattr(encoder, "device", None) or pick_device(None),
        "gpu_available": bool(torch.cuda.is_available()),
        "torch_threads": getattr(encoder, "_cpu_threads", None) or torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_at_start": round(load1, 2),
        "batch_size": args.batch_size,
        "model_load_seconds": round(load_s, 2),
        "first_run": {
            "seconds": round(first_s, 2),
            "texts_per_second": round(len(texts) / first_s, 1),
            "encoded": stats1.encoded,
            "cache_hits": stats1.hits,
        },
        "second_run": {
            "seconds": round(second_s, 3),
            "texts_per_second": round(len(texts) / second_s, 1),
            "encoded": stats2.encoded,
            "cache_hits": stats2.hits,
            "model_loaded": loaded2,
        },
        "second_over_first": round(second_s / first_s, 5),
        "identical_vectors": bool(np.array_equal(first, second)),
        "cache_dir": str(cache_dir),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    dev = result["device"] if result["gpu_available"] else f"{result['device']} (no GPU available)"
    print()
    print(
        f"Encoding {len(texts):,} {args.dataset} item profiles with `{encoder.model_id}` on {dev}, "
        f"{result['torch_threads']} torch threads, load average {result['load_average_at_start']} at start (shared machine):"
    )
    print()
    print("| run | seconds | texts/s | encoded | cache hits | model loaded |")
    print("|---|---:|---:|---:|---:|---|")
    f, s = result["first_run"], result["second_run"]
    print(f"| model load | {load_s:.2f} | | | | |")
    print(
        f"| 1: cold cache | {f['seconds']:.2f} | {f['texts_per_second']:,.1f} | {f['encoded']:,} | {f['cache_hits']:,} | yes |"
    )
    print(
        f"| 2: cached | {s['seconds']:.3f} | {s['texts_per_second']:,.0f} | {s['encoded']:,} | {s['cache_hits']:,} | {'yes' if loaded2 else 'no'} |"
    )
    print()
    print(
        f"Second run / first run: {100 * result['second_over_first']:.2f}% (target < 5%); vectors identical: {result['identical_vectors']}"
    )


if __name__ == "__main__":
    main()
