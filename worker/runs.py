"""One run vocabulary for both jobs: a GIS scan or backfill, a Segment migration.

A run is started, may be halted (a 401: the credential is wrong, nothing more is sent
until it is fixed), and is finished once: its summary is written exactly once, however
often the task that writes it is delivered. Every timestamp is `YYYY-MM-DDTHH:MM:SSZ`.

Status words (the run record's `status`, and the summary's):

    running                 started, no summary yet
    finished                every record synced
    finished_with_errors    done, but some records failed (listed in the summary)
    halted                  stopped by a run-wide failure (`error` says which credential)
    incomplete              closed without all of its work reporting back (a watchdog)

Keys (job = "gis" | "segment"):

    sf:runs                        zset "{job}:{run_id}" -> start time: every job's runs
    sf:{job}:run:{id}              hash: the run record; every value JSON (counters too,
                                   so HINCRBY works on them)
    sf:{job}:run:{id}:summary      JSON, written once (SET NX)
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis

from worker import metrics, store

RUNNING = "running"
FINISHED = "finished"
FINISHED_WITH_ERRORS = "finished_with_errors"
HALTED = "halted"
INCOMPLETE = "incomplete"
ENDED = (FINISHED, FINISHED_WITH_ERRORS, HALTED, INCOMPLETE)



def _index() -> str:
    return store.key("runs")


def iso(ts: float | None = None) -> str:
    """The one timestamp format of run records and summaries."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def key(job: str, run_id: str, *parts: object) -> str:
    return store.key(job, "run", run_id, *parts)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _r() -> redis.Redis:
    return store.client()


def start(job: str, run_id: str, kind: str, /, ttl: int | None = None, **fields: Any) -> bool:
    """Create the run record (status running); False if the run exists already."""
    r = _r()
    if not r.hsetnx(key(job, run_id), "run_id", dumps(run_id)):
        return False
    started = time.time()
    update(job, run_id, job=job, kind=kind, status=RUNNING, started_at=iso(started),
           started_ts=started, **fields)
    if ttl:
        r.expire(key(job, run_id), ttl)
    r.zadd(_index(), {f"{job}:{run_id}": started})
    return True


def get(job: str, run_id: str) -> dict[str, Any] | None:
    raw = _r().hgetall(key(job, run_id))
    return {name: json.loads(value) for name, value in raw.items()} if raw else None


def update(job: str, run_id: str, /, **fields: Any) -> None:
    if fields:
        _r().hset(key(job, run_id), mapping={k: dumps(v) for k, v in fields.items()})


def count(job: str, run_id: str, counters: dict[str, int]) -> None:
    """Add to the run's counters (any task of the run, concurrently)."""
    with _r().pipeline(transaction=False) as pipe:
        for name, value in counters.items():
            if value:
                pipe.hincrby(key(job, run_id), name, value)
        pipe.execute()


def halt(job: str, run_id: str, reason: str) -> None:
    """A run-wide failure stops the run; the first reason stays."""
    r = _r()
    r.hsetnx(key(job, run_id), "error", dumps(reason))
    r.hset(key(job, run_id), "status", dumps(HALTED))


def halted(job: str, run_id: str) -> str | None:
    status, error = _r().hmget(key(job, run_id), "status", "error")
    if status is None or json.loads(status) != HALTED:
        return None
    return json.loads(error) if error else HALTED


def finish(job: str, run_id: str, summary: dict[str, Any], ttl: int | None = None) -> bool:
    """Keep the summary, once; False if it exists already (a second delivery)."""
    r = _r()
    if not r.set(key(job, run_id, "summary"), dumps(summary), nx=True, ex=ttl):
        return False
    update(job, run_id, status=summary["status"],
           finished_at=summary.get("finished_at") or iso())
    metrics.add("runs", job=job, status=summary["status"])
    return True


def summary(job: str, run_id: str) -> dict[str, Any] | None:
    raw = _r().get(key(job, run_id, "summary"))
    return json.loads(raw) if raw else None


def status_of(halted_by: str | None, errors: int) -> str:
    if halted_by:
        return HALTED
    return FINISHED_WITH_ERRORS if errors else FINISHED


def recent(n: int = 10, job: str | None = None) -> list[dict[str, Any]]:
    """The latest runs, newest first: the summary of a finished run, else its record.
    Entries whose run has expired leave the index."""
    r = _r()
    out: list[dict[str, Any]] = []
    start_at = 0
    while len(out) < n:
        names = r.zrevrange(_index(), start_at, start_at + 4 * n - 1)
        if not names:
            break
        start_at += len(names)
        for name in names:
            run_job, _, run_id = name.partition(":")
            if job and run_job != job:
                continue
            found = summary(run_job, run_id) or get(run_job, run_id)
            if found is None:
                r.zrem(_index(), name)
                continue
            out.append({"job": run_job, **found})
            if len(out) == n:
                break
    return out


def forget_beyond(job: str, keep: int) -> None:
    """Keep the `keep` newest runs of `job` in the index (their keys expire by TTL)."""
    names = [n for n in _r().zrevrange(_index(), 0, -1) if n.startswith(f"{job}:")]
    if len(names) > keep:
        _r().zrem(_index(), *names[keep:])
