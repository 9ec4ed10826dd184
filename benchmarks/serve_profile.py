"""CPU per request of the recommend path, in one process, without HTTP: where a request's time goes.

Loads an artifact into a :class:`~lmrec.serving.state.ServingState` with the given serving config
(what ``lmrec serve`` builds), then sends ``--n`` requests of ``serve_load.py``'s mix straight to the
pipeline (``recommend_many`` with one request, as the server's batcher does when a model ranks
through an index) and reports CPU milliseconds per request by kind (``time.process_time``: barely
moved by other work on the machine, unlike wall time). ``--profile`` adds a cProfile table.

    python benchmarks/serve_profile.py --artifact artifacts/als-1m --serve-config '{"index": "ivfpq"}'

The HTTP layer (uvicorn, FastAPI validation, JSON) is not included: ``serve_load.py`` measures the
whole server.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from serve_load import build_requests  # noqa: E402


def options(body: dict[str, Any]) -> dict[str, Any]:
    """A request body as the HTTP handler hands it to the pipeline (the schema's defaults)."""
    return {
        "user_id": body.get("user_id"),
        "history": body.get("history"),
        "text": None,
        "k": body.get("k", 10),
        "exclude": None,
        "exclude_seen": True,
        "filters": None,
        "explore": body.get("explore"),
        "policy": None,
        "diversity": None,
        "with_explanations": body.get("explain", True),
        "strict": None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--serve-config", default="{}", help="ServingConfig fields as JSON")
    p.add_argument("--n", type=int, default=2000, help="requests measured")
    p.add_argument("--mix", default="user=0.7,history=0.2,explore=0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="print a cProfile table (tottime)")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)

    import tempfile

    from lmrec.serving.config import ServingConfig, configure_process
    from lmrec.serving.state import ServingState

    config = ServingConfig(allow_no_api_key=True, **json.loads(args.serve_config))
    configure_process(config)
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    bodies = build_requests(args.artifact, 200 + args.n, mix, args.seed)
    with tempfile.TemporaryDirectory(prefix="lmrec-prof-") as tmp:
        t0 = time.perf_counter()
        state = ServingState.from_artifact(args.artifact, db=Path(tmp) / "events.db", config=config)
        state.warm()
        ready_s = time.perf_counter() - t0
        run = state.pipeline.recommend_many
        for body in bodies[:200]:  # warm-up
            run([options(body)])
        per_kind: dict[str, list[float]] = {}
        errors = 0
        for body in bodies[200:]:
            kind = "explore" if body.get("explore") else "history" if "history" in body else "user"
            c0 = time.process_time()
            out = run([options(body)])
            per_kind.setdefault(kind, []).append(time.process_time() - c0)
            errors += isinstance(out[0], Exception)
        prof = None
        if args.profile:  # a second pass under the profiler (which slows it): where the time goes
            prof = cProfile.Profile()
            prof.enable()
            for body in bodies[200:]:
                run([options(body)])
            prof.disable()
        health = state.health()
        state.close()
    total = sum(sum(v) for v in per_kind.values())
    result = {
        "artifact": str(args.artifact),
        "serve_config": json.loads(args.serve_config),
        "index": health.index.model_dump() if health.index else None,
        "index_repr": repr(state.index),
        "ready_s": round(ready_s, 1),
        "requests": args.n,
        "errors": errors,
        "cpu_ms_per_request": round(1000 * total / args.n, 3),
        "cpu_ms_by_kind": {k: round(1000 * sum(v) / len(v), 3) for k, v in sorted(per_kind.items())},
        "profiled": args.profile,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print("| kind | CPU ms / request |\n|---|---|")
    for k, v in result["cpu_ms_by_kind"].items():
        print(f"| {k} | {v} |")
    print(f"| all | {result['cpu_ms_per_request']} |")
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(args.top)
        print(s.getvalue())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
