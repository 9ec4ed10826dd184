"""A servable model with a million-item catalogue: synthetic data -> ALS -> saved artifact.

For ``benchmarks/serve_load.py --artifact`` at catalogue sizes where the server needs an ANN index
(``index = "ivfpq"`` or ``auto``). The data is :func:`lmrec.data.synthetic.generate` with ``--items``
items and ``--interactions`` rows; the item popularity exponent is lowered from 0.9 to
``--popularity-exponent`` 0.6 so that nearly every item has interactions (with 0.9 and 5M rows
about 40 % of a 1M catalogue would be cold, and ALS gives cold items all-zero vectors, an index
full of ties rather than of items). ALS (64 factors, 10 iterations, both cores) is fitted on all
of it: this is a serving benchmark, there is nothing to evaluate. Saves the model and its
``catalog.parquet`` (titles, tags) to ``--out``::

    python benchmarks/scale_artifact.py --out artifacts/als-1m     # ~5M rows, 1M items
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, help="synthetic data folder (default: OUT.data)")
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--interactions", type=int, default=5_000_000)
    p.add_argument("--popularity-exponent", type=float, default=0.6)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from tqdm import tqdm

    from lmrec.data.synthetic import SyntheticConfig, generate, load_synthetic
    from lmrec.models.registry import create_model

    data_dir = args.data or args.out.with_name(args.out.name + ".data")
    config = SyntheticConfig(
        n_interactions=args.interactions,
        n_items=args.items,
        popularity_exponent=args.popularity_exponent,
        seed=args.seed,
    )
    meta = data_dir / "synthetic.json"
    t = time.perf_counter()
    if not meta.exists() or json.loads(meta.read_text()).get("config") != config.model_dump():
        with tqdm(total=args.interactions, desc="synth", unit="row") as bar:
            generate(config, data_dir, progress=lambda done, total: bar.update(done - bar.n))
    gen_s = time.perf_counter() - t
    data = load_synthetic(data_dir)
    counts = np.bincount(data.interactions["item_idx"].to_numpy(), minlength=data.n_items)
    t = time.perf_counter()
    model = create_model(
        "als", factors=args.factors, iterations=args.iterations, num_threads=args.threads, seed=args.seed
    )
    model.fit(data)
    fit_s = time.perf_counter() - t
    model.save(args.out)
    data.item_table().write_parquet(args.out / "catalog.parquet")
    vec = np.asarray(model.item_vectors())
    print(
        json.dumps(
            {
                "artifact": str(args.out),
                "data": str(data_dir),
                "n_users": data.n_users,
                "n_items": data.n_items,
                "n_interactions": data.n_interactions,
                "cold_items": int((counts == 0).sum()),
                "zero_vectors": int((np.abs(vec).sum(axis=1) == 0).sum()),
                "generate_s": round(gen_s, 1),
                "fit_s": round(fit_s, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
