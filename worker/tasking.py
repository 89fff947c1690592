"""The one task base class: which failures are retried, and how long to wait.

- `RateLimited` (a 429) and `NoBudget` wait as long as the service (or the fleet-wide
  budget) asks, plus jitter.
- `TransientError` (5xx, timeouts, broken bodies) backs off exponentially with jitter.
- `AuthError`, `ClientError`, `MissingSetting` fail at once with their message: a
  retry could not fix them, and a retry storm against a 401 can get a key revoked.
Every wait is capped by MAX_RETRY_COUNTDOWN, which settings keep below the broker's
visibility timeout so that no message is delivered twice while it waits.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task

from worker.http import RateLimited, TransientError
from worker.ratelimit import NoBudget
from worker.settings import get_settings

log = logging.getLogger(__name__)

BACKOFF_BASE = 2.0  # seconds; doubled each retry


def backoff(retries: int, cap: float, base: float = BACKOFF_BASE) -> float:
    """Full-jitter exponential backoff: uniform in [base, base * 2**retries], capped."""
    return min(cap, random.uniform(base, base * 2 ** retries))


class FleetTask(Task):
    max_retries = 10
    # Waiting for budget is not a failure: it has its own, larger allowance, counted in the
    # message header `budget_waits` (Celery's `retries` counts both kinds).
    max_budget_waits: int | None = 1000
    backoff_base = BACKOFF_BASE

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except NoBudget as exc:
            raise self._later(exc, exc.retry_after, budget_wait=True) from None
        except RateLimited as exc:
            raise self._later(exc, exc.retry_after) from None
        except TransientError as exc:
            cap = get_settings().max_retry_countdown
            raise self._later(exc, backoff(self.failures, cap, self.backoff_base)) from None

    @property
    def budget_waits(self) -> int:
        return int(getattr(self.request, "budget_waits", None) or 0)

    @property
    def failures(self) -> int:
        """Retries so far that were failures (429, 5xx), not waits for budget."""
        return self.request.retries - self.budget_waits

    def _later(self, exc: Exception, wait: float, budget_wait: bool = False) -> Exception:
        cap = get_settings().max_retry_countdown
        countdown = min(cap, wait + random.uniform(0, min(1.0, wait / 10 + 0.1)))
        log.warning("task=%s retry_in=%.1fs reason=%s", self.name, countdown, exc)
        # Celery gives up when retries + 1 > max_retries; shift each allowance by the
        # other kind's count so each kind is limited on its own.
        allowance, other = ((self.max_budget_waits, self.failures) if budget_wait
                            else (self.max_retries, self.budget_waits))
        max_retries = None if allowance is None else allowance + other
        waits = self.budget_waits + int(budget_wait)
        return self.retry(exc=exc, countdown=countdown, max_retries=max_retries,
                          headers={"budget_waits": waits})
