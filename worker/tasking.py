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


def backoff(retries: int, cap: float) -> float:
    """Full-jitter exponential backoff: uniform in [base, base * 2**retries], capped."""
    return min(cap, random.uniform(BACKOFF_BASE, BACKOFF_BASE * 2 ** retries))


class FleetTask(Task):
    max_retries = 10
    # Waiting for budget is not a failure: it has its own, larger allowance.
    max_budget_waits = 1000

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except NoBudget as exc:
            raise self._later(exc, exc.retry_after, self.max_budget_waits) from None
        except RateLimited as exc:
            raise self._later(exc, exc.retry_after, self.max_retries) from None
        except TransientError as exc:
            cap = get_settings().max_retry_countdown
            raise self._later(exc, backoff(self.request.retries, cap), self.max_retries) from None

    def _later(self, exc: Exception, wait: float, max_retries: int) -> Exception:
        cap = get_settings().max_retry_countdown
        countdown = min(cap, wait + random.uniform(0, min(1.0, wait / 10 + 0.1)))
        log.warning("task=%s retry_in=%.1fs reason=%s", self.name, countdown, exc)
        return self.retry(exc=exc, countdown=countdown, max_retries=max_retries)
