"""The state of the Voucherify simulator: a project's customers, its async actions (their
phases on the sandbox's clock) and the simulator's settings. HTTP lives in voucherify.py.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def request_id() -> str:
    return "v-" + secrets.token_hex(9)


@dataclass
class VoucherifySettings:
    """The simulator's knobs (POST /admin/voucherify/settings); reset by /admin/reset."""

    bulk_cap: int = 100
    max_body_bytes: int = 10 * 1024 * 1024
    enqueued_ms: float = 50
    in_progress_ms: float = 100

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}; known: {sorted(known)}")
        for name, value in values.items():
            setattr(self, name, type(getattr(self, name))(value))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class AsyncAction:
    """One bulk upsert, processed once its phases have passed on the sandbox's clock."""

    id: str
    request_id: str
    customers: list[dict[str, Any]]
    fail: bool
    size: int
    created_at: datetime
    started: float  # monotonic
    enqueued_s: float
    in_progress_s: float
    result: dict[str, Any] | None = None  # set when processed

    def status(self, now: float) -> str:
        if self.result is not None:
            return "FAILED" if self.fail else "DONE"
        return "ENQUEUED" if now < self.started + self.enqueued_s else "IN_PROGRESS"

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        elapsed = max(0.0, now - self.started)
        total = self.enqueued_s + self.in_progress_s
        body: dict[str, Any] = {
            "id": self.id, "type": "CUSTOMERS.BULK_UPDATE", "status": status,
            "operation_status": {"DONE": "SUCCESS", "FAILED": "FAILED"}.get(status, "UNKNOWN"),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at + timedelta(seconds=min(elapsed, total))),
            "request_id": self.request_id,
            "progress": 100 if self.result is not None else
            (0 if status == "ENQUEUED" else min(99, int(100 * elapsed / max(total, 1e-9)))),
            "object": "async_action",
        }
        if self.result is not None:
            body["processing_time"] = round(self.in_progress_s * 1000)
            body["result"] = self.result
        return body


@dataclass
class Project:
    """A Voucherify project: its customers by source_id and its async actions."""

    settings: VoucherifySettings = field(default_factory=VoucherifySettings)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: dict[str, AsyncAction] = field(default_factory=dict)
    pending: deque[AsyncAction] = field(default_factory=deque)
    clock: Callable[[], float] = time.monotonic  # the sandbox's clock (tests step it)

    def upsert(self, data: dict[str, Any]) -> dict[str, Any]:
        now = iso(datetime.now(UTC))
        key = data.get("source_id") or data.get("id") or "cust_" + secrets.token_hex(12)
        customer = self.customers.get(key)
        if customer is None:
            customer = {"id": "cust_" + secrets.token_hex(12), "created_at": now, "upserts": 0}
            self.customers[key] = customer
        customer.update({k: v for k, v in data.items() if k != "id"})
        customer["upserts"] += 1
        customer["updated_at"] = now
        return customer

    def enqueue(self, customers: list[dict[str, Any]], fail: bool) -> AsyncAction:
        action = AsyncAction("aa_" + secrets.token_hex(9), request_id(), customers, fail,
                             len(customers), datetime.now(UTC), self.clock(),
                             self.settings.enqueued_ms / 1000,
                             self.settings.in_progress_ms / 1000)
        self.actions[action.id] = action
        self.pending.append(action)
        return action

    def settle(self, now: float | None = None) -> None:
        """Process every action whose time has come, in the order they arrived (the
        background worker of the real service; run lazily before anything reads)."""
        now = self.clock() if now is None else now
        while self.pending:
            action = self.pending[0]
            if now < action.started + action.enqueued_s + action.in_progress_s:
                return
            self.pending.popleft()
            action.result = self._process(action)
            action.customers = []  # processed: keep the outcome, not the payload

    def _process(self, action: AsyncAction) -> dict[str, Any]:
        till = iso(datetime.now(UTC) + timedelta(days=1))
        base = {"reports": [], "reports_available_till": till}
        if action.fail:
            return {**base, "done_count": 0, "failed_count": len(action.customers),
                    "errors": [], "message": "The async action failed: internal error. "
                                             "Nothing was stored; send the batch again."}
        errors = []
        for data in action.customers:
            problem = customer_problem(data)
            if problem:
                errors.append({"source_id": str(data.get("source_id")),
                               "key": "invalid_customer", "message": "Invalid customer",
                               "details": problem})
            else:
                self.upsert(data)
        return {**base, "done_count": len(action.customers) - len(errors),
                "failed_count": len(errors), "errors": errors}


def customer_problem(data: dict[str, Any]) -> str | None:
    """What Voucherify refuses in a schema-valid customer (checked when processed)."""
    email = data.get("email")
    if email is not None and not EMAIL.match(email):
        return f"email: must be a valid email address (actual value is '{email}')"
    return None
