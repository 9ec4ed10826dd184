"""Train and save a hybrid artifact from the tuned configurations a ``benchmarks/hybrid.py`` run chose.

Reads ``hybrid.json`` (``--results``), takes the dataset's tuned generator parameters (chosen on
validation), fits the hybrid on the whole dataset's train + valid part (the refit protocol; the test
interactions stay out, so the served model matches the one benchmarked) and saves it for
``lmrec serve`` and ``benchmarks/serve_load.py --artifact``::

    python benchmarks/hybrid_artifact.py --results runs/hybrid_office/hybrid.json \\
        --dataset amazon-2014-office --out artifacts/office_hybrid
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hybrid_valid import tuned_specs

from lmrec.data.loaders import load_dataset
from lmrec.data.split import leave_last_out
from lmrec.models.registry import create_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--cache-dir", default="runs/cache/embeddings")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    _, specs = tuned_specs(args.results, args.dataset, None, args.candidates)
    gens = [s["name"] for s in specs]
    split = leave_last_out(load_dataset(args.dataset))
    t = time.perf_counter()
    model = create_model("hybrid", generators=specs, seed=args.seed, text_cache_dir=args.cache_dir)
    model.fit(split.full)
    model.save(args.out)
    print(
        json.dumps(
            {"artifact": str(args.out), "fit_s": round(time.perf_counter() - t, 1), "generators": gens}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
