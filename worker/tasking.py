"""The one task base class: the fleet's retry policy (`worker.retry`) applied by
rescheduling the task, and the time a task may take.

- Every task is bounded: it should be done (or have checkpointed and asked to go on
  with `retry.Continue`) by `deadline()`, a few seconds before its soft time limit.
  Short tasks are what let a dead worker's messages come back within a minute: the
  broker's visibility timeout only has to outlast the longest task and countdown.
- A wait up to MAX_RETRY_COUNTDOWN is a retry with that countdown; a longer one (an
  hourly bulk cap, a long Retry-After) is parked in Redis (`worker.parking`) and
  released by a worker when it is due, so no worker holds a message that long.
- Waits for budget, failures and continuations have separate allowances: a task that
  waited long for the fleet's budget still gets all its tries at the service.
- A task stopped by its soft time limit is retried like a failure (backoff): its
  checkpoints keep what it had done.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task, bootsteps
from celery.exceptions import MaxRetriesExceededError, Retry, SoftTimeLimitExceeded

from worker import heartbeat, metrics, parking, recovery, retry
from worker.settings import get_settings

log = logging.getLogger(__name__)

DEADLINE_MARGIN = 3.0  # seconds kept before the soft time limit to checkpoint and return
# The `reason` label of the task_retries counter, by kind of retry.
RETRY_REASONS = {"budget_waits": "budget", "continues": "continue"}


class FleetTask(Task):
    max_retries = 10
    # Waiting for budget is not a failure: it has its own, larger allowance, counted in the
    # message header `budget_waits` (Celery's `retries` counts every kind).
    max_budget_waits: int | None = 1000
    # Going on after a checkpoint is progress, not failure: counted in `continues`.
    max_continues: int | None = 10_000
    backoff_base = retry.BACKOFF_BASE

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.request.started_at = time.monotonic()
        try:
            return self._run_once(*args, **kwargs)
        finally:
            metrics.task_ran(self.name, time.monotonic() - self.request.started_at)

    def _run_once(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except retry.Continue as exc:
            raise self._later(exc, retry.Wait(0.0, for_budget=False), kind="continues") \
                from None
        except (*retry.RETRYABLE, SoftTimeLimitExceeded) as exc:
            cap = get_settings().max_retry_countdown
            wait = retry.wait_for(exc, self.failures, cap, self.backoff_base) or \
                retry.Wait(retry.backoff(self.failures, cap, self.backoff_base), False)
            try:
                raise self._later(exc, wait,
                                  kind="budget_waits" if wait.for_budget else None) from None
            except (*retry.RETRYABLE, SoftTimeLimitExceeded, MaxRetriesExceededError) as final:
                log.error("task=%s gave up after %d retries: %s", self.name,
                          self.request.retries, final)
                return self.give_up(final, *args, **kwargs)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        metrics.add("task_failures", task=self.name)

    def give_up(self, exc: Exception, *args: Any, **kwargs: Any) -> Any:
        """Retries exhausted: fail with the error. A task that must always report back
        (a chord's header, a run's walk) overrides this to return a record instead: a
        failed header would keep the chord from its body."""
        raise exc

    def deadline(self) -> float:
        """The monotonic time by which this delivery should have checkpointed and
        returned: its soft time limit minus a margin."""
        soft = (self.request.timelimit or (None, None))[1] or self.soft_time_limit or \
            self.app.conf.task_soft_time_limit or get_settings().task_soft_time_limit
        started = getattr(self.request, "started_at", None) or time.monotonic()
        return started + max(1.0, float(soft) - DEADLINE_MARGIN)

    def _count(self, kind: str) -> int:
        return int((self.request.headers or {}).get(kind) or
                   getattr(self.request, kind, None) or 0)

    @property
    def budget_waits(self) -> int:
        return self._count("budget_waits")

    @property
    def continues(self) -> int:
        return self._count("continues")

    @property
    def failures(self) -> int:
        """Retries so far that were failures (429, 5xx, time limits), not waits for
        budget or continuations."""
        return self.request.retries - self.budget_waits - self.continues

    def _later(self, exc: Exception, wait: retry.Wait, kind: str | None = None) -> Exception:
        """Retry after `wait`: with a countdown, or parked when it is long."""
        metrics.add("task_retries", task=self.name, reason=RETRY_REASONS.get(kind or "", "error"))
        counts = {"budget_waits": self.budget_waits, "continues": self.continues}
        allowance = {"budget_waits": self.max_budget_waits,
                     "continues": self.max_continues}.get(kind or "", self.max_retries)
        # Celery gives up when retries + 1 > max_retries; shift this kind's allowance by
        # the other kinds' counts so each kind is limited on its own.
        others = self.request.retries - (counts[kind] if kind else self.failures)
        max_retries = None if allowance is None else allowance + others
        if kind:
            counts[kind] += 1
        if wait.seconds > get_settings().max_retry_countdown:
            return self._park(exc, wait, counts, max_retries)
        if kind != "continues":
            log.warning("task=%s retry_in=%.1fs reason=%s", self.name, wait.seconds, exc)
        return self.retry(exc=exc, countdown=wait.seconds, max_retries=max_retries,
                          headers=counts)

    def _park(self, exc: Exception, wait: retry.Wait, counts: dict[str, int],
              max_retries: int | None) -> Exception:
        if max_retries is not None and self.request.retries >= max_retries:
            raise exc  # this kind's allowance is spent, as retry() would decide
        signature = self.signature_from_request(
            self.request, None, None, retries=self.request.retries + 1,
            headers={**(self.request.headers or {}), **counts})
        due = time.time() + wait.seconds
        parking.park(self.request.id, dict(signature), due)
        log.warning("task=%s parked_for=%.1fs reason=%s", self.name, wait.seconds, exc)
        return Retry(f"parked for {wait.seconds:.0f}s", exc=exc,
                     when=datetime.fromtimestamp(due, UTC))


class ReleaseParked(bootsteps.StartStopStep):
    """Every worker releases the parked tasks that are due (one at a time fleet-wide)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        app = worker.app
        self.tref = worker.timer.call_repeatedly(
            parking.RELEASE_EVERY + random.uniform(0, 1), _release, (app,), priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()


class Heartbeat(bootsteps.StartStopStep):
    """Every worker refreshes its entry of live workers (`worker/heartbeat.py`) every
    BEAT_EVERY seconds, and removes it when it stops cleanly."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        heartbeat.first_start(worker.app)
        heartbeat.refresh(worker)
        self.tref = worker.timer.call_repeatedly(heartbeat.BEAT_EVERY, heartbeat.refresh,
                                                 (worker,), priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        heartbeat.stopped(worker)


def _look_after_runs(_app: Celery) -> None:
    recovery.look_after()


# What else every worker does on that timer: chore(app). The runs of both jobs that lost
# a message are found and finished (worker/recovery.py).
CHORES: list[Callable[[Celery], None]] = [_look_after_runs]


def _release(app: Celery) -> None:
    try:
        parking.release_due(lambda sig: app.signature(sig).apply_async())
    except Exception:  # Redis away: the next tick tries again
        log.exception("releasing parked tasks failed")
    for chore in CHORES:
        try:
            chore(app)
        except Exception:
            log.exception("%s failed", chore.__qualname__)


def forget_results(app: Celery, task_ids: list[str]) -> None:
    """Delete these tasks' stored results (a chord body, once it has read its headers'),
    500 keys per round trip."""
    backend = app.backend
    for i in range(0, len(task_ids), 500):
        backend.client.delete(*[backend.get_key_for_task(t) for t in task_ids[i:i + 500]])
