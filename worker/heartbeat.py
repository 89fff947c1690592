"""Which workers are alive, and which queues each consumes: every worker refreshes its
entry on its timer; the exporter (`syncfleet_workers_alive`), `syncfleet health` and the
CLI (before it sends work) read it.

    sf:workers      hash: node name -> JSON {"at": Unix s, "queues": [names]}

A worker stopped cleanly removes its entry; a killed one's entry stops being refreshed
and counts as dead after ALIVE_FOR seconds (and is forgotten after a day).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import suppress
from typing import Any

import redis

from worker import store

log = logging.getLogger(__name__)

BEAT_EVERY = 10.0  # seconds between two refreshes of a worker's entry
ALIVE_FOR = 60.0  # an entry older than this is a dead (or stuck) worker
FORGET_AFTER = 86400.0


def _key() -> str:
    return store.key("workers")


def beat(node: str, queues: list[str], now: float | None = None) -> None:
    entry = {"at": time.time() if now is None else now, "queues": sorted(queues)}
    store.client().hset(_key(), node, json.dumps(entry))


def gone(node: str) -> None:
    store.client().hdel(_key(), node)


def alive(now: float | None = None) -> dict[str, list[str]]:
    """node -> the queues it consumes, for every worker seen in the last ALIVE_FOR s."""
    now = time.time() if now is None else now
    out, forgotten = {}, []
    for node, raw in store.client().hgetall(_key()).items():
        entry = json.loads(raw)
        if now - entry["at"] <= ALIVE_FOR:
            out[node] = entry["queues"]
        elif now - entry["at"] > FORGET_AFTER:
            forgotten.append(node)
    if forgotten:
        store.client().hdel(_key(), *forgotten)
    return out


def per_queue(queues: tuple[str, ...], now: float | None = None) -> dict[str, int]:
    """queue -> how many live workers consume it."""
    consumed = list(alive(now).values())
    return {queue: sum(queue in names for names in consumed) for queue in queues}


def consumed_queues(worker: Any) -> list[str]:
    """What the worker consumes now (after add/cancel_consumer), or what it was told to."""
    task_consumer = getattr(getattr(worker, "consumer", None), "task_consumer", None)
    if task_consumer is not None:
        return [q.name for q in task_consumer.queues]
    return list(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)


def refresh(worker: Any) -> None:
    """The worker's entry, written now (never raises: the next tick tries again)."""
    try:
        beat(worker.hostname, consumed_queues(worker))
    except redis.RedisError as exc:
        log.warning("heartbeat not written: %s", exc)


def stopped(worker: Any) -> None:
    """A clean stop removes the entry (Redis away: it ages out instead)."""
    with suppress(redis.RedisError):
        gone(worker.hostname)


def first_start(app: Any) -> None:
    """The fleet's first start, per GIS scope: the age of 'no scan has succeeded yet'
    counts from it (worker/gis_sync/state.py, `first_seen`)."""
    from worker.gis_sync import state as gis_state
    from worker.settings import get_settings

    try:
        for scope in gis_state.scopes(get_settings()):
            gis_state.first_seen(scope)
    except redis.RedisError as exc:
        log.warning("first start not recorded: %s", exc)
