"""A migration run's state in Redis: everything a crash, a redelivery or a resume needs.

Keys (job "segment"; the run record and summary through `worker.runs`):

    sf:runs                             zset: every job's runs (`worker.runs`)
    sf:segment:run:{id}                 hash: the run record (settings, status, attempt,
                                        walk checkpoint: cursor, slices, launched, buffer;
                                        live counters: profiles_listed, profiles_fetched,
                                        customers_confirmed)
    sf:segment:run:{id}:summary         JSON, written once (`worker.runs.finish`)
    sf:segment:run:{id}:summary:{k}     the summary of attempt k, kept when k+1 starts
    sf:segment:run:{id}:slice:{n}       JSON list of the slice's segment ids (the walk)
    sf:segment:run:{id}:results         hash n -> the slice's result record (JSON)
    sf:segment:run:{id}:counts          hash n -> the slice's counts (JSON), for progress
    sf:segment:run:{id}:done            set of slices that completed (skipped on resume)
    sf:segment:run:{id}:finished        set of slices with an outcome in this attempt
    sf:segment:run:{id}:calls           hash service -> requests made (all attempts)
    sf:segment:run:{id}:mapped:{n}      JSON checkpoint: the slice's mapped customers (a
                                        retry or redelivery does not fetch Segment again)
    sf:segment:run:{id}:actions:{n}     hash position -> "length:async action id", and
                                        "position:outcome" -> its final outcome (a redone
                                        slice polls what it sent, never sends it twice)
    sf:lock:segment:plan:{id}           one walk of a run at a time
    sf:lock:segment:slice:{id}:{n}      one delivery of a slice at a time

A slice is *done* when it completed (its customers were sent and their async actions
reported, even if some customers failed there); a slice that could not complete (retries
exhausted, a 4xx for the whole request, a failed async action, a 401) is *finished* but
not done, so a resume redoes it. The run is complete when every planned slice is finished
(or, after a 401 halted the run, every launched slice is).
"""

from __future__ import annotations

import json
from typing import Any

import redis

from worker import metrics, runs, store

JOB = "segment"
MAPPED_TTL = 7 * 24 * 3600  # checkpoints of slices that never finish go away on their own
COUNT_FIELDS = ("profiles", "sent", "upserted", "skipped", "failed", "warnings")
dumps = runs.dumps


def _k(run_id: str, *parts: object) -> str:
    return runs.key(JOB, run_id, *parts)


def _r() -> redis.Redis:
    return store.client()


# --- the run record --------------------------------------------------------------------

def create_run(run_id: str, slice_size: int, dry_run: bool, space: str, project: str
               ) -> bool:
    """Create the run record, bound to the Segment space and Voucherify project it
    migrates between; False if the run exists (then it is a resume)."""
    return runs.start(JOB, run_id, "migration", slice_size=slice_size, dry_run=dry_run,
                      space=space, project=project, attempt=1, cursor="0", slices=0,
                      launched=0, walk_done=False, buffer=[])


def get_run(run_id: str) -> dict[str, Any] | None:
    return runs.get(JOB, run_id)


def update_run(run_id: str, /, **fields: Any) -> None:
    runs.update(JOB, run_id, **fields)


def save_walk(run_id: str, cursor: str | None, slices: int, buffer: list[str],
              walk_done: bool) -> None:
    """The walk's checkpoint: where to continue, and the ids not yet in a slice."""
    update_run(run_id, cursor=cursor or "", slices=slices, buffer=buffer,
               walk_done=walk_done)


def add_live(run_id: str, **counters: int) -> None:
    """Progress as it happens (profiles listed, fetched; customers confirmed), for a
    progress bar that moves within a slice, not only when a slice ends."""
    runs.count(JOB, run_id, counters)


def halt(run_id: str, message: str) -> None:
    """A 401 (or another run-wide failure) halts the run; the first message stays."""
    runs.halt(JOB, run_id, message)


def halted(run_id: str) -> str | None:
    return runs.halted(JOB, run_id)


# --- slices ----------------------------------------------------------------------------

def store_slice_ids(run_id: str, slice_no: int, ids: list[str]) -> None:
    _r().set(_k(run_id, "slice", slice_no), dumps(ids))


def slice_ids(run_id: str, slice_no: int) -> list[str]:
    raw = _r().get(_k(run_id, "slice", slice_no))
    return json.loads(raw) if raw else []


def slice_outcome(run_id: str, slice_no: int) -> dict[str, Any] | None:
    """The stored record if the slice already has an outcome in this attempt."""
    r = _r()
    if not r.sismember(_k(run_id, "finished"), slice_no):
        return None
    raw = r.hget(_k(run_id, "results"), slice_no)
    return json.loads(raw) if raw else None


def finish_slice(run_id: str, record: dict[str, Any]) -> None:
    """Store a slice's record, counts and markers in one transaction."""
    n = record["slice"]
    counts = {name: record.get(name) if isinstance(record.get(name), int)
              else len(record.get(name) or []) for name in COUNT_FIELDS}
    with _r().pipeline(transaction=True) as pipe:
        pipe.hset(_k(run_id, "results"), n, dumps(record))
        pipe.hset(_k(run_id, "counts"), n, dumps(counts))
        pipe.sadd(_k(run_id, "finished"), n)
        if record.get("ok"):
            pipe.sadd(_k(run_id, "done"), n)
        else:
            pipe.srem(_k(run_id, "done"), n)
        pipe.delete(_k(run_id, "mapped", n), _k(run_id, "actions", n))
        pipe.execute()
    if "would_send" not in record:  # a dry run sends nothing
        for outcome, n in (("synced", counts["upserted"]), ("skipped", counts["skipped"]),
                           ("failed", counts["failed"])):
            metrics.add("records", n, job="segment", kind="profile", outcome=outcome)


def done_slices(run_id: str) -> set[int]:
    return {int(n) for n in _r().smembers(_k(run_id, "done"))}


def finished_slices(run_id: str) -> set[int]:
    return {int(n) for n in _r().smembers(_k(run_id, "finished"))}


def all_results(run_id: str) -> dict[int, dict[str, Any]]:
    raw = _r().hgetall(_k(run_id, "results"))
    return {int(n): json.loads(v) for n, v in raw.items()}


def add_calls(run_id: str, segment: int = 0, voucherify: int = 0) -> None:
    with _r().pipeline(transaction=False) as pipe:
        if segment:
            pipe.hincrby(_k(run_id, "calls"), "segment", segment)
        if voucherify:
            pipe.hincrby(_k(run_id, "calls"), "voucherify", voucherify)
        pipe.execute()


def calls(run_id: str) -> dict[str, int]:
    raw = _r().hgetall(_k(run_id, "calls"))
    return {"segment": int(raw.get("segment", 0)), "voucherify": int(raw.get("voucherify", 0))}


# --- checkpoints inside a slice --------------------------------------------------------

def save_mapped(run_id: str, slice_no: int, batch: dict[str, Any]) -> None:
    _r().set(_k(run_id, "mapped", slice_no), dumps(batch), ex=MAPPED_TTL)


def get_mapped(run_id: str, slice_no: int) -> dict[str, Any] | None:
    raw = _r().get(_k(run_id, "mapped", slice_no))
    return json.loads(raw) if raw else None


def actions(run_id: str, slice_no: int) -> dict[str, str]:
    return _r().hgetall(_k(run_id, "actions", slice_no))


def save_action(run_id: str, slice_no: int, name: str, value: str) -> None:
    with _r().pipeline(transaction=False) as pipe:
        pipe.hset(_k(run_id, "actions", slice_no), name, value)
        pipe.expire(_k(run_id, "actions", slice_no), MAPPED_TTL)
        pipe.execute()


# --- completion, resume, summary -------------------------------------------------------

def is_complete(run: dict[str, Any], finished: set[int]) -> bool:
    if run.get("status") == runs.HALTED:
        return all(n in finished for n in range(run["launched"]))
    return run["walk_done"] and all(n in finished for n in range(run["slices"]))


def begin_resume(run_id: str) -> list[int]:
    """Start the next attempt: keep the summary of the last one aside, forget the
    outcomes of slices that did not complete. Returns the slices to redo (those
    planned, not done); the walk continues if it had not ended."""
    r = _r()
    run = get_run(run_id) or {}
    attempt = run.get("attempt", 1)
    summary = r.get(_k(run_id, "summary"))
    with r.pipeline(transaction=True) as pipe:
        if summary is not None:
            pipe.set(_k(run_id, "summary", attempt), summary)
            pipe.delete(_k(run_id, "summary"))
        pipe.delete(_k(run_id, "finished"))
        pipe.sunionstore(_k(run_id, "finished"), [_k(run_id, "done")])
        pipe.hdel(_k(run_id), "error", "finished_at")
        pipe.hset(_k(run_id), mapping={
            "status": dumps(runs.RUNNING), "attempt": dumps(attempt + 1),
            "launched": dumps(0), "resumed_at": dumps(runs.iso())})
        pipe.execute()
    done = done_slices(run_id)
    # The live counters start the attempt where the slices kept from before stand.
    kept = [json.loads(raw) for n, raw in r.hgetall(_k(run_id, "counts")).items()
            if int(n) in done]
    update_run(run_id, profiles_fetched=sum(c.get("profiles", 0) for c in kept),
               customers_confirmed=sum(c.get("upserted", 0) + c.get("failed", 0)
                                       for c in kept))
    return [n for n in range(run.get("slices", 0)) if n not in done]


def save_summary(run_id: str, summary: dict[str, Any]) -> bool:
    """Write the summary once; False if it already exists (a second delivery)."""
    return runs.finish(JOB, run_id, summary)


def get_summary(run_id: str) -> dict[str, Any] | None:
    return runs.summary(JOB, run_id)


def progress(run_id: str) -> dict[str, Any] | None:
    """Slices done of total and the counts so far; cheap enough to poll every second."""
    run = get_run(run_id)
    if run is None:
        return None
    r = _r()
    totals = dict.fromkeys(COUNT_FIELDS, 0)
    for raw in r.hvals(_k(run_id, "counts")):
        for name, value in json.loads(raw).items():
            totals[name] = totals.get(name, 0) + int(value or 0)
    return {
        "run_id": run_id, "job": JOB, "status": run.get("status"), "error": run.get("error"),
        "attempt": run["attempt"], "dry_run": run["dry_run"],
        "started_at": run.get("started_at"), "walk_done": run["walk_done"],
        "slices_total": run["slices"], "slices_finished": r.scard(_k(run_id, "finished")),
        "slices_done": r.scard(_k(run_id, "done")), "counts": totals,
        "calls": calls(run_id), "summary_ready": bool(r.exists(_k(run_id, "summary"))),
        "live": {name: run.get(name, 0) for name in
                 ("profiles_listed", "profiles_fetched", "customers_confirmed")},
    }
