"""customer.io Track API: identify, track an event, the v2 batch (docs/api-contracts.md, 1).

Every request goes through `worker.http.Api` with the fleet-wide budget
CUSTOMERIO_MAX_RPS, so however many workers run, the fleet stays under it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from worker.http import Api, ClientError
from worker.ratelimit import PacedBudget, per_second
from worker.settings import Settings

BATCH_MAX_BYTES = 500_000 - 2_000  # "smaller than 500kb", with a margin
ENVELOPE = len('{"batch":[]}')
ITEM_MAX_BYTES = 32_000
CREDENTIALS = ("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY")


@dataclass
class ItemError:
    """One batch item customer.io refused (207) or that could not be sent at all."""

    index: int
    reason: str


def identify_item(person_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "person", "identifiers": {"id": person_id}, "action": "identify",
            "attributes": attributes}


def event_item(person_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "person", "identifiers": {"id": person_id}, "action": "event",
            "id": event["id"], "name": event["name"], "timestamp": event["timestamp"],
            "attributes": event["data"]}


def _size(item: Any) -> int:
    return len(json.dumps(item, separators=(",", ":")).encode())


def split_batches(items: list[dict[str, Any]], max_bytes: int = BATCH_MAX_BYTES,
                  item_max: int = ITEM_MAX_BYTES
                  ) -> tuple[list[list[tuple[int, dict[str, Any]]]], list[ItemError]]:
    """Chunks of (original index, item) under `max_bytes` each; items over `item_max`
    come back as errors instead (customer.io would refuse them)."""
    chunks: list[list[tuple[int, dict[str, Any]]]] = []
    errors: list[ItemError] = []
    current: list[tuple[int, dict[str, Any]]] = []
    used = ENVELOPE
    for index, item in enumerate(items):
        size = _size(item)
        if size > item_max:
            errors.append(ItemError(index, f"item of {size} bytes exceeds {item_max}"))
            continue
        if current and used + size + 1 > max_bytes:
            chunks.append(current)
            current, used = [], ENVELOPE
        current.append((index, item))
        used += size + 1
    if current:
        chunks.append(current)
    return chunks, errors


class CustomerIo:
    def __init__(self, settings: Settings) -> None:
        site = settings.secret("CUSTOMERIO_SITE_ID")
        key = settings.secret("CUSTOMERIO_API_KEY")
        budget = PacedBudget("customerio", per_second(settings.customerio_max_rps),
                             margin=settings.rate_limit_margin)
        self.api = Api("customerio", settings.customerio_track_url, CREDENTIALS, budget)
        self.api.session.auth = (site, key)

    @property
    def calls(self) -> int:
        return self.api.calls

    def check(self) -> None:
        """One cheap read-only call (the account's region): AuthError on a wrong key."""
        self.api.json("GET", "/api/v1/accounts/region")

    def identify(self, person_id: str, attributes: dict[str, Any]) -> None:
        self.api.json("PUT", f"/api/v1/customers/{quote(person_id, safe='')}",
                      json=attributes)

    def track(self, person_id: str, event: dict[str, Any]) -> None:
        body = {"name": event["name"], "id": event["id"], "timestamp": event["timestamp"],
                "data": event["data"]}
        self.api.json("POST", f"/api/v1/customers/{quote(person_id, safe='')}/events",
                      json=body)

    def batch(self, items: list[dict[str, Any]]) -> list[ItemError]:
        """Send `items` in as few requests as the size limits allow; returns the items
        (by index into `items`) that customer.io refused. A whole request refused (a 400
        or 413) refuses each of its items, as per-record sends would; 401/429/5xx raise
        as usual (the task halts or retries)."""
        chunks, errors = split_batches(items)
        for chunk in chunks:
            try:
                answer = self.api.json("POST", "/api/v2/batch",
                                       json={"batch": [item for _, item in chunk]})
            except ClientError as exc:
                errors.extend(ItemError(index, str(exc)) for index, _ in chunk)
                continue
            for error in (answer or {}).get("errors") or []:
                position = error.get("batch_index")
                if isinstance(position, int) and 0 <= position < len(chunk):
                    reason = error.get("message") or error.get("reason") or "refused"
                    if error.get("field"):
                        reason = f"{error['field']}: {reason}"
                    errors.append(ItemError(chunk[position][0], str(reason)))
        return errors
