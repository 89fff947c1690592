"""Plain helpers shared by the tests (fixtures live in the conftest files).

    ROOT                the repository
    wait_for            the one way a test waits: poll a condition until it holds
    clear_fleet_state   forget every key the fleet wrote (`sf:*`, rate-limit windows), but
                        the live workers' entries
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


class Alive(Protocol):
    """Something that can die while a test waits for it (a process under test)."""

    name: str

    def died(self) -> str | None: ...


def wait_for(check: Callable[[], T], what: str, timeout: float = 60,
             alive: Iterable[Alive] = (), interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy and return that. Fails with `what`
    after `timeout` seconds, or at once when one of `alive` has died (with its log)."""
    deadline = time.monotonic() + timeout
    watched = list(alive)
    while True:
        for proc in watched:
            death = proc.died()
            if death:
                raise AssertionError(f"{proc.name} died while waiting for {what}: {death}")
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = "\n".join(f"--- {p.name}\n{p.log()[-2000:]}" for p in watched
                               if hasattr(p, "log"))
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail}")
        time.sleep(interval)



# Which workers run is no test's state: the session's workers keep their entries.
KEPT = {"sf:workers"}


def clear_fleet_state(redis_client) -> None:
    # Task results too: a test that stopped a worker mid-chord leaves its headers' results
    # (they would expire after RESULT_EXPIRES), and the next test counts what it leaves.
    for pattern in ("sf:*", "celery-task-meta-*", "celery-taskset-meta-*"):
        keys = [k for k in redis_client.scan_iter(pattern, count=1000) if k not in KEPT]
        for i in range(0, len(keys), 500):
            redis_client.delete(*keys[i:i + 500])
