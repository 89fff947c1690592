"""Every Redis key of the GIS -> customer.io job (names via `worker.store.key`).

    sf:lock:gis-scan           the scan lock (token = the scan's task id; timeout, renewed)
    sf:gis:mark                hash: people / applications / incoming -> high-water mark
                               (the newest `updated_at` seen, ISO string from GIS)
    sf:gis:baseline            set when a cold start's fan-out was handed over; absent =
                               first run or Redis lost its data (they look alike)
    sf:gis:sent                hash: person id -> JSON {attribute: 8-hex digest} of what
                               customer.io last accepted (digests keep it small)
    sf:gis:steps               hash: application id -> last step accepted by customer.io
    sf:gis:failed              hash: "person:ID" / "application:ID" -> JSON {reason, at,
                               record}; the next scan retries them
    sf:gis:runs                list: the last GIS_RUNS_KEPT run summaries, newest first
    sf:gis:runs:open           zset: run id -> start time, until its summary is written
    sf:gis:run:{id}            hash: one run's counters while it runs (expires)
    sf:gis:run:{id}:halt       set when a 401 stops a run: its remaining tasks do nothing
    sf:gis:run:{id}:done       the run summary was written (the chord body may run twice)
    sf:gis:token:{fp}          a refreshed GIS access token (clients/gis.py)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis
from redis.exceptions import LockError

from worker import store

RUN_TTL = 7 * 86400
FAILED_KEEP = 10_000  # most failed records remembered


def _k(*parts: object) -> str:
    return store.key("gis", *parts)


MARK = _k("mark")
BASELINE = _k("baseline")
SENT = _k("sent")
STEPS = _k("steps")
FAILED = _k("failed")
RUNS = _k("runs")
OPEN_RUNS = _k("runs", "open")
SCAN_LOCK = store.key("lock", "gis-scan")


def r() -> redis.Redis:
    return store.client()


# -- the scan lock --------------------------------------------------------------------
class ScanLockHeld(Exception):
    pass


@contextmanager
def scan_lock(token: str, timeout: float) -> Iterator[None]:
    """Hold the scan lock while the block runs, renewing it every timeout/3.

    A redelivered scan (same task id, its worker died) takes its own lock over at once
    instead of waiting for the timeout."""
    lock = r().lock(SCAN_LOCK, timeout=timeout, blocking=False, thread_local=False)
    if not lock.acquire(token=token):
        if r().get(SCAN_LOCK) != token:
            raise ScanLockHeld(SCAN_LOCK)
        lock.local.token = token.encode()
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(timeout / 3):
            with suppress(LockError):
                lock.extend(timeout, replace_ttl=True)

    renewer = threading.Thread(target=renew, name="gis-scan-lock", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        with suppress(LockError):
            lock.release()


# -- marks and baseline ---------------------------------------------------------------
def marks() -> dict[str, str]:
    return r().hgetall(MARK)


def set_marks(values: dict[str, str]) -> None:
    if values:
        r().hset(MARK, mapping=values)


def has_baseline() -> bool:
    return bool(r().exists(BASELINE))


def set_baseline(run_id: str) -> None:
    r().set(BASELINE, json.dumps({"run": run_id, "at": int(time.time())}))


# -- people: what customer.io last accepted -------------------------------------------
def digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(raw, digest_size=4).hexdigest()


def digests(attributes: dict[str, Any]) -> dict[str, str]:
    return {name: digest(value) for name, value in attributes.items()}


def sent(person_ids: Iterable[str]) -> dict[str, dict[str, str] | None]:
    ids = list(person_ids)
    if not ids:
        return {}
    raws = r().hmget(SENT, ids)
    return {pid: (json.loads(raw) if raw else None) for pid, raw in zip(ids, raws, strict=True)}


def save_sent(values: dict[str, dict[str, str]]) -> None:
    if values:
        r().hset(SENT, mapping={pid: json.dumps(d, separators=(",", ":"))
                                for pid, d in values.items()})


# -- applications: the last step customer.io accepted ---------------------------------
def steps(application_ids: Iterable[str]) -> dict[str, int | None]:
    ids = list(application_ids)
    if not ids:
        return {}
    raws = r().hmget(STEPS, ids)
    return {aid: (int(raw) if raw is not None else None)
            for aid, raw in zip(ids, raws, strict=True)}


def save_steps(values: dict[str, int]) -> None:
    if values:
        r().hset(STEPS, mapping={aid: str(step) for aid, step in values.items()})


# -- failed records -------------------------------------------------------------------
def record_failures(failures: list[dict[str, Any]]) -> None:
    """failures: [{"kind": "person"|"application", "id", "reason", "record"}]."""
    if not failures:
        return
    now = int(time.time())
    r().hset(FAILED, mapping={
        f"{f['kind']}:{f['id']}": json.dumps({"reason": f["reason"], "at": now,
                                              "record": f.get("record")})
        for f in failures})
    size = r().hlen(FAILED)
    if size > FAILED_KEEP:  # a runaway GIS must not fill Redis
        r().hdel(FAILED, *r().hkeys(FAILED)[: size - FAILED_KEEP])


def clear_failures(kind: str, ids: Iterable[str]) -> None:
    fields = [f"{kind}:{i}" for i in ids]
    if fields:
        r().hdel(FAILED, *fields)


def failures() -> dict[str, dict[str, Any]]:
    return {name: json.loads(raw) for name, raw in r().hgetall(FAILED).items()}


# -- runs -----------------------------------------------------------------------------
def run_key(run_id: str) -> str:
    return _k("run", run_id)


def start_run(run_id: str, meta: dict[str, Any]) -> None:
    key = run_key(run_id)
    r().hset(key, mapping={f"meta:{k}": json.dumps(v) for k, v in meta.items()})
    r().expire(key, RUN_TTL)
    r().zadd(OPEN_RUNS, {run_id: time.time()}, nx=True)


def stale_runs(older_than: float) -> list[str]:
    """Runs started more than `older_than` seconds ago that never got a summary (a
    sync task exhausted its retries, or a message was lost: the chord body never ran)."""
    return r().zrangebyscore(OPEN_RUNS, 0, time.time() - older_than)


def count(run_id: str | None, counters: dict[str, int]) -> None:
    if not run_id:
        return
    pipe = r().pipeline(transaction=False)
    for name, value in counters.items():
        if value:
            pipe.hincrby(run_key(run_id), name, value)
    pipe.execute()


def add_run_errors(run_id: str | None, errors: list[dict[str, Any]], keep: int = 100) -> None:
    if not run_id or not errors:
        return
    key = run_key(run_id) + ":errors"
    r().rpush(key, *[json.dumps(e) for e in errors])
    r().ltrim(key, 0, keep - 1)
    r().expire(key, RUN_TTL)


def halt(run_id: str | None, reason: str) -> None:
    if run_id:
        r().set(run_key(run_id) + ":halt", reason, ex=RUN_TTL)


def halted(run_id: str | None) -> str | None:
    return r().get(run_key(run_id) + ":halt") if run_id else None


def finish_run(run_id: str, extra: dict[str, Any], keep: int) -> dict[str, Any] | None:
    """Build the run's summary from its counters and keep it in the runs list, once."""
    key = run_key(run_id)
    r().zrem(OPEN_RUNS, run_id)
    if not r().set(key + ":done", "1", nx=True, ex=RUN_TTL):
        return None
    raw = r().hgetall(key)
    summary: dict[str, Any] = {"run": run_id}
    for name, value in raw.items():
        if name.startswith("meta:"):
            summary[name[5:]] = json.loads(value)
        else:
            summary[name] = int(value)
    summary["errors"] = [json.loads(e) for e in r().lrange(key + ":errors", 0, -1)]
    halted_by = halted(run_id)
    if halted_by:
        summary["halted"] = halted_by
    summary.update(extra)
    r().lpush(RUNS, json.dumps(summary, separators=(",", ":")))
    r().ltrim(RUNS, 0, keep - 1)
    return summary


def runs(n: int = 10) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in r().lrange(RUNS, 0, max(0, n - 1))]
