"""Garbage-collector settings for long-running server processes.

Every request and every task run allocates a few hundred short-lived container objects, so with
CPython's default young-generation threshold (700) the collector runs several times per task,
and each full collection walks every object the imported libraries hold. Measured on the drain
bench, collection took about 9 % of the event-loop thread.
"""

from __future__ import annotations

import gc

#: Allocations (minus frees) between young collections: about a hundred tasks' worth, a few
#: megabytes at most, so cycles still go soon while the collector runs far less often.
YOUNG_THRESHOLD = 20_000


def settle_after_start() -> None:
    """Collect once, move every object alive now (modules, app, settings) out of the
    collector's sight, and raise the young threshold. Called once a server has started, so
    the frozen set is the long-lived one; objects made later are still collected."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
