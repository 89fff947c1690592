"""Every Redis key of the GIS -> customer.io job (names via `worker.store.key`).

    sf:lock:gis-scan           the scan lock (token = the scan's task id; timeout, renewed)
    sf:gis:mark                hash: people / applications / incoming -> high-water mark
                               (the newest `updated_at` seen, ISO string from GIS)
    sf:gis:baseline            set when a cold start's fan-out was handed over; absent =
                               first run or Redis lost its data (they look alike)
    sf:gis:last_success        when the last scan finished without a halt (Unix seconds)
    sf:gis:sent                hash: person id -> JSON {attribute: 8-hex digest} of what
                               customer.io last accepted (digests keep it small)
    sf:gis:steps               hash: application id -> last step accepted by customer.io
    sf:gis:failed, :failed:due, sf:gis:dead   the failed records (worker/gis_sync/failed.py)
    sf:gis:run:{id}            a scan's or backfill's run record and counters
                               (`worker.runs`; expires after RUN_TTL)
    sf:gis:run:{id}:summary    its summary, written once (`worker.runs`)
    sf:gis:run:{id}:errors     set: the records the run could not sync (JSON: kind, id,
                               reason), each once, at most NOTES_KEPT
    sf:gis:run:{id}:warnings   set: the fields it dropped (kind, id, field, reason)
    sf:gis:run:{id}:walk:{s}   hash (JSON values): stream s's walk: cursor, pages, newest
                               updated_at handed over, done, moves_marks, holds_lock;
                               the "retries" walk: names (kind:id) and offset
    sf:gis:run:{id}:walks      set: the streams still walking
    sf:gis:run:{id}:launched   set: parts (a page's records) handed to the broker
    sf:gis:run:{id}:finished   set: parts whose sync tasks have all reported
    sf:gis:runs:open           zset: run id -> start time, until its summary is written
    sf:gis:token:{fp}          a refreshed GIS access token (clients/gis.py)
    sf:gis:token:{fp}:refresh  the refresh token that came with it
    sf:lock:gis-token-refresh  one token refresh at a time, fleet-wide
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import redis

from worker import runs, store
from worker.clients.gis import Cursor

log = logging.getLogger(__name__)

RUN_TTL = 7 * 86400
NOTES_KEPT = 1000  # errors and warnings named in a run's summary (their counts are exact)
# A run none of whose tasks has done anything for this long lost a message: a later scan
# closes it as incomplete. Longer than any retry, park or redelivery of a run's task.
STALE_AFTER = 3600


def _k(*parts: object) -> str:
    return store.key("gis", *parts)


MARK = _k("mark")
BASELINE = _k("baseline")
SENT = _k("sent")
STEPS = _k("steps")
OPEN_RUNS = _k("runs", "open")
LAST_SUCCESS = _k("last_success")
SCAN_LOCK = "gis-scan"
JOB = "gis"
RETRIES = "retries"  # the walk over failed records due for a retry


def r() -> redis.Redis:
    return store.client()


# -- marks and baseline ---------------------------------------------------------------
def marks() -> dict[str, str]:
    return r().hgetall(MARK)


def set_marks(values: dict[str, str]) -> None:
    if values:
        r().hset(MARK, mapping=values)


def restore_marks(values: dict[str, str]) -> None:
    """Put the marks back as they were (a halted run's)."""
    with r().pipeline(transaction=True) as pipe:
        pipe.delete(MARK)
        if values:
            pipe.hset(MARK, mapping=values)
        pipe.execute()


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


# -- runs (the run vocabulary of worker.runs) ------------------------------------------
def start_run(run_id: str, kind: str, /, **fields: Any) -> None:
    runs.start(JOB, run_id, kind, ttl=RUN_TTL, **fields)
    r().zadd(OPEN_RUNS, {run_id: time.time()}, nx=True)


def stale_runs(idle_for: float) -> list[str]:
    """Runs without a summary that nothing has happened to for `idle_for` seconds: a
    message was lost (a walk step or a chord body never ran)."""
    return r().zrangebyscore(OPEN_RUNS, 0, time.time() - idle_for)


def count(run_id: str | None, counters: dict[str, int]) -> None:
    if run_id:
        runs.count(JOB, run_id, counters)


def add_run_notes(run_id: str | None, errors: list[dict[str, Any]],
                  warnings: list[dict[str, Any]]) -> None:
    """The records this run rejected and the fields it dropped, each named once (sets:
    a record handled twice in a run is named once), at most NOTES_KEPT of each."""
    if not run_id:
        return
    for name, notes in (("errors", errors), ("warnings", warnings)):
        key = runs.key(JOB, run_id, name)
        if notes and r().scard(key) < NOTES_KEPT:
            with r().pipeline(transaction=False) as pipe:
                pipe.sadd(key, *[json.dumps(n, sort_keys=True) for n in notes])
                pipe.expire(key, RUN_TTL)
                pipe.execute()


def run_notes(run_id: str, name: str) -> list[dict[str, Any]]:
    return sorted((json.loads(n) for n in r().smembers(runs.key(JOB, run_id, name))),
                  key=lambda n: (n.get("kind", ""), n.get("id", ""), n.get("field", "")))


def halt(run_id: str | None, reason: str) -> None:
    if run_id:
        runs.halt(JOB, run_id, reason)


def halted(run_id: str | None) -> str | None:
    return runs.halted(JOB, run_id) if run_id else None


def finish_run(run_id: str, keep: int, incomplete: bool = False, **extra: Any
               ) -> dict[str, Any] | None:
    """The run's record, counters and failed records become its summary, kept once;
    None if it was written already (the chord body may be delivered twice)."""
    r().zrem(OPEN_RUNS, run_id)
    record = runs.get(JOB, run_id) or {"run_id": run_id, "job": JOB}
    errors, warnings = run_notes(run_id, "errors"), run_notes(run_id, "warnings")
    failed = record.get("people_failed", 0) + record.get("applications_failed", 0)
    status = runs.INCOMPLETE if incomplete else runs.status_of(halted(run_id), failed)
    summary = {**record, "status": status, "errors": errors, "warnings": warnings,
               "warnings_by_field": dict(Counter(f"{w['kind']}.{w['field']}"
                                                 for w in warnings)),
               "finished_at": runs.iso(), **extra}
    # Before the summary: whoever sees the summary sees the success too.
    if summary.get("kind") == "scan" and status in (runs.FINISHED, runs.FINISHED_WITH_ERRORS):
        r().set(LAST_SUCCESS, time.time())
    if not runs.finish(JOB, run_id, summary, ttl=RUN_TTL):
        return None
    runs.forget_beyond(JOB, keep)
    return summary


def last_success() -> float | None:
    raw = r().get(LAST_SUCCESS)
    return float(raw) if raw else None


def recent_runs(n: int = 10) -> list[dict[str, Any]]:
    return runs.recent(n, job=JOB)


# -- walks and parts: how far a run has read GIS, and what it handed over ----------------
def _walk_key(run_id: str, stream: str) -> str:
    return runs.key(JOB, run_id, "walk", stream)


def open_walks(run_id: str, since: dict[str, str | None], moves_marks: bool,
               holds_lock: bool) -> None:
    """Start a walk per stream at its lower bound (None: everything). Opening again (a
    redelivered scan) keeps the walks' progress. A scan's walks move the marks (unless
    it is a dry run) and hold the scan lock; a backfill's do neither."""
    if not since:
        return
    with r().pipeline(transaction=True) as pipe:
        for stream, lower in since.items():
            fields = {"cursor": Cursor(lower=lower).to_json(), "pages": 0, "done": False,
                      "newest": None, "moves_marks": moves_marks, "holds_lock": holds_lock}
            for name, value in fields.items():
                pipe.hsetnx(_walk_key(run_id, stream), name, runs.dumps(value))
            pipe.expire(_walk_key(run_id, stream), RUN_TTL)
        pipe.sadd(runs.key(JOB, run_id, "walks"), *since)
        pipe.expire(runs.key(JOB, run_id, "walks"), RUN_TTL)
        pipe.execute()


def open_retry_walk(run_id: str, names: list[str]) -> None:
    """A walk over the failed records due for a retry (read again from GIS by id)."""
    key = _walk_key(run_id, RETRIES)
    fields = {"names": names, "offset": 0, "pages": 0, "done": False, "newest": None,
              "moves_marks": False, "holds_lock": True}
    with r().pipeline(transaction=True) as pipe:
        for field_name, value in fields.items():
            pipe.hsetnx(key, field_name, runs.dumps(value))
        pipe.expire(key, RUN_TTL)
        pipe.sadd(runs.key(JOB, run_id, "walks"), RETRIES)
        pipe.expire(runs.key(JOB, run_id, "walks"), RUN_TTL)
        pipe.execute()


def save_retry_offset(run_id: str, offset: int) -> dict[str, Any]:
    key = _walk_key(run_id, RETRIES)
    with r().pipeline(transaction=True) as pipe:
        pipe.hset(key, "offset", runs.dumps(offset))
        pipe.hincrby(key, "pages", 1)
        pipe.zadd(OPEN_RUNS, {run_id: time.time()}, xx=True)
        pipe.execute()
    return walk(run_id, RETRIES) or {}


def walk(run_id: str, stream: str) -> dict[str, Any] | None:
    raw = r().hgetall(_walk_key(run_id, stream))
    return {k: json.loads(v) for k, v in raw.items()} if raw else None


def save_walk(run_id: str, stream: str, cursor: Cursor, newest: str | None
              ) -> dict[str, Any]:
    """A page was handed over: checkpoint the cursor, and (in a scan) move the stream's
    high-water mark to the newest record handed over."""
    key = _walk_key(run_id, stream)
    with r().pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"cursor": runs.dumps(cursor.to_json()),
                                "newest": runs.dumps(newest)})
        pipe.hincrby(key, "pages", 1)
        pipe.zadd(OPEN_RUNS, {run_id: time.time()}, xx=True)
        pipe.execute()
    current = walk(run_id, stream) or {}
    if current.get("moves_marks") and newest:
        set_marks({stream: newest})
    return current


def end_walk(run_id: str, stream: str, newest: str | None) -> int:
    """The stream is read to its end (or the run halted); returns the walks still open."""
    current = walk(run_id, stream) or {}
    if current.get("moves_marks") and newest:
        set_marks({stream: newest})
    r().hset(_walk_key(run_id, stream), "done", runs.dumps(True))
    r().srem(runs.key(JOB, run_id, "walks"), stream)
    return int(r().scard(runs.key(JOB, run_id, "walks")))


def part_launched(run_id: str, part: str) -> None:
    _add_part(run_id, "launched", part)


def part_finished(run_id: str, part: str) -> None:
    _add_part(run_id, "finished", part)


def _add_part(run_id: str, which: str, part: str) -> None:
    key = runs.key(JOB, run_id, which)
    with r().pipeline(transaction=False) as pipe:
        pipe.sadd(key, part)
        pipe.expire(key, RUN_TTL)
        pipe.zadd(OPEN_RUNS, {run_id: time.time()}, xx=True)
        pipe.execute()


def is_complete(run_id: str) -> bool:
    """Every walk ended and every part handed over has reported."""
    if r().scard(runs.key(JOB, run_id, "walks")):
        return False
    return not r().sdiff(runs.key(JOB, run_id, "launched"), runs.key(JOB, run_id, "finished"))


def progress(run_id: str) -> dict[str, int]:
    return {"walks_open": int(r().scard(runs.key(JOB, run_id, "walks"))),
            "parts_launched": int(r().scard(runs.key(JOB, run_id, "launched"))),
            "parts_finished": int(r().scard(runs.key(JOB, run_id, "finished")))}


# -- the scan lock: held by a run's tasks in turn, from the scan to its walks' end -------
def take_scan_lock(run_id: str, timeout: float) -> bool:
    return store.hold(SCAN_LOCK, timeout, run_id)


def keep_scan_lock(run_id: str, timeout: float) -> None:
    """Renew the run's lock (or take it back after it expired while a step was
    redelivered); another run holding it is logged, not fatal: both read the same
    changes and the sync tasks are idempotent."""
    if not store.hold(SCAN_LOCK, timeout, run_id):
        log.warning("gis run %s walks while another run holds the scan lock", run_id)


def release_scan_lock(run_id: str) -> None:
    store.let_go(SCAN_LOCK, run_id)
