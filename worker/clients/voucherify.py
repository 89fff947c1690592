"""Voucherify: bulk customer upserts and the async actions that report their outcome.

Budgets are fleet-wide: every call takes one from `VOUCHERIFY_MAX_RPM`, a bulk call also
one from `VOUCHERIFY_MAX_BULK_PER_HOUR` when that is set (older plans cap bulk calls per
hour). A 429 makes `worker.http` cool the whole fleet down for the Retry-After /
X-Rate-Limit-Retry the service named; Voucherify "blocks access immediately" when
pushed, so nothing here retries tightly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from worker.http import Api, ApiError, ClientError, TransientError
from worker.ratelimit import Budget, per_hour, per_minute
from worker.settings import Settings, get_settings

FINAL = ("DONE", "FAILED")
# Polls of an async action: short first (small bulks finish fast), then growing, so a
# slow queue costs few calls of the per-minute budget.
POLL_FIRST = 0.3
POLL_GROWTH = 2.0
POLL_MAX = 10.0


class AsyncActionTimeout(TransientError):
    """The async action is still running after the wait; the caller retries later."""


@dataclass
class AsyncOutcome:
    """What an async action reports once it is final."""

    id: str
    status: str
    done_count: int
    failed_count: int
    errors: list[dict[str, Any]]
    message: str = ""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> AsyncOutcome:
        result = body.get("result") or {}
        errors = result.get("errors") or result.get("failed") or []
        return cls(id=str(body.get("id", "")), status=str(body.get("status", "")),
                   done_count=int(result.get("done_count") or 0),
                   failed_count=int(result.get("failed_count") or 0),
                   errors=[e for e in errors if isinstance(e, dict)],
                   message=str(result.get("message") or body.get("message") or ""))


class VoucherifyClient:
    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        app_id = settings.secret("VOUCHERIFY_APPLICATION_ID")
        token = settings.secret("VOUCHERIFY_SECRET_KEY")
        # Budgets are per project (its application id): each project has its own limits.
        budget = Budget("voucherify", per_minute(settings.voucherify_max_rpm),
                        key=f"voucherify:{app_id}", margin=settings.rate_limit_margin)
        self.api = Api("voucherify", settings.voucherify_api_url,
                       credentials=("VOUCHERIFY_APPLICATION_ID", "VOUCHERIFY_SECRET_KEY"),
                       budget=budget)
        self.api.session.headers.update({"X-App-Id": app_id, "X-App-Token": token})
        per_hour_cap = settings.voucherify_max_bulk_per_hour
        self.bulk_budget = (Budget("voucherify", per_hour(per_hour_cap),
                                   key=f"voucherify-bulk:{app_id}",
                                   margin=settings.rate_limit_margin)
                            if per_hour_cap > 0 else None)

    @property
    def calls(self) -> int:
        return self.api.calls

    def bulk_upsert(self, customers: list[dict[str, Any]]) -> str:
        """Queue an upsert of `customers` (matched by source_id); returns the async action id."""
        if self.bulk_budget is not None:
            self.bulk_budget.acquire()
        body = self.api.json("POST", "/v1/customers/bulk/async", json=customers)
        action_id = body.get("async_action_id")
        if not action_id:
            raise ApiError("voucherify", f"bulk upsert answered without async_action_id: {body}")
        return str(action_id)

    def check_credentials(self) -> None:
        """One cheap authenticated call (a customer that does not exist: 404 is fine),
        so a wrong key stops a run before it fetches anything. AuthError on 401."""
        try:
            self.api.request("GET", "/v1/customers/syncfleet-credentials-check")
        except ClientError as exc:
            if exc.status != 404:
                raise

    def async_action(self, action_id: str) -> dict[str, Any]:
        return self.api.json("GET", f"/v1/async-actions/{quote(action_id, safe='')}")

    def wait_for(self, action_id: str, timeout: float = 60.0, first: float = POLL_FIRST,
                 patience: Callable[[Callable[[], Any]], Any] | None = None) -> AsyncOutcome:
        """Poll until DONE or FAILED, with growing intervals; AsyncActionTimeout after
        `timeout` seconds (the action keeps running: poll it again later). `patience`
        wraps each poll (e.g. short in-place retries of a 5xx)."""
        deadline = time.monotonic() + timeout
        interval = first
        patience = patience or (lambda call: call())
        while True:
            time.sleep(interval)
            body = patience(lambda: self.async_action(action_id))
            if str(body.get("status")) in FINAL:
                return AsyncOutcome.from_body(body)
            if time.monotonic() + interval > deadline:
                raise AsyncActionTimeout("voucherify", f"async action {action_id} still "
                                         f"{body.get('status')} after {timeout:.0f}s")
            # A first poll without a wait (first=0) must not make every later poll
            # immediate too: a zero interval would spend the per-minute budget.
            interval = min(POLL_MAX, max(interval * POLL_GROWTH, POLL_FIRST))
