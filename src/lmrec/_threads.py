"""A cheap "one BLAS thread here" context for code that runs once per served request.

``threadpoolctl.threadpool_limits`` finds the loaded BLAS libraries on every call by reading and
parsing ``/proc/self/maps``: ~4 ms of CPU in a process holding faiss, torch and scipy, which was
the largest single cost of an ALS fold-in request at 1M items (the search itself took ~3.5 ms).
:func:`single_blas_thread` finds them once and then only reads and sets each library's thread
count, and does nothing at all when every BLAS is already single-threaded (a server configured
with ``blas_threads = 1``).

The libraries are those loaded at the first call. Callers import what they run (implicit, scipy)
at module level, so theirs are loaded by then; a BLAS first loaded later is left as it is.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_blas: ThreadpoolController | None = None


def _controller() -> ThreadpoolController:
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                _blas = ThreadpoolController().select(user_api="blas")
    return _blas


def single_blas_thread() -> AbstractContextManager[Any]:
    """Limit the loaded BLAS libraries to one thread for a ``with`` block (restored after it)."""
    blas = _controller()
    if all(lib.num_threads == 1 for lib in blas.lib_controllers):
        return nullcontext()
    return blas.limit(limits=1)


__all__ = ["single_blas_thread"]
