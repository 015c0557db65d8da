"""One process-wide lock around everything that patches torch's globals.

``torch.fx``'s tracer replaces ``torch.nn.Module.__call__`` and
``__getattr__`` (and the autowrapped functions of ``math``) for the duration
of a trace; ``torch.export`` and ``FakeTensorMode`` install global modes and
patches of their own.  While one thread traces, a module called from another
thread would go through the patched ``__call__`` and record itself in the
wrong graph (or raise).  So every rfgraph entry point that traces, exports,
runs ops on fake tensors or runs a model forward (`rfgraph.analyze`, the
probe, the ERF measurement, the queries) holds `GLOBAL_LOCK` while it does.
It is re-entrant: an analysis inside a probe inside a query takes it once
per level and never deadlocks itself.  Threads then run analyses one at a
time, which costs little (an analysis takes milliseconds) and gives
byte-identical results to sequential runs (``tests/test_locking.py``).
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, TypeVar

__all__ = ["GLOBAL_LOCK", "serialized"]

#: Held by every rfgraph call that traces, exports, fakes tensors or runs a model.
GLOBAL_LOCK = threading.RLock()

F = TypeVar("F", bound=Callable)


def serialized(fn: F) -> F:
    """Decorator: ``fn`` runs while holding `GLOBAL_LOCK`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with GLOBAL_LOCK:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
