"""GIS records that could not be synced into a customer.io workspace: retried a bounded
number of times, then parked as dead with their reason (names via `worker.store.key`;
W = the workspace, see `state.workspace`).

    sf:gis:ws:{W}:failed       hash: "person:ID" / "application:ID" -> JSON {reason,
                               first_at, last_at, attempts, next_at}: to retry
    sf:gis:ws:{W}:failed:due   zset: the same names -> when the next retry is due (Unix s)
    sf:gis:ws:{W}:dead         hash: name -> JSON {reason, first_at, last_at, attempts}

Only what a retry needs is kept: the kind and id (a retry reads the record from GIS
again, so it sees GIS's fixes too), never the record itself (personal data). A record
failing again waits longer each time (GIS_SCAN_INTERVAL doubled per attempt, at most a
day); after GIS_FAILED_MAX_ATTEMPTS attempts or GIS_FAILED_MAX_AGE seconds it is dead.
Dead entries go after DEAD_TTL. (A halted run, a wrong key, puts nothing here: its
scan's marks go back to where they were, and the next scan reads those records again.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from worker import store
from worker.settings import Settings

KEEP = 10_000  # most failed records remembered: a runaway GIS must not fill Redis
DEAD_TTL = 30 * 86400
MAX_DELAY = 86400


@dataclass(frozen=True)
class Policy:
    interval: float  # the first retry waits this long (the scan interval)
    max_attempts: int
    max_age: float


def policy(settings: Settings) -> Policy:
    return Policy(interval=settings.gis_scan_interval,
                  max_attempts=settings.gis_failed_max_attempts,
                  max_age=settings.gis_failed_max_age)



def _failed(ws: str) -> str:
    return store.key("gis", "ws", ws, "failed")


def _due(ws: str) -> str:
    return store.key("gis", "ws", ws, "failed", "due")


def _dead(ws: str) -> str:
    return store.key("gis", "ws", ws, "dead")


def name(kind: str, record_id: str) -> str:
    return f"{kind}:{record_id}"


def record(ws: str, failures: Iterable[dict[str, Any]], policy: Policy) -> None:
    """failures: [{"kind", "id", "reason"}]: one more attempt each."""
    now = time.time()
    items = {name(f["kind"], f["id"]): f["reason"] for f in failures}
    if not items:
        return
    known = dict(zip(items, store.client().hmget(_failed(ws), list(items)), strict=True))
    failed, due, dead = {}, {}, {}
    for key, reason in items.items():
        before = json.loads(known[key]) if known[key] else {}
        attempts = before.get("attempts", 0) + 1
        entry = {"reason": reason, "first_at": before.get("first_at", now), "last_at": now,
                 "attempts": attempts}
        if attempts >= policy.max_attempts or now - entry["first_at"] >= policy.max_age:
            dead[key] = entry
            continue
        delay = min(MAX_DELAY, policy.interval * 2 ** (attempts - 1))
        failed[key] = {**entry, "next_at": now + delay}
        due[key] = now + delay
    _write(ws, failed, due, dead, now)


def _write(ws: str, failed: dict[str, dict], due: dict[str, float], dead: dict[str, dict],
           now: float) -> None:
    with store.client().pipeline(transaction=True) as pipe:
        if failed:
            pipe.hset(_failed(ws), mapping={k: json.dumps(v) for k, v in failed.items()})
            pipe.zadd(_due(ws), due)
        if dead:
            pipe.hset(_dead(ws), mapping={k: json.dumps(v) for k, v in dead.items()})
            pipe.hdel(_failed(ws), *dead)
            pipe.zrem(_due(ws), *dead)
        pipe.execute()
    _trim(ws, now)


def _trim(ws: str, now: float) -> None:
    """Keep the lists bounded: the oldest failures beyond KEEP, dead ones past DEAD_TTL."""
    r = store.client()
    over = r.zcard(_due(ws)) - KEEP
    if over > 0:
        latest = r.zrange(_due(ws), -over, -1)  # the latest due: retried last anyway
        r.zrem(_due(ws), *latest)
        r.hdel(_failed(ws), *latest)
    expired = [k for k, raw in r.hgetall(_dead(ws)).items()
               if now - json.loads(raw).get("last_at", now) > DEAD_TTL]
    if expired:
        r.hdel(_dead(ws), *expired)


def clear(ws: str, kind: str, ids: Iterable[str]) -> None:
    """These records synced: off both lists."""
    names = [name(kind, i) for i in ids]
    if names:
        _forget(ws, names)


def _forget(ws: str, names: list[str]) -> bool:
    with store.client().pipeline(transaction=False) as pipe:
        pipe.hdel(_failed(ws), *names)
        pipe.zrem(_due(ws), *names)
        pipe.hdel(_dead(ws), *names)
        return any(pipe.execute())


def due(ws: str, limit: int, now: float | None = None) -> list[tuple[str, str]]:
    """Up to `limit` (kind, id) whose retry is due, the longest waiting first."""
    names = store.client().zrangebyscore(_due(ws), 0, now or time.time(), start=0, num=limit)
    return [tuple(n.split(":", 1)) for n in names]  # type: ignore[misc]


def failing(ws: str) -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in store.client().hgetall(_failed(ws)).items()}


def dead(ws: str) -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in store.client().hgetall(_dead(ws)).items()}


def entry(ws: str, kind: str, record_id: str) -> dict[str, Any] | None:
    """One record's entry, {"list": "failed" | "dead", reason, attempts, ...}, or None."""
    with store.client().pipeline(transaction=False) as pipe:
        pipe.hget(_failed(ws), name(kind, record_id))
        pipe.hget(_dead(ws), name(kind, record_id))
        failing, gone = pipe.execute()
    for listed, raw in (("failed", failing), ("dead", gone)):
        if raw:
            return {"list": listed, **json.loads(raw)}
    return None


def sizes(ws: str) -> dict[str, int]:
    with store.client().pipeline(transaction=False) as pipe:
        pipe.hlen(_failed(ws))
        pipe.hlen(_dead(ws))
        failing, dead = pipe.execute()
    return {"failed": int(failing), "dead": int(dead)}


def drop(ws: str, key: str) -> bool:
    """Forget one record (`kind:id`, or a bare id of either kind) for good."""
    return _forget(ws, [key] if ":" in key else [name("person", key),
                                                  name("application", key)])


def drop_all(ws: str) -> int:
    """Forget every failed and dead record; returns how many."""
    count = sum(sizes(ws).values())
    store.client().delete(_failed(ws), _due(ws), _dead(ws))
    return count
