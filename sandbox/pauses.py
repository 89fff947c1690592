"""Keep the sandbox's garbage collector from pausing it (`python -m sandbox` only).

The sandbox stamps a request's arrival when its event loop reaches it, and counts the
services' rate limits on those stamps. CPython's full collection walks every object the
process holds (the generated world, each recorded request, each stored customer): on a
20,000-profile world it took 40-100 ms, requests queued meanwhile and were then stamped
together. A real service's edge does not stop for its storage's garbage; these bunched
stamps counted requests over 100/s that the fleet had sent 96/s apart
(docs/benchmarks.md, the migration's budget run).

So the process moves what has survived a young collection out of the collector's reach
every few seconds (`gc.freeze`): full collections then walk only what is new. A frozen
object is never collected as part of a cycle: one that ends in a cycle stays until the
process ends, a small price in a simulator that lives for a test session or a benchmark
(objects without cycles are freed as always, by their reference counts).
"""

from __future__ import annotations

import gc
import threading
import time

FREEZE_EVERY = 2.0  # seconds


def keep_collections_short(every: float = FREEZE_EVERY) -> threading.Thread:
    """Freeze what lives past a young collection every `every` seconds, from now on."""

    def loop() -> None:
        while True:
            gc.collect(1)  # the young generations only: milliseconds
            gc.freeze()
            time.sleep(every)

    thread = threading.Thread(target=loop, name="sandbox-gc-freeze", daemon=True)
    thread.start()
    return thread
