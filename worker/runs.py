"""The run engine of both jobs: a run made of walks and parts (no Celery here).

A run (a GIS scan or backfill, a Segment migration) walks its source and hands the work
over in *parts* (a GIS page's sync tasks, a migration's slice). Each part reports once
its work is done; a part reported twice counts once. A run is *complete* when every walk
has ended and every part handed over has reported: whichever caller finds it complete
writes the summary, exactly once (SET NX); the summary names it (`written_by`) when the
caller says who it is. A run that lost a message has its open walks sent again and its
parts that never reported redone, from what `launch` kept for them (`worker/recovery.py`,
on every worker's timer), or is closed as `incomplete`.

Each job has one `Runs` object, carrying its name (`GIS = Runs("gis", ...)`), through
which all its run state goes. Status words (the record's `status`, the summary's):

    running                 started, no summary yet
    finished                every record done
    finished_with_errors    done, but some records failed (listed in the summary)
    halted                  stopped by a run-wide failure (`error` says which credential)
    cancelled               stopped on request: nothing more started, what ran finished
    incomplete              closed without all of its work reporting back

Keys (job = gis | segment; every value of a hash is JSON):

    sf:runs                         zset "{job}:{id}" -> start time: every job's runs
    sf:{job}:runs:open              zset id -> last activity, until the summary is written
    sf:{job}:run:{id}               hash: the run record and its counters
    sf:{job}:run:{id}:summary       the summary (JSON), written once
    sf:{job}:run:{id}:walks         set: the walks still open
    sf:{job}:run:{id}:walked        set: every walk opened
    sf:{job}:run:{id}:walk:{name}   hash: a walk's checkpoint
    sf:{job}:run:{id}:launched      set: parts handed over
    sf:{job}:run:{id}:finished      set: parts that reported
    sf:{job}:run:{id}:pending       hash: part -> what its redo needs, until it reports

A job with a `ttl` has every key of a run expire that long after its last write; one
that never resumes a run (GIS) keeps only its summary, written slim (`run_history.compact`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.client import Pipeline

from worker import metrics, store
from worker.formats import Record, dumps, iso, loads_fields

RUNNING = "running"
FINISHED = "finished"
FINISHED_WITH_ERRORS = "finished_with_errors"
HALTED = "halted"
CANCELLED = "cancelled"
INCOMPLETE = "incomplete"
ENDED = (FINISHED, FINISHED_WITH_ERRORS, HALTED, CANCELLED, INCOMPLETE)
STOPPED = (HALTED, CANCELLED)  # no new work starts; what runs reports and the run ends

# (run id, status to force or None) -> the summary, built by the job.
Summarize = Callable[[str, str | None], Record]
# (run id, open walks, lost parts {part: what launch kept}): send them again.
Relaunch = Callable[[str, list[str], dict[str, Any]], None]

_COUNT = """  -- into a run's record only while it exists (not into a compacted run's)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

_CANCEL = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
return 1
"""

JOBS: dict[str, Runs] = {}  # every job's runs (`worker/recovery.py` looks after them)


def final_status(record: Record, errors: int) -> str:
    """A complete run's status: stopped as its record says, else by its errors."""
    if record.get("status") in STOPPED:
        return record["status"]
    return FINISHED_WITH_ERRORS if errors else FINISHED


class Runs:
    """The runs of one job. `summarize` builds a summary from the run's state, written as
    `kept` keeps it (GIS: `run_history.slim`; whole by default); `ended` follows, given it
    whole, as the caller is; `relaunch` (set by the job's tasks) resends lost work."""

    def __init__(self, job: str, summarize: Summarize, *,
                 ttl: int | Callable[[], int] | None = None,
                 ended: Callable[[Record], None] | None = None,
                 kept: Callable[[Record], Record] | None = None) -> None:
        self.job, self.summarize, self.kept = job, summarize, kept
        self._ttl, self.ended = ttl, ended
        self.relaunch: Relaunch | None = None
        JOBS[job] = self

    @property
    def ttl(self) -> int | None:
        """Seconds a run's keys live (a callable reads the settings, never at import)."""
        return self._ttl() if callable(self._ttl) else self._ttl

    def key(self, run_id: str, *parts: object) -> str:
        return run_key(self.job, run_id, *parts)

    def open_index(self) -> str:
        return store.key(self.job, "runs", "open")

    def _keep(self, pipe: Pipeline, *keys: str) -> None:
        ttl = self.ttl
        for name in keys if ttl else ():
            pipe.expire(name, ttl)

    def _touch(self, pipe: Pipeline, run_id: str) -> None:
        pipe.zadd(self.open_index(), {run_id: time.time()}, xx=True)

    # -- the record ----------------------------------------------------------------------
    def start(self, run_id: str, kind: str, /, **fields: Any) -> bool:
        """Create the run record (status running); False if the run exists already."""
        r = store.client()
        if r.exists(self.key(run_id, "summary")):  # ended (and compacted) already
            return False
        if not r.hsetnx(self.key(run_id), "run_id", dumps(run_id)):
            return False
        started = time.time()
        self.update(run_id, job=self.job, kind=kind, status=RUNNING,
                    started_at=iso(started), started_ts=started, **fields)
        with r.pipeline(transaction=False) as pipe:
            self._keep(pipe, self.key(run_id))
            pipe.zadd(store.key("runs"), {f"{self.job}:{run_id}": started})
            pipe.zadd(self.open_index(), {run_id: started})
            pipe.execute()
        return True

    def get(self, run_id: str) -> Record | None:
        return stored_record(self.job, run_id)

    def update(self, run_id: str, /, **fields: Any) -> None:
        if fields:
            store.client().hset(self.key(run_id), mapping={k: dumps(v) for k, v in fields.items()})

    def count(self, run_id: str | None, counters: dict[str, int]) -> None:
        """Add to the run's counters (any task, at the same time). Not an activity of the
        run: counters move often, and walks and parts are what the recovery watches."""
        moved = [x for name, value in counters.items() if value for x in (name, value)]
        if run_id and moved:
            store.client().eval(_COUNT, 1, self.key(run_id), *moved)

    def halt(self, run_id: str | None, reason: str) -> None:
        """A run-wide failure (a 401) stops the run; the first reason stays."""
        if run_id:
            with store.client().pipeline(transaction=True) as pipe:
                pipe.hsetnx(self.key(run_id), "error", dumps(reason))
                pipe.hset(self.key(run_id), "status", dumps(HALTED))
                self._keep(pipe, self.key(run_id))
                pipe.execute()

    def stopped(self, run_id: str | None) -> str | None:
        """Why no new work of the run may start: the halt's reason, `cancelled`, or None."""
        if not run_id:
            return None
        status, error = store.client().hmget(self.key(run_id), "status", "error")
        status = json.loads(status) if status else None
        if status == HALTED:
            return json.loads(error) if error else HALTED
        return CANCELLED if status == CANCELLED else None

    def cancel(self, run_id: str) -> bool:
        """Stop a running run: walks start nothing more, parts not started do nothing and
        report, what runs finishes, the summary says `cancelled`. False if not running."""
        if not store.client().eval(_CANCEL, 1, self.key(run_id), dumps(RUNNING),
                                   dumps(CANCELLED)):
            return False
        self.finish_if_complete(run_id, by="cancel")  # nothing in flight: it ends here
        return True

    # -- walks: what reads the source, with its checkpoint -------------------------------
    def open_walk(self, run_id: str, name: str, checkpoint: Record) -> None:
        """Open a walk; opening it again (a redelivery, a resume) keeps its progress."""
        walk, walks = self.key(run_id, "walk", name), self.key(run_id, "walks")
        with store.client().pipeline(transaction=True) as pipe:
            for field, value in checkpoint.items():
                pipe.hsetnx(walk, field, dumps(value))
            pipe.sadd(walks, name)
            pipe.sadd(self.key(run_id, "walked"), name)
            self._keep(pipe, walk, walks, self.key(run_id, "walked"))
            self._touch(pipe, run_id)
            pipe.execute()

    def walk(self, run_id: str, name: str) -> Record | None:
        return loads_fields(store.client().hgetall(self.key(run_id, "walk", name)))

    def save_walk(self, run_id: str, name: str, **fields: Any) -> Record:
        """Checkpoint the walk (activity); returns the checkpoint as it now stands."""
        with store.client().pipeline(transaction=True) as pipe:
            pipe.hset(self.key(run_id, "walk", name),
                      mapping={k: dumps(v) for k, v in fields.items()})
            self._touch(pipe, run_id)
            pipe.execute()
        return self.walk(run_id, name) or {}

    def is_walking(self, run_id: str, name: str) -> bool:
        return bool(store.client().sismember(self.key(run_id, "walks"), name))

    def walking(self, run_id: str) -> list[str]:
        return sorted(store.client().smembers(self.key(run_id, "walks")))

    def end_walk(self, run_id: str, name: str) -> int:
        """The walk has handed everything over (or the run stopped); returns the walks
        still open."""
        with store.client().pipeline(transaction=True) as pipe:
            pipe.srem(self.key(run_id, "walks"), name)
            pipe.scard(self.key(run_id, "walks"))
            self._touch(pipe, run_id)
            return int(pipe.execute()[1])

    # -- parts: work handed over, and its report ------------------------------------------
    def launch(self, run_id: str, parts: dict[str, Any]) -> None:
        """Parts about to be handed to the broker, each with what its redo needs (kept
        until it reports). Recorded before they are sent: a part lost in between is a
        lost message like any other."""
        if not parts:
            return
        launched, pending = self.key(run_id, "launched"), self.key(run_id, "pending")
        with store.client().pipeline(transaction=True) as pipe:
            pipe.sadd(launched, *parts)
            pipe.hset(pending, mapping={part: dumps(need) for part, need in parts.items()})
            self._keep(pipe, launched, pending)
            self._touch(pipe, run_id)
            pipe.execute()

    def report(self, run_id: str, part: str, pipe: Pipeline | None = None) -> None:
        """The part's work is done (into `pipe`, with the job's own writes, when given)."""
        into = pipe if pipe is not None else store.client().pipeline(transaction=True)
        into.sadd(self.key(run_id, "finished"), part)
        into.hdel(self.key(run_id, "pending"), part)
        self._keep(into, self.key(run_id, "finished"))
        self._touch(into, run_id)
        if pipe is None:
            into.execute()

    def lost_parts(self, run_id: str) -> dict[str, Any]:
        """The parts handed over that never reported, with what their redo needs."""
        r = store.client()
        parts = sorted(r.sdiff(self.key(run_id, "launched"), self.key(run_id, "finished")))
        kept = r.hmget(self.key(run_id, "pending"), parts) if parts else []
        return {part: json.loads(raw) if raw else None
                for part, raw in zip(parts, kept, strict=True)}

    def complete(self, run_id: str) -> bool:
        """Every walk ended and every part handed over has reported."""
        with store.client().pipeline(transaction=True) as pipe:
            pipe.scard(self.key(run_id, "walks"))
            pipe.sdiff(self.key(run_id, "launched"), self.key(run_id, "finished"))
            walks, unreported = pipe.execute()
        return not walks and not unreported

    def _unfinished(self, run_id: str) -> bool:
        """Known, and without a summary yet."""
        with store.client().pipeline(transaction=False) as pipe:
            pipe.exists(self.key(run_id))
            pipe.exists(self.key(run_id, "summary"))
            known, summarized = pipe.execute()
        return bool(known) and not summarized

    def progress(self, run_id: str) -> dict[str, int]:
        """The live counts of a run: walks open, parts launched and reported."""
        with store.client().pipeline(transaction=False) as pipe:
            for name in ("walks", "launched", "finished"):
                pipe.scard(self.key(run_id, name))
            walks, launched, finished = pipe.execute()
        return {"walks_open": walks, "parts_launched": launched, "parts_finished": finished}

    # -- the end -------------------------------------------------------------------------
    def finish_if_complete(self, run_id: str, by: str | None = None) -> Record | None:
        """The summary, written by whichever caller finds the run complete (`by`, when
        given, is its `written_by`); None when it is not complete, unknown, or its
        summary exists already."""
        if not self.complete(run_id) or not self._unfinished(run_id):
            return None
        return self._finish(run_id, None, by)

    def close(self, run_id: str, by: str | None = None) -> Record | None:
        """A run that can no longer finish (a message lost for good): `incomplete`."""
        return self._finish(run_id, INCOMPLETE, by) if self._unfinished(run_id) else None

    def _finish(self, run_id: str, status: str | None, by: str | None) -> Record | None:
        summary = self.summarize(run_id, status) | ({"written_by": by} if by else {})
        kept = self.kept(summary) if self.kept else summary  # kept as written: one write
        if not store.client().set(self.key(run_id, "summary"), dumps(kept), nx=True, ex=self.ttl):
            return None
        with store.client().pipeline(transaction=False) as pipe:
            pipe.hset(self.key(run_id), mapping={
                "status": dumps(summary["status"]),
                "finished_at": dumps(summary.get("finished_at") or iso())})
            pipe.zrem(self.open_index(), run_id)
            pipe.execute()
        metrics.add("runs", job=self.job, status=summary["status"])
        if self.ended is not None:
            self.ended(summary)
        return summary

    def summary(self, run_id: str) -> Record | None:
        return stored_summary(self.job, run_id)

    def restart(self, run_id: str, keep: Iterable[str], **fields: Any) -> None:
        """The next attempt of an ended or stopped run: running again, open, its parts
        forgotten but those in `keep` (reported, and never launched again)."""
        kept = list(keep)
        with store.client().pipeline(transaction=True) as pipe:
            pipe.delete(self.key(run_id, "summary"), self.key(run_id, "launched"),
                        self.key(run_id, "finished"), self.key(run_id, "pending"))
            if kept:
                pipe.sadd(self.key(run_id, "launched"), *kept)
                pipe.sadd(self.key(run_id, "finished"), *kept)
            pipe.hdel(self.key(run_id), "error", "finished_at")
            pipe.hset(self.key(run_id), mapping={k: dumps(v) for k, v in
                                                 {"status": RUNNING, **fields}.items()})
            pipe.zadd(self.open_index(), {run_id: time.time()})
            pipe.execute()

    # -- lost messages -------------------------------------------------------------------
    def idle(self, seconds: float) -> list[str]:
        """Open runs that nothing has happened to for `seconds`."""
        return store.client().zrangebyscore(self.open_index(), 0, time.time() - seconds)

    def touch(self, run_id: str) -> None:
        """Something happened to the run (it was just relaunched)."""
        store.client().zadd(self.open_index(), {run_id: time.time()}, xx=True)

    def unlist(self, run_id: str) -> None:
        """No longer open (its record expired: nothing left to finish)."""
        store.client().zrem(self.open_index(), run_id)


def run_key(job: str, run_id: str, *parts: object) -> str:
    return store.key(job, "run", run_id, *parts)


def stored_record(job: str, run_id: str) -> Record | None:
    return loads_fields(store.client().hgetall(run_key(job, run_id)))


def stored_summary(job: str, run_id: str) -> Record | None:
    """A run's summary, with the run id and job its key names (`kept` leaves them out)."""
    raw = store.client().get(run_key(job, run_id, "summary"))
    return {"run_id": run_id, "job": job, **json.loads(raw)} if raw else None
