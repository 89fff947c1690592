"""The one task base class: the fleet's retry policy (`worker.retry`) applied by
rescheduling the task.

Every wait is capped by MAX_RETRY_COUNTDOWN, which the settings keep below the broker's
visibility timeout, so that no message is delivered twice while it waits. Waits for
budget and failures have separate allowances: a task that waited long for the fleet's
budget still gets all its tries at the service.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import MaxRetriesExceededError

from worker import retry
from worker.settings import get_settings

log = logging.getLogger(__name__)


class FleetTask(Task):
    max_retries = 10
    # Waiting for budget is not a failure: it has its own, larger allowance, counted in the
    # message header `budget_waits` (Celery's `retries` counts both kinds).
    max_budget_waits: int | None = 1000
    backoff_base = retry.BACKOFF_BASE

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except retry.RETRYABLE as exc:
            cap = get_settings().max_retry_countdown
            wait = retry.wait_for(exc, self.failures, cap, self.backoff_base)
            assert wait is not None
            try:
                raise self._later(exc, wait) from None
            except (*retry.RETRYABLE, MaxRetriesExceededError) as final:
                log.error("task=%s gave up after %d retries: %s", self.name,
                          self.request.retries, final)
                return self.give_up(final, *args, **kwargs)

    def give_up(self, exc: Exception, *args: Any, **kwargs: Any) -> Any:
        """Retries exhausted: fail with the error. A task that must always report back
        (a chord's header, a run's walk) overrides this to return a record instead: a
        failed header would keep the chord from its body."""
        raise exc

    @property
    def budget_waits(self) -> int:
        return int(getattr(self.request, "budget_waits", None) or 0)

    @property
    def failures(self) -> int:
        """Retries so far that were failures (429, 5xx), not waits for budget."""
        return self.request.retries - self.budget_waits

    def _later(self, exc: Exception, wait: retry.Wait) -> Exception:
        log.warning("task=%s retry_in=%.1fs reason=%s", self.name, wait.seconds, exc)
        # Celery gives up when retries + 1 > max_retries; shift each allowance by the
        # other kind's count so each kind is limited on its own.
        allowance, other = ((self.max_budget_waits, self.failures) if wait.for_budget
                            else (self.max_retries, self.budget_waits))
        max_retries = None if allowance is None else allowance + other
        waits = self.budget_waits + int(wait.for_budget)
        return self.retry(exc=exc, countdown=wait.seconds, max_retries=max_retries,
                          headers={"budget_waits": waits})
