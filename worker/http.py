"""The one way the fleet talks HTTP: timeouts, budgets and error classes.

Every client sends through `Api.request`, which
- waits for the API's fleet-wide budget (or raises `NoBudget` so the task reschedules),
- stops at once while the API is cooling down after a 429 anywhere in the fleet,
- turns each response into data or into one of the error classes below, which the
  task base class (`worker.tasking`) maps to "retry later" or "stop with a message".
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from worker import metrics, ratelimit

log = logging.getLogger(__name__)

TIMEOUT = (5, 60)  # connect, read (seconds)


class ApiError(Exception):
    """An answer, or no answer, from an external API."""

    def __init__(self, service: str, message: str, status: int | None = None,
                 body: Any = None) -> None:
        # args are the constructor's own, so Celery can rebuild the error from a result
        # (it calls `cls(*args)`); the body stays out of them (large, maybe not JSON).
        super().__init__(service, message, status)
        self.service = service
        self.message = message
        self.status = status
        self.body = body

    def __str__(self) -> str:
        return f"{self.service}: {self.message}"


class AuthError(ApiError):
    """401/403: the credential is wrong. Never retried."""


class ClientError(ApiError):
    """A 4xx other than 401/429: this request is wrong and will stay wrong."""


class TransientError(ApiError):
    """5xx, timeouts, broken bodies: worth retrying with backoff."""


class RateLimited(ApiError):
    """429: retry after `retry_after` seconds, as the service asked."""

    def __init__(self, service: str, retry_after: float, status: int | None = 429,
                 body: Any = None) -> None:
        super().__init__(service, f"rate limited, retry after {retry_after:.1f}s", status, body)
        self.args = (service, retry_after, status)
        self.retry_after = retry_after


def retry_after_seconds(headers: requests.structures.CaseInsensitiveDict | dict,
                        default: float = 1.0) -> float:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or Voucherify's
    `X-Rate-Limit-Retry` (Unix seconds)."""
    now = time.time()
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):  # neither seconds nor a date
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    value = headers.get("X-Rate-Limit-Retry")
    if value:
        try:
            return max(0.0, float(value) - now)
        except ValueError:
            pass
    return default


@dataclass
class Api:
    """One external API: its name, the credentials a 401 blames, its session and budget."""

    service: str
    base_url: str
    credentials: tuple[str, ...]
    budget: ratelimit.Budget | None = None
    session: requests.Session = field(default_factory=requests.Session)
    calls: int = 0

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request and return the response of a 2xx; raise an ApiError otherwise."""
        if self.budget is not None:
            self.budget.acquire()
        url = path if path.startswith("http") else self.base_url.rstrip("/") + path
        kwargs.setdefault("timeout", TIMEOUT)
        self.calls += 1
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.Timeout as exc:
            metrics.add("http_requests", api=self.service, status="timeout")
            raise TransientError(self.service, f"timed out: {method} {path}") from exc
        except requests.ConnectionError as exc:
            metrics.add("http_requests", api=self.service, status="connection")
            raise TransientError(self.service, f"connection failed: {method} {path}") from exc
        metrics.add("http_requests", api=self.service, status=response.status_code)
        return self._check(response, method, path)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise TransientError(self.service, f"{method} {path}: answer is not JSON",
                                 response.status_code, response.text[:200]) from exc

    def _check(self, response: requests.Response, method: str, path: str) -> requests.Response:
        status = response.status_code
        if status < 400:
            return response
        body = _body(response)
        if status in (401, 403):
            names = " and ".join(self.credentials)
            raise AuthError(self.service, f"{status} on {method} {path}: check {names}",
                            status, body)
        if status == 429:
            metrics.add("rate_limited", api=self.service)
            wait = retry_after_seconds(response.headers)
            if self.budget is not None:
                self.budget.cool_down(wait)
            raise RateLimited(self.service, wait, status, body)
        if status >= 500:
            raise TransientError(self.service, f"{status} on {method} {path}", status, body)
        raise ClientError(self.service, f"{status} on {method} {path}: {body}", status, body)


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
