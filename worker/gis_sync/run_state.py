"""A GIS run's state: its record, how far its walks have read GIS, what it handed over,
and its LC's scan lock (names via `worker.store.key`, under REDIS_KEY_PREFIX).

    sf:gis:run:{id}              the run record and counters (`worker.runs`): kind, lc,
                                 workspace, status, ...; expires after RUN_TTL
    sf:gis:run:{id}:summary      its summary, written once (`worker.runs`)
    sf:gis:run:{id}:errors       set: the records it could not sync (JSON: kind, id,
                                 reason), each once, at most NOTES_KEPT
    sf:gis:run:{id}:warnings     set: the fields it dropped (kind, id, field, reason)
    sf:gis:run:{id}:walk:{s}     hash (JSON values): stream s's walk: cursor, pages,
                                 newest updated_at handed over, done, moves_marks,
                                 holds_lock; the "retries" walk: names (kind:id), offset
    sf:gis:run:{id}:walks        set: the streams still walking
    sf:gis:run:{id}:launched     set: parts (a page's records) handed to the broker
    sf:gis:run:{id}:finished     set: parts whose sync tasks have all reported
    sf:gis:run:{id}:pending      hash: part -> its records' names (kind:id, JSON), from
                                 its hand-over until it reports: what a redo reads again
    sf:gis:runs:open             zset: run id -> last activity, until its summary is written
    sf:lock:gis-scan:{L}:{W}     the scan lock of an (LC, workspace): the run id holding
                                 it, from its scan to its walks' end, renewed by each step
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

import redis

from worker import runs, store
from worker.clients.gis import Cursor
from worker.gis_sync.state import Scope, restore_marks, set_last_success, set_marks

log = logging.getLogger(__name__)

JOB = "gis"
RETRIES = "retries"  # the walk over failed records due for a retry
REDO = "redo:"  # a walk that reads again, by id, the records of a part whose message was lost
RUN_TTL = 7 * 86400
NOTES_KEPT = 1000  # errors and warnings named in a run's summary (their counts are exact)
# A run none of whose tasks has done anything for this long lost a message: a later scan
# closes it as incomplete. Longer than any retry, park or redelivery of a run's task.
STALE_AFTER = 3600


def r() -> redis.Redis:
    return store.client()


def open_runs_key() -> str:
    return store.key("gis", "runs", "open")


# -- runs (the run vocabulary of worker.runs) ------------------------------------------
def start_run(run_id: str, kind: str, scope: Scope, /, **fields: Any) -> None:
    runs.start(JOB, run_id, kind, ttl=RUN_TTL, lc=scope.lc, workspace=scope.workspace,
               **fields)
    r().zadd(open_runs_key(), {run_id: time.time()}, nx=True)


def record(run_id: str) -> dict[str, Any]:
    return runs.get(JOB, run_id) or {}


def scope_of(run: dict[str, Any]) -> Scope:
    return Scope(int(run.get("lc") or 0), str(run.get("workspace") or "none"))


def stale_runs(idle_for: float) -> list[str]:
    """Runs without a summary that nothing has happened to for `idle_for` seconds: a
    message was lost (a walk step or a chord body never ran)."""
    return r().zrangebyscore(open_runs_key(), 0, time.time() - idle_for)


def count(run_id: str | None, counters: dict[str, int]) -> None:
    if run_id:
        runs.count(JOB, run_id, counters)


def add_notes(run_id: str | None, errors: list[dict[str, Any]],
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


def notes(run_id: str, name: str) -> list[dict[str, Any]]:
    return sorted((json.loads(n) for n in r().smembers(runs.key(JOB, run_id, name))),
                  key=lambda n: (n.get("kind", ""), n.get("id", ""), n.get("field", "")))


def halt(run_id: str | None, reason: str) -> None:
    if run_id:
        runs.halt(JOB, run_id, reason)


def halted(run_id: str | None) -> str | None:
    return runs.halted(JOB, run_id) if run_id else None


def finish_run(run_id: str, keep: int, incomplete: bool = False, **extra: Any
               ) -> dict[str, Any] | None:
    """The run's record, counters and notes become its summary, kept once; None if it
    was written already (a chord body may be delivered twice). A halted scan puts its
    LC's marks back where they were, so the next scan reads again what it could not
    send; a scan that was not halted is the LC's last success."""
    r().zrem(open_runs_key(), run_id)
    run = record(run_id) or {"run_id": run_id, "job": JOB}
    errors, warnings = notes(run_id, "errors"), notes(run_id, "warnings")
    failed = run.get("people_failed", 0) + run.get("applications_failed", 0)
    status = runs.INCOMPLETE if incomplete else runs.status_of(halted(run_id), failed)
    summary = {**run, "status": status, "errors": errors, "warnings": warnings,
               "warnings_by_field": dict(Counter(f"{w['kind']}.{w['field']}"
                                                 for w in warnings)),
               "finished_at": runs.iso(), **extra}
    scan = run.get("kind") == "scan"
    # Before the summary: whoever sees the summary sees the success too. A dry run's
    # too: `syncfleet health` asks whether the scans go on, not whether they write.
    if scan and status in (runs.FINISHED, runs.FINISHED_WITH_ERRORS):
        set_last_success(scope_of(run))
    if not runs.finish(JOB, run_id, summary, ttl=RUN_TTL):
        return None
    if scan and status == runs.HALTED and not run.get("dry_run"):
        restore_marks(scope_of(run), run.get("marks_before") or {})
    runs.forget_beyond(JOB, keep)
    return summary


def recent_runs(n: int = 10) -> list[dict[str, Any]]:
    return runs.recent(n, job=JOB)


# -- walks and parts: how far a run has read GIS, and what it handed over ----------------
def _walk_key(run_id: str, stream: str) -> str:
    return runs.key(JOB, run_id, "walk", stream)


def _open(run_id: str, stream: str, fields: dict[str, Any]) -> None:
    """Open a walk; opening it again (a redelivered start) keeps its progress."""
    with r().pipeline(transaction=True) as pipe:
        for name, value in fields.items():
            pipe.hsetnx(_walk_key(run_id, stream), name, runs.dumps(value))
        pipe.expire(_walk_key(run_id, stream), RUN_TTL)
        pipe.sadd(runs.key(JOB, run_id, "walks"), stream)
        pipe.expire(runs.key(JOB, run_id, "walks"), RUN_TTL)
        pipe.execute()


def open_walks(run_id: str, since: dict[str, str | None], moves_marks: bool,
               holds_lock: bool) -> None:
    """A walk per stream from its lower bound (None: everything). A scan's walks move
    the marks (unless it is a dry run) and hold the scan lock; a backfill's neither."""
    for stream, lower in since.items():
        _open(run_id, stream, {"cursor": Cursor(lower=lower).to_json(), "pages": 0,
                               "done": False, "newest": None, "moves_marks": moves_marks,
                               "holds_lock": holds_lock})


def open_retry_walk(run_id: str, names: list[str], stream: str = RETRIES) -> None:
    """A walk over records read again from GIS by id: the failed records due for a
    retry, or (`REDO`) those of a part whose message was lost."""
    _open(run_id, stream, {"names": names, "offset": 0, "pages": 0, "done": False,
                           "newest": None, "moves_marks": False,
                           "holds_lock": stream == RETRIES})


def by_names(stream: str) -> bool:
    """A walk over names (kind:id) rather than a GIS list."""
    return stream == RETRIES or stream.startswith(REDO)


def walk(run_id: str, stream: str) -> dict[str, Any] | None:
    raw = r().hgetall(_walk_key(run_id, stream))
    return {k: json.loads(v) for k, v in raw.items()} if raw else None


def _progress(run_id: str, stream: str, fields: dict[str, Any]) -> dict[str, Any]:
    key = _walk_key(run_id, stream)
    with r().pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={k: runs.dumps(v) for k, v in fields.items()})
        pipe.hincrby(key, "pages", 1)
        pipe.zadd(open_runs_key(), {run_id: time.time()}, xx=True)
        pipe.execute()
    return walk(run_id, stream) or {}


def save_walk(run_id: str, stream: str, cursor: Cursor, newest: str | None
              ) -> dict[str, Any]:
    """A page was handed over: checkpoint the cursor, and (in a scan) move the stream's
    high-water mark to the newest record handed over."""
    current = _progress(run_id, stream, {"cursor": cursor.to_json(), "newest": newest})
    _move_mark(run_id, stream, current, newest)
    return current


def save_names_offset(run_id: str, stream: str, offset: int) -> dict[str, Any]:
    return _progress(run_id, stream, {"offset": offset})


def end_walk(run_id: str, stream: str, newest: str | None) -> int:
    """The stream is read to its end (or the run halted); returns the walks still open."""
    _move_mark(run_id, stream, walk(run_id, stream) or {}, newest)
    r().hset(_walk_key(run_id, stream), "done", runs.dumps(True))
    r().srem(runs.key(JOB, run_id, "walks"), stream)
    return int(r().scard(runs.key(JOB, run_id, "walks")))


def _move_mark(run_id: str, stream: str, current: dict[str, Any], newest: str | None) -> None:
    if current.get("moves_marks") and newest:
        set_marks(scope_of(record(run_id)), {stream: newest})


def part_launched(run_id: str, part: str, names: list[str]) -> None:
    _add_part(run_id, "launched", part, names)


def part_finished(run_id: str, part: str) -> None:
    _add_part(run_id, "finished", part)


def _add_part(run_id: str, which: str, part: str, names: list[str] | None = None) -> None:
    key, pending = runs.key(JOB, run_id, which), runs.key(JOB, run_id, "pending")
    with r().pipeline(transaction=False) as pipe:
        if names is None:
            pipe.hdel(pending, part)
        else:
            pipe.hset(pending, part, json.dumps(names))
            pipe.expire(pending, RUN_TTL)
        pipe.sadd(key, part)
        pipe.expire(key, RUN_TTL)
        pipe.zadd(open_runs_key(), {run_id: time.time()}, xx=True)
        pipe.execute()


def walking(run_id: str) -> list[str]:
    return sorted(r().smembers(runs.key(JOB, run_id, "walks")))


def lost_parts(run_id: str) -> dict[str, list[str]]:
    """The parts handed over that never reported, with their records' names."""
    parts = sorted(r().sdiff(runs.key(JOB, run_id, "launched"),
                             runs.key(JOB, run_id, "finished")))
    names = r().hmget(runs.key(JOB, run_id, "pending"), parts) if parts else []
    return {part: json.loads(raw) if raw else [] for part, raw in zip(parts, names,
                                                                      strict=True)}


def redo_part(run_id: str, part: str, names: list[str]) -> str:
    """Read a lost part's records again in a walk of their own (opened before the part
    counts as reported, so the run cannot look complete in between)."""
    stream = f"{REDO}{part}"
    open_retry_walk(run_id, names, stream)
    part_finished(run_id, part)
    count(run_id, {"parts_redone": 1})
    return stream


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
def _lock_name(scope: Scope) -> str:
    return f"gis-scan:{scope.lc}:{scope.workspace}"


def take_scan_lock(scope: Scope, run_id: str, timeout: float) -> bool:
    return store.hold(_lock_name(scope), timeout, run_id)


def keep_scan_lock(run_id: str, timeout: float) -> None:
    """Renew the run's lock (or take it back after it expired while a step was
    redelivered); another run holding it is logged, not fatal: both read the same
    changes and the sync tasks are idempotent."""
    if not store.hold(_lock_name(scope_of(record(run_id))), timeout, run_id):
        log.warning("gis run %s walks while another run holds the scan lock", run_id)


def release_scan_lock(run_id: str) -> None:
    store.let_go(_lock_name(scope_of(record(run_id))), run_id)


def scan_lock_holder(scope: Scope) -> str | None:
    return store.client().get(store.key("lock", _lock_name(scope)))
