"""Load test of ``POST /recommend``: a fixed-rate, open-loop generator on loopback.

Starts the real server (uvicorn, one process, the same factory ``lmrec serve`` uses) on 127.0.0.1
and a free port, warms it up, then sends requests at a fixed rate (default 200/s for 60 s) whatever
the responses do. Latency is measured from each request's *scheduled* send time, so a stall shows
up in every request queued behind it (no coordinated omission). Bounded: at most ``rate × duration``
requests (``--max-requests`` caps it further) and a hard wall-clock limit; only 127.0.0.1 is ever
contacted.

The model is a real one trained on ml-latest-small (``--model ease|als|content``; trained and
cached under ``--work-dir`` when ``--artifact`` is not given). Request mix (``--mix``): known users,
unseen-user histories, and known users with bandit exploration on.

    python benchmarks/serve_load.py                      # EASE, 200 req/s for 60 s
    python benchmarks/serve_load.py --model als --rate 100 --duration 10
    python benchmarks/serve_load.py --artifact artifacts/als-1m --serve-config '{"index": "ivfpq"}'

Prints a JSON object and a Markdown table; ``--out`` also writes the JSON. The machine may be
shared with other work: numbers are as measured, re-run to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.serving.procs import ServerProcess  # noqa: E402  (shared with the tests)

API_KEY = "bench-key"
JSON = {"content-type": "application/json"}


def _data_dir() -> Path:
    env = os.environ.get("LMREC_DATA_HOME")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_mls(data_dir: Path) -> Any:
    """ml-latest-small through the dataset loader when present, else from the CSV files."""
    try:
        from lmrec.data.loaders import load_dataset

        return load_dataset("ml-latest-small", data_dir=data_dir, download=False)
    except Exception as exc:  # loader missing or the copy unverifiable: read the CSVs directly
        print(f"[bench] load_dataset unavailable ({exc}); reading CSVs", file=sys.stderr)
        import polars as pl

        from lmrec.data.dataset import Dataset

        root = data_dir / "ml-latest-small"
        ratings = pl.read_csv(root / "ratings.csv").rename({"userId": "user_id", "movieId": "item_id"})
        movies = pl.read_csv(root / "movies.csv").rename({"movieId": "item_id"})
        return Dataset.from_frames(ratings, items=movies, name="ml-latest-small")


def train_artifact(
    model_name: str, work_dir: Path, data_dir: Path, params: dict[str, Any] | None = None
) -> Path:
    """Train ``model_name`` on all of ml-latest-small and save it with its catalogue (cached)."""
    params = params or {}
    suffix = "".join(f"-{k}={v}" for k, v in sorted(params.items()))
    target = work_dir / f"{model_name}-ml-latest-small{suffix}"
    if (target / "model.json").exists():
        print(f"[bench] using cached artifact {target}", file=sys.stderr)
        return target
    from lmrec.models.registry import create_model

    data = load_mls(data_dir)
    model = create_model(model_name, **params)
    t0 = time.perf_counter()
    model.fit(data)
    print(f"[bench] fitted {model_name} on {data} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    model.save(target)
    data.item_table().write_parquet(target / "catalog.parquet")
    return target


def build_requests(artifact: Path, n: int, mix: dict[str, float], seed: int) -> list[dict[str, Any]]:
    """Request bodies drawn from the artifact's users and items (ids only, no model needed)."""
    vocab = json.loads((artifact / "vocab.json").read_text())
    users = vocab["user"]["ids"]
    items = vocab["item"]["ids"]
    rng = random.Random(seed)
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    # histories from the more popular end of the catalogue (what real sessions look like)
    head = items[: max(50, len(items) // 4)]
    out = []
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        if kind == "user":
            body: dict[str, Any] = {"user_id": rng.choice(users), "k": 10}
        elif kind == "history":
            body = {"history": rng.sample(head, rng.randint(3, 20)), "k": 10}
        elif kind == "explore":
            body = {"user_id": rng.choice(users), "k": 10, "explore": True}
        else:
            raise ValueError(f"unknown request kind {kind!r} (use user, history, explore)")
        out.append(body)
    return out


class RawPool:
    """A minimal HTTP/1.1 keep-alive client for POST /recommend over asyncio streams.

    The generator shares two cores with the server; httpx costs ~1 ms of CPU per request, this
    ~0.1 ms, so the measurement disturbs what it measures far less. Connections are opened on
    demand (up to ``max_conns``) and reused; a request only ever goes to 127.0.0.1.
    """

    def __init__(self, port: int, max_conns: int = 256) -> None:
        self.port = port
        self.max_conns = max_conns
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.opened = 0

    async def _acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.idle.empty() or self.opened >= self.max_conns:
            return await self.idle.get()
        self.opened += 1
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes) -> int:
        reader, writer = await self._acquire()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            status = int(status_line.split()[1])
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            writer.close()
            self.opened -= 1
            raise
        self.idle.put_nowait((reader, writer))
        return status

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()


async def run_load(
    url: str, bodies: list[dict[str, Any]], rate: float, hard_limit_s: float, client_kind: str = "raw"
) -> dict[str, Any]:
    """Open loop: request i is sent at t0 + i/rate; latency counts from that scheduled time."""
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    raw = RawPool(int(url.rsplit(":", 1)[1])) if client_kind == "raw" else None
    payloads = [json.dumps(b).encode() for b in bodies]
    lat = np.full(len(bodies), np.nan)
    service = np.full(len(bodies), np.nan)
    status = np.zeros(len(bodies), np.int64)
    errors: dict[str, int] = {}
    done_at = np.full(len(bodies), np.nan)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        deadline = t0 + hard_limit_s

        async def one(i: int, body: dict[str, Any]) -> None:
            scheduled = t0 + i / rate
            sent = loop.time()
            try:
                if raw is not None:
                    code = await raw.post("/recommend", payloads[i])
                else:
                    code = (await client.post("/recommend", content=payloads[i], headers=JSON)).status_code
                status[i] = code
                if code != 200:
                    errors[f"http {code}"] = errors.get(f"http {code}", 0) + 1
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            end = loop.time()
            lat[i] = end - scheduled
            service[i] = end - sent
            done_at[i] = end - t0

        tasks = []
        for i, body in enumerate(bodies):
            scheduled = t0 + i / rate
            if scheduled > deadline:
                break
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, body)))
        remaining = max(1.0, deadline + 10 - loop.time())
        _done, pending = await asyncio.wait(tasks, timeout=remaining)
        for t in pending:
            t.cancel()
        if pending:
            errors["unfinished"] = len(pending)
        if raw is not None:
            await raw.close()
    sent_n = len(tasks)
    ok = status[:sent_n] == 200
    lat_ms = lat[:sent_n][ok] * 1000
    svc_ms = service[:sent_n][ok] * 1000
    span = float(np.nanmax(done_at[:sent_n])) if sent_n else 0.0

    def pct(a: np.ndarray, q: float) -> float:
        return round(float(np.percentile(a, q)), 2) if len(a) else float("nan")

    return {
        "requests_sent": sent_n,
        "ok": int(ok.sum()),
        "errors": int(sent_n - ok.sum()),
        "error_kinds": errors,
        "target_rate_rps": rate,
        "achieved_throughput_rps": round(float(ok.sum()) / span, 1) if span > 0 else 0.0,
        "latency_ms": {
            "p50": pct(lat_ms, 50),
            "p90": pct(lat_ms, 90),
            "p95": pct(lat_ms, 95),
            "p99": pct(lat_ms, 99),
            "max": round(float(lat_ms.max()), 2) if len(lat_ms) else float("nan"),
            "mean": round(float(lat_ms.mean()), 2) if len(lat_ms) else float("nan"),
        },
        "service_latency_ms": {"p50": pct(svc_ms, 50), "p99": pct(svc_ms, 99)},
    }


def server_side_latency(url: str) -> dict[str, Any]:
    """/recommend time inside the server (excludes the client and the network) from the Prometheus
    histogram: total, count and cumulative bucket counts."""
    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict[str, Any] = {"sum": 0.0, "count": 0.0, "buckets": {}}
    prefix = "lmrec_http_request_duration_seconds"
    for line in text.splitlines():
        if 'route="/recommend"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith(prefix + "_sum"):
            out["sum"] = value
        elif line.startswith(prefix + "_count"):
            out["count"] = value
        elif line.startswith(prefix + "_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out["buckets"][le] = value
    return out


def server_summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Mean and bucket-resolution p50/p99 of the server-side time over the measured window."""
    count = after["count"] - before["count"]
    if count <= 0:
        return {"requests": 0}

    def quantile(q: float) -> str:
        for le, c in after["buckets"].items():  # cumulative, in increasing order
            if c - before["buckets"].get(le, 0.0) >= q * count:
                return f"<= {float(le) * 1000:g} ms" if le != "+Inf" else "> max bucket"
        return "?"

    return {
        "requests": count,
        "mean_ms": round(1000 * (after["sum"] - before["sum"]) / count, 3),
        "p50": quantile(0.5),
        "p99": quantile(0.99),
    }


def pin_apart(server_pid: int) -> dict[str, list[int]]:
    """Server threads on the last CPU, this process on the rest (threads the server starts later
    inherit its affinity). Returns the CPU sets, for the report."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    server, client = {cpus[-1]}, set(cpus[:-1])
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), server)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile
    os.sched_setaffinity(0, client)
    return {"server_cpus": sorted(server), "generator_cpus": sorted(client)}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (the workers of ``--workers``; Linux
    /proc), to report CPU per request: a number that, unlike latency, barely moves when other work
    shares the machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def wait_for_workers(url: str, workers: int, timeout: float) -> set[int]:
    """Until every worker process has answered ``/health`` ready (a loading worker takes no
    connections yet, so one new connection at a time reaches the ones that are up)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(seen)} of {workers} workers ready after {timeout:.0f} s")
        with httpx.Client(base_url=url, timeout=10) as c:
            h = c.get("/health")
        if h.status_code == 200 and h.json().get("ready"):
            seen.add(int(h.json()["pid"]))
        else:
            time.sleep(0.2)
    return seen


def markdown(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    rows = [
        ("model", result["model"]),
        ("requests sent / ok / errors", f"{result['requests_sent']} / {result['ok']} / {result['errors']}"),
        ("target rate (req/s)", result["target_rate_rps"]),
        ("achieved throughput (req/s)", result["achieved_throughput_rps"]),
        ("latency p50 / p95 / p99 / max (ms)", f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']}"),
        (
            "server-side mean (ms) / p50 / p99 (histogram buckets)",
            f"{result['server']['mean_ms']} / {result['server']['p50']} / {result['server']['p99']}",
        ),
        ("client-side service time p99 (ms, from actual send)", result["service_latency_ms"]["p99"]),
        ("server CPU per request (ms)", result["server"]["cpu_ms_per_request"]),
        ("1-min load average during the run", result["load_avg_1m"]),
        ("goal p99 < 20 ms, 0 errors", "met" if result["goal_met"] else "NOT met"),
    ]
    out = ["| metric | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, help="a saved model directory (default: train --model)")
    p.add_argument("--model", default="ease", help="model to train when no --artifact (ease, als, content)")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / "artifacts" / "bench",
        help="where trained artifacts are cached",
    )
    p.add_argument(
        "--params", default="{}", help='model config as JSON when training, e.g. {"num_threads": 1}'
    )
    p.add_argument("--data-dir", type=Path, default=_data_dir())
    p.add_argument("--rate", type=float, default=200.0, help="requests per second")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    p.add_argument("--max-requests", type=int, default=100_000, help="hard cap on measured requests")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    p.add_argument("--mix", default="user=0.7,history=0.2,explore=0.1", help="request kinds and weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for the warm-up")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator HTTP client")
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin the server (every thread) to the last CPU and this generator to the others (Linux), so "
        "that on a small machine the two do not preempt each other; reported in the result",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server worker processes (`lmrec serve --workers`); the generator then shares the CPUs",
    )
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    p.add_argument(
        "--serve-config",
        default="{}",
        help='ServingConfig fields as JSON, e.g. {"index": "ivfpq"} (what `lmrec serve` options set)',
    )
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        p.error("--rate and --duration must be positive")
    if args.workers < 1 or (args.pin and args.workers > 1):
        p.error("--workers must be >= 1, and --pin keeps one server process on one CPU: not with --workers")
    serve_config = {
        **json.loads(args.serve_config),
        **({"workers": args.workers} if args.workers > 1 else {}),
    }

    artifact = args.artifact or train_artifact(
        args.model, args.work_dir, args.data_dir, json.loads(args.params)
    )
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    n = int(min(args.rate * args.duration, args.max_requests))
    n_warm = int(args.rate * args.warmup)
    bodies = build_requests(artifact, n_warm + n, mix, args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="lmrec-bench-"))
    try:
        srv = ServerProcess(
            artifact,
            tmp / "events.db",
            api_key=API_KEY,
            config=serve_config,
            log_path=tmp / "server.log",
        )
        t_ready = time.perf_counter()
        try:  # a hybrid's warm-up precomputes its known users: longer than the tests' default wait
            srv.wait_ready(timeout=args.ready_timeout)
            if args.workers > 1:
                wait_for_workers(srv.url, args.workers, args.ready_timeout)
            ready_s = time.perf_counter() - t_ready
        except BaseException:
            srv.stop()
            raise
        with srv:
            pinned = pin_apart(srv.proc.pid) if args.pin else None
            health = httpx.get(srv.url + "/health", timeout=10).json()
            if n_warm:
                asyncio.run(run_load(srv.url, bodies[:n_warm], args.rate, args.warmup + 5, args.client))
            before = server_side_latency(srv.url)
            cpu0 = process_cpu_seconds(srv.proc.pid)
            result = asyncio.run(
                run_load(srv.url, bodies[n_warm:], args.rate, args.duration + 5, args.client)
            )
            cpu1 = process_cpu_seconds(srv.proc.pid)
            after = server_side_latency(srv.url)
        result["server"] = server_summary(before, after)
        count = result["server"]["requests"]
        result["server"]["cpu_ms_per_request"] = round(1000 * (cpu1 - cpu0) / count, 3) if count else None
        result["server"]["cpu_utilisation"] = round((cpu1 - cpu0) / args.duration, 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.update(
        client=args.client,
        model=health["model"],
        n_items=health["n_items"],
        n_users=health["n_users"],
        index=health["index"],
        serve_config=serve_config,
        ready_s=round(ready_s, 1),
        mix=mix,
        duration_s=args.duration,
        host=f"{platform.node()} ({os.cpu_count()} cpus)",
        load_avg_1m=round(os.getloadavg()[0], 2),
        pinned=pinned,
    )
    result["goal_met"] = bool(result["errors"] == 0 and result["latency_ms"]["p99"] < 20.0)
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
