"""How much memory lmrec may still use, and a guard for steps whose memory grows with n_items².

A process that asks for more memory than the machine (or its container) has is not told so: the
kernel's OOM killer ends it, often minutes into a fit and with no message, or the machine swaps
until it is unusable. A step whose need is known up front (EASE's dense item x item inverse) checks
it first with :func:`check_memory` and fails at once, naming the size, the need, what is available
and what to use instead.

"Available" is the smallest of:

* ``MemAvailable`` from ``/proc/meminfo`` (free + reclaimable page cache; the kernel's own estimate);
* the cgroup limit minus the cgroup's usage (v2 ``memory.max``/``memory.current``, or v1
  ``memory.limit_in_bytes``/``memory.usage_in_bytes``), because inside a container the machine's
  free memory is not what the container may use;
* ``$LMREC_MEMORY_LIMIT`` (``"8GiB"``, ``"512MB"``, bytes) minus this process's resident memory:
  a cap set by hand, e.g. when several jobs share a machine.

Where none can be read (not Linux, no psutil) the memory is unknown and the guard lets the step run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lmrec.errors import MemoryBudgetError

#: environment variable capping what lmrec may use (see the module docstring)
LIMIT_ENV = "LMREC_MEMORY_LIMIT"
#: share of the available memory a guarded step may plan to use (the rest: Python, the data, slack)
USABLE_SHARE = 0.9
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3}
_UNITS |= {"t": 1000**4, "tb": 1000**4, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_MEMINFO = Path("/proc/meminfo")
#: batches below this many bytes are never split (and cost no look-up: serving calls this per request)
_SMALL = 64 * 2**20
#: cgroup v1 reports "no limit" as a huge number close to 2**63
_NO_LIMIT = 2**60


@dataclass(frozen=True)
class Available:
    """Bytes lmrec may still use (None: unknown) and which limit decided it."""

    bytes: int | None
    source: str


def parse_bytes(text: str) -> int:
    """``"8GiB"`` -> 8589934592; plain numbers are bytes. Raises ValueError naming the text."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a memory size; write e.g. 8GiB, 512MB or a number of bytes")
    return int(float(m.group(1)) * _UNITS[unit])


def gib(n: float) -> str:
    """Bytes as ``"11.1 GiB"`` (``"48 MiB"`` below 1 GiB, so that small needs do not read as 0)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup() -> int | None:
    """The cgroup's limit minus its usage, or None when there is no limit (or no cgroup)."""
    # v2: this process's group from /proc/self/cgroup ("0::/some/path"), else the root
    group = ""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                group = line[3:].lstrip("/")
    except OSError:
        pass
    for folder in dict.fromkeys([_CGROUP_ROOT / group, _CGROUP_ROOT]):
        limit = _read_int(folder / "memory.max")
        if limit is not None:
            used = _read_int(folder / "memory.current") or 0
            return max(limit - used, 0)
    v1 = _CGROUP_ROOT / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is not None and limit < _NO_LIMIT:
        used = _read_int(v1 / "memory.usage_in_bytes") or 0
        return max(limit - used, 0)
    return None


def _rss() -> int:
    """This process's resident memory in bytes (0 when it cannot be read)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # psutil missing or refused: unknown
        return 0


def available_memory() -> Available:
    """What lmrec may still use: the smallest of the limits in the module docstring."""
    found: list[tuple[int, str]] = []
    env = os.environ.get(LIMIT_ENV, "").strip()
    if env:
        try:
            cap = parse_bytes(env)
        except ValueError as exc:
            raise MemoryBudgetError(f"${LIMIT_ENV}: {exc}") from None
        found.append((max(cap - _rss(), 0), f"${LIMIT_ENV}={env}"))
    meminfo = _meminfo()
    if meminfo is not None:
        found.append((meminfo, "MemAvailable"))
    group = _cgroup()
    if group is not None:
        found.append((group, "cgroup limit"))
    if not found:
        try:
            import psutil

            found.append((int(psutil.virtual_memory().available), "psutil"))
        except Exception:  # no way to know: unknown
            return Available(None, "unknown")
    size, source = min(found)
    return Available(size, source)


def check_memory(needed: int, *, what: str, alternative: str) -> None:
    """Raise :class:`MemoryBudgetError` when ``needed`` bytes exceed the usable memory.

    ``what`` says who needs it and why ("EASE on 27,278 items (two dense 27,278 x 27,278 float64
    matrices)"); ``alternative`` what to do instead. Usable is :data:`USABLE_SHARE` of
    :func:`available_memory`; unknown memory passes.
    """
    avail = available_memory()
    if avail.bytes is None or needed <= USABLE_SHARE * avail.bytes:
        return
    raise MemoryBudgetError(
        f"{what} needs {gib(needed)} but {gib(avail.bytes)} is available ({avail.source}); {alternative}"
    )


def rows_per_batch(requested: int, row_bytes: int, budget: int = 512 * 2**20) -> int:
    """How many rows of ``row_bytes`` each to process at once: ``requested``, fewer when a batch
    would exceed ``budget`` bytes or a tenth of the available memory (at least one row).

    Dense ``(batch, n_items)`` score blocks are the reason: 1,024 queries x 1M items is 4 GB.
    """
    if int(requested) * row_bytes <= _SMALL:  # small enough anywhere: skip reading /proc
        return max(1, int(requested))
    avail = available_memory().bytes
    if avail is not None:
        budget = min(budget, avail // 10)
    return max(1, min(int(requested), int(budget // max(row_bytes, 1))))


__all__ = [
    "LIMIT_ENV",
    "Available",
    "available_memory",
    "check_memory",
    "gib",
    "parse_bytes",
    "rows_per_batch",
]
