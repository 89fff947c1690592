"""One retry policy for the whole fleet: which failures deserve another try, how long
to wait first, and how many tries there are.

- `NoBudget` (the fleet-wide budget is spent for now) waits as long as the budget says.
  It is not a failure and has its own, larger allowance.
- `RateLimited` (a 429) waits as long as the service asked (Retry-After), plus jitter.
- `TransientError` (5xx, timeouts, broken bodies) backs off exponentially with jitter.
- Everything else (401/403, other 4xx, a missing setting, a bug) is final: another try
  cannot fix it, and a retry storm against a 401 can get a key revoked.

Two places apply it: the task base class (`worker.tasking.FleetTask`) reschedules the
task; `in_place` spends short waits where they are, for work that holds what it has done
so far (a migration slice's fetched profiles and sent bulks) and would have to redo it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from worker.http import RateLimited, TransientError
from worker.ratelimit import NoBudget

T = TypeVar("T")

RETRYABLE: tuple[type[Exception], ...] = (NoBudget, RateLimited, TransientError)
BACKOFF_BASE = 2.0  # seconds; doubled each retry


class Continue(Exception):  # reads as "raise Continue()"
    """Not done yet, nothing wrong: the work checkpointed what it did before its time ran
    out and goes on in a new delivery of the same task, at once."""


@dataclass(frozen=True)
class Wait:
    seconds: float
    for_budget: bool  # a wait for the fleet's budget, not a failure


def backoff(failures: int, cap: float, base: float = BACKOFF_BASE) -> float:
    """Full-jitter exponential backoff: uniform in [base, base * 2**failures], capped."""
    return min(cap, random.uniform(base, base * 2 ** failures))


def jittered(seconds: float) -> float:
    """A wait the service (or the budget) named, plus a little jitter, so the workers
    that waited for the same moment do not all come back in the same millisecond."""
    return seconds + random.uniform(0, min(1.0, seconds / 10 + 0.1))


def wait_for(exc: BaseException, failures: int, cap: float,
             base: float = BACKOFF_BASE) -> Wait | None:
    """How long to wait before trying again after `exc`, `failures` failures so far
    (waits for budget not counted); None if it is final. A backoff is at most `cap`
    seconds; a wait the service or the budget named is what it is (the caller parks it
    when it is long, see `worker.parking`)."""
    if isinstance(exc, NoBudget):
        return Wait(jittered(exc.retry_after), for_budget=True)
    if isinstance(exc, RateLimited):
        return Wait(jittered(exc.retry_after), for_budget=False)
    if isinstance(exc, TransientError):
        return Wait(backoff(failures, cap, base), for_budget=False)
    return None


@dataclass(frozen=True)
class InPlace:
    """How much of the policy is spent in place before the task reschedules itself."""

    attempts: int = 4  # failures (429, 5xx) absorbed in place
    max_wait: float = 5.0  # a longer wait (a long Retry-After) goes back to the queue
    budget_wait: float = 60.0  # seconds in all one call may wait for budget in place
    backoff_base: float = 0.25


IN_PLACE = InPlace()


class Stopped(Exception):  # reads as "raise Stopped()"
    """The caller's work was told to stop (another part of it failed for good)."""


def in_place(call: Callable[[], T], stop: threading.Event | None = None,
             limits: InPlace | None = None, deadline: float | None = None) -> T:
    """Run `call`, retrying it in place under the fleet's policy while the waits are
    short; a final error, a wait beyond `limits` or past `deadline` (a monotonic time:
    the task's own time is running out) raises, and the task reschedules with its
    checkpoints keeping the work. Raises `Stopped` once `stop` is set."""
    limits = limits or IN_PLACE
    failures, waited = 0, 0.0
    while True:
        if stop is not None and stop.is_set():
            raise Stopped()
        try:
            return call()
        except RETRYABLE as exc:
            wait = wait_for(exc, failures + 1, limits.max_wait * 2, limits.backoff_base)
            assert wait is not None
            if wait.for_budget:
                if waited + wait.seconds > limits.budget_wait:
                    raise
            else:
                failures += 1
                if failures >= limits.attempts or wait.seconds > limits.max_wait:
                    raise
            if deadline is not None and time.monotonic() + wait.seconds > deadline:
                raise
            waited += wait.seconds
            time.sleep(wait.seconds)
