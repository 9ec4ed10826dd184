"""Offline top-k for every user of a saved model, sharded across Dask workers.

``score_all(artifact, out, k=10, workers=2)`` (CLI: ``lmrec score-all``) splits the model's known
users into parts and hands each part to a Dask worker, which ranks it with the model's own
:meth:`~lmrec.models.base.Recommender.recommend` (external ids, seen items excluded: the same
rows as one ``recommend`` call over all users) and writes it as ``part-NNNNN.parquet``
(``user_id, item_id, score, rank``, users in vocabulary order). One machine: a ``LocalCluster`` of
``workers`` processes. Many machines: ``scheduler="tcp://host:8786"`` joins a running cluster
(``dask scheduler`` on one machine, ``dask worker tcp://host:8786`` on each of the others); the
artifact and the output folder must then be on a file system every worker sees (NFS, a shared
volume), since the workers read the one and write into the other.

Why the pieces are shaped so:

- A worker loads the model once, not once per part: the loaded model is kept per worker process
  (:func:`_model`), keyed by the artifact's path and its ``model.json`` identity, so a cluster
  reused after the artifact was replaced loads the new one.
- No half-written output: the parts go to a staging folder beside ``out``, each written atomically
  (a retried part, after a worker died, replaces its own file); ``_manifest.json`` (parts, rows,
  users, model, k) is written last and the folder replaces ``out`` with one rename
  (:func:`lmrec._atomic.atomic_directory`). A failed run leaves ``out`` as it was.
- Parts are small enough to spread (four per worker by default) and each ``recommend`` call
  bounds its own score blocks, so a worker's memory does not grow with the catalogue times the part.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from lmrec._atomic import atomic_directory, atomic_write
from lmrec._version import __version__
from lmrec.errors import LmrecError

if TYPE_CHECKING:
    from lmrec.models.base import Recommender

__all__ = ["MANIFEST", "ScoreAllSummary", "read_scores", "score_all"]

#: written last into the output folder: what was scored, and the parts
MANIFEST = "_manifest.json"
#: the columns of every part file
COLUMNS = ("user_id", "item_id", "score", "rank")


@dataclass(frozen=True)
class ScoreAllSummary:
    """What :func:`score_all` wrote (also the manifest's content, less the parts list)."""

    out: str
    model: str
    k: int
    n_users: int
    n_rows: int
    n_parts: int
    #: Dask workers that took part, and the model loads they did (one per worker when cached)
    n_workers: int
    model_loads: int
    seconds: float


# ---------------------------------------------------------------------- on the workers
_lock = threading.Lock()
#: this process's loaded model: ((path, inode, mtime_ns) of model.json, model)
_cached: tuple[tuple[str, int, int], Recommender] | None = None
#: how many times this process loaded a model (reported back, so a test can see the caching)
_loads = 0


def _model(artifact: str) -> Recommender:
    """The artifact's model, loaded once per worker process (reloaded when the artifact changed)."""
    global _cached, _loads
    manifest = Path(artifact) / "model.json"
    try:
        st = manifest.stat()
    except OSError:
        raise LmrecError(
            f"{manifest} not found on this worker ({os.uname().nodename}): the artifact must be on a file "
            "system every worker sees"
        ) from None
    key = (str(manifest.resolve()), st.st_ino, st.st_mtime_ns)
    with _lock:  # a worker with several threads loads once, not once per thread
        if _cached is None or _cached[0] != key:
            from lmrec.models.base import Recommender

            _cached = (key, Recommender.load(artifact))
            _loads += 1
        return _cached[1]


def _score_part(artifact: str, users: list[Any], k: int, exclude_seen: bool, path: str) -> dict[str, Any]:
    """Rank one part's users and write them to ``path`` (atomically); runs on a worker."""
    model = _model(artifact)
    folder = Path(path).parent
    if not folder.is_dir():
        raise LmrecError(
            f"{folder} not found on this worker ({os.uname().nodename}): the output folder must be on a "
            "file system every worker sees"
        )
    recs = model.recommend(users, k=k, exclude_seen=exclude_seen, strict=True).select(COLUMNS)
    atomic_write(path, lambda tmp: recs.write_parquet(tmp))
    return {"rows": recs.height, "users": len(users), "pid": os.getpid(), "loads": _loads}


# ---------------------------------------------------------------------- on the client
def _user_ids(artifact: Path) -> list[Any]:
    """The model's known users, from ``vocab.json`` alone (the client never loads the model)."""
    from lmrec.data.vocabulary import Vocabulary

    vocab = artifact / "vocab.json"
    if not (artifact / "model.json").is_file() or not vocab.is_file():
        raise LmrecError(f"{artifact} is not a saved lmrec model (no model.json/vocab.json in it)")
    try:
        return Vocabulary.from_json(json.loads(vocab.read_text(encoding="utf-8"))["user"]).ids
    except (ValueError, KeyError, TypeError) as exc:
        raise LmrecError(f"{vocab}: damaged user vocabulary ({exc})") from None


def _client(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    """A Dask client on ``scheduler``, or on a new ``LocalCluster`` of ``workers`` processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise LmrecError(
            "score-all needs Dask's distributed scheduler: pip install 'lmrec[distributed]'"
        ) from None
    if scheduler is not None:
        try:
            # how long to try: Dask's distributed.comm.timeouts.connect (30 s by default)
            return Client(scheduler), None
        except OSError as exc:
            raise LmrecError(f"cannot reach the Dask scheduler {scheduler!r} ({exc})") from None
    # one thread per worker process: Dask's nanny sets OMP_NUM_THREADS=1, so the scoring matrix
    # products of one part use one core and the workers share the machine
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def score_all(
    artifact: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    k: int = 10,
    workers: int = 2,
    scheduler: str | None = None,
    users_per_part: int | None = None,
    exclude_seen: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreAllSummary:
    """Top-``k`` for every known user of the model saved in ``artifact``, as Parquet parts in ``out``.

    ``scheduler`` (a Dask address) joins a running cluster; without it a ``LocalCluster`` of
    ``workers`` processes is started and closed. ``users_per_part`` defaults to four parts per
    worker. ``progress(parts_done, n_parts)`` is called as parts finish. Read the result with
    :func:`read_scores`. See the module docstring for the guarantees.
    """
    if not isinstance(k, int) or k < 1:
        raise LmrecError(f"k must be a positive integer, got {k!r}")
    if workers < 1:
        raise LmrecError(f"workers must be at least 1, got {workers}")
    if users_per_part is not None and users_per_part < 1:
        raise LmrecError(f"users_per_part must be at least 1, got {users_per_part}")
    src = Path(artifact).absolute()
    users = _user_ids(src)
    meta = json.loads((src / "model.json").read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    client, cluster = _client(workers, scheduler)
    try:
        n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
        size = users_per_part or max(1, math.ceil(len(users) / (4 * n_workers)))
        parts = [users[i : i + size] for i in range(0, len(users), size)]
        with atomic_directory(out, tag="scoring") as staging:
            from distributed import as_completed

            futures = [
                client.submit(
                    _score_part,
                    str(src),
                    part,
                    k,
                    exclude_seen,
                    str(staging / f"part-{i:05d}.parquet"),
                    key=f"lmrec-score-part-{i:05d}-{staging.name}",
                    pure=False,
                )
                for i, part in enumerate(parts)
            ]
            results: dict[str, dict[str, Any]] = {}
            for done, future in enumerate(as_completed(futures), start=1):
                results[future.key] = future.result()  # a failed part raises here: out is untouched
                if progress is not None:
                    progress(done, len(parts))
            ordered = [results[f.key] for f in futures]
            loads: dict[int, int] = {}
            for r in ordered:
                loads[r["pid"]] = max(loads.get(r["pid"], 0), r["loads"])
            summary = ScoreAllSummary(
                out=str(Path(out).absolute()),
                model=str(meta.get("model")),
                k=k,
                n_users=len(users),
                n_rows=sum(r["rows"] for r in ordered),
                n_parts=len(parts),
                n_workers=len(loads),
                model_loads=sum(loads.values()),
                seconds=time.perf_counter() - t0,
            )
            manifest = {
                "written_by": "lmrec score-all",
                "lmrec_version": __version__,
                "artifact": str(src),
                "exclude_seen": exclude_seen,
                "columns": list(COLUMNS),
                **asdict(summary),
                "parts": [
                    {"file": f"part-{i:05d}.parquet", "users": r["users"], "rows": r["rows"]}
                    for i, r in enumerate(ordered)
                ],
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return summary


def read_scores(out: str | os.PathLike[str], parts: Sequence[int] | None = None) -> pl.DataFrame:
    """The rows :func:`score_all` wrote to ``out`` (all parts, in user order), checked against its
    manifest; ``parts`` picks some part numbers only."""
    folder = Path(out)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LmrecError(f"{folder / MANIFEST}: not a finished score-all output ({exc})") from None
    listed = manifest["parts"]
    picked = [listed[i] for i in parts] if parts is not None else listed
    frames = [pl.read_parquet(folder / p["file"]) for p in picked]
    for p, frame in zip(picked, frames, strict=True):
        if frame.height != p["rows"]:
            raise LmrecError(f"{folder / p['file']}: {frame.height} rows, the manifest says {p['rows']}")
    return pl.concat(frames) if frames else pl.DataFrame(schema=list(COLUMNS))
