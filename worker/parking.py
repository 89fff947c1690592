"""Long waits parked in Redis, not held by a worker.

A task that must wait longer than MAX_RETRY_COUNTDOWN (an hourly bulk cap, a long
Retry-After) is not retried with a countdown: a countdown is an ETA message that a
worker holds unacknowledged, and a message held longer than the broker's visibility
timeout is delivered a second time. Instead the task's signature (its arguments and
options: task id, chord, headers) is parked here with the time it is due, and every
worker releases what is due every few seconds (`release_due`, run by the worker's
timer, see `worker.tasking`). A release sends the same task id again: tasks are
idempotent, and a chord counts a task id once.

Keys:

    sf:parked          zset: parked id -> due time (Unix seconds)
    sf:parked:{id}     JSON: the signature to send when due
    sf:lock:parked     one releaser at a time, fleet-wide
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from worker import store

log = logging.getLogger(__name__)

RELEASE_EVERY = 5.0  # seconds between a worker's releases
RELEASE_LOCK_S = 30  # a releaser that dies frees the lock this fast
BATCH = 500  # most signatures one release sends
RETRY_RELEASE_S = 30  # a signature that could not be sent is tried again this much later


def due_key() -> str:
    return store.key("parked")


def _payload_key(parked_id: str) -> str:
    return store.key("parked", parked_id)


def park(parked_id: str, signature: dict[str, Any], due: float) -> None:
    """Keep `signature` until `due` (Unix seconds). Parking the same id again (a
    redelivered task parking itself twice) replaces the first."""
    r = store.client()
    with r.pipeline(transaction=True) as pipe:
        pipe.set(_payload_key(parked_id), json.dumps(signature, default=str))
        pipe.zadd(due_key(), {parked_id: due})
        pipe.execute()


def waiting() -> int:
    return int(store.client().zcard(due_key()))


def release_due(send: Callable[[dict[str, Any]], None], now: float | None = None) -> int:
    """Send every parked signature that is due; returns how many were sent. One worker
    releases at a time; a releaser killed halfway leaves the rest for the next one (a
    signature sent but not yet removed may be sent twice: tasks are idempotent)."""
    r = store.client()
    due = r.zrangebyscore(due_key(), 0, now or time.time(), start=0, num=BATCH)
    if not due:
        return 0
    try:
        with store.lock("parked", RELEASE_LOCK_S):
            return _release(due, send)
    except store.LockHeld:
        return 0


def _release(parked_ids: list[str], send: Callable[[dict[str, Any]], None]) -> int:
    r = store.client()
    sent = 0
    for parked_id in parked_ids:
        raw = r.get(_payload_key(parked_id))
        if raw is not None:
            try:
                send(json.loads(raw))
                sent += 1
            except Exception:  # the broker is away, say: try this one again later
                log.exception("parked task %s could not be released yet", parked_id)
                r.zadd(due_key(), {parked_id: time.time() + RETRY_RELEASE_S}, xx=True)
                continue
        with r.pipeline(transaction=True) as pipe:
            pipe.zrem(due_key(), parked_id)
            pipe.delete(_payload_key(parked_id))
            pipe.execute()
    return sent
