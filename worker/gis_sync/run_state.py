"""A GIS run on the run engine (`worker.runs`): `GIS`, its scope, how far its walks have
read GIS, the records it rejected, its summary, and its LC's scan lock (no Celery here).

Keys, besides the engine's (the run record, summary, walks, parts and the open-runs
index `sf:gis:runs:open`, listed in `worker/runs.py`). Every key of a run expires
`GIS_RUNS_KEPT_DAYS` after its last write; once the summary is written (slim, in its one
write: `run_history.slim`), it is the run's only key (the others are deleted:
`run_history.compact`):

    sf:gis:run:{id}:walk:{s}     the engine's walk checkpoint of stream s: cursor, pages,
                                 newest updated_at handed over, moves_marks, holds_lock;
                                 a walk over names (`retries`, `incoming_people`,
                                 `redo:{part}`): names, offset
    sf:gis:run:{id}:pending      the engine's part -> what its redo reads again: its
                                 records' names (kind:id)
    sf:gis:run:{id}:errors       set: the records it could not sync (JSON: kind, id,
                                 reason), each once, at most NOTES_KEPT
    sf:gis:run:{id}:warnings     set: the fields it dropped (kind, id, field, reason)
    sf:lock:gis-scan:{L}:{W}     the scan lock of an (LC, workspace): the run id holding
                                 it, from its scan to its walks' end, renewed by each step
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

from worker import run_history, runs, store
from worker.clients.gis import Cursor
from worker.formats import Record, iso
from worker.gis_sync.state import Scope, restore_marks, set_baseline, set_last_success, set_marks
from worker.settings import get_settings

log = logging.getLogger(__name__)

RETRIES = "retries"  # the walk over failed records due for a retry
# The walk over the people behind the LC's open incoming applications, read again by id
# in pages (GIS_INCOMING_PEOPLE_REFRESH; start.py)
INCOMING_PEOPLE = "incoming_people"
REDO = "redo:"  # a walk that reads again, by id, the records of a part whose message was lost
NOTES_KEPT = 1000  # errors and warnings named in a run's summary (their counts are exact)


def summarize(run_id: str, status: str | None) -> Record:
    """The run's record, counters and notes as its summary. What a scan's end changes is
    done before the summary exists, so whoever sees the summary sees it too: a finished
    scan is its LC's last success (a dry run's as well: `syncfleet health` asks whether
    scans go on, not what they write); a stopped one puts the marks back."""
    run = GIS.get(run_id) or {"run_id": run_id, "job": GIS.job}
    errors, warnings = notes(run_id, "errors"), notes(run_id, "warnings")
    failed = run.get("people_failed", 0) + run.get("applications_failed", 0)
    status = status or runs.final_status(run, failed)
    if run.get("kind") == "scan" and status in (runs.FINISHED, runs.FINISHED_WITH_ERRORS):
        set_last_success(scope_of(run))
    if run.get("kind") == "scan" and status in runs.STOPPED and not run.get("dry_run"):
        # Halted or cancelled: the marks go back where they were, before the summary
        # shows (so the next scan reads again what this one did not send).
        restore_marks(scope_of(run), run.get("marks_before") or {})
    return {**run, "status": status, "errors": errors, "warnings": warnings,
            "warnings_by_field": dict(Counter(f"{w['kind']}.{w['field']}" for w in warnings)),
            "finished_at": iso(),
            "duration_s": round(time.time() - (run.get("started_ts") or time.time()), 3),
            "parts": GIS.progress(run_id)["parts_finished"]}


def _ended(summary: Record) -> None:
    """A run ended (`summary` as built, whole; what is kept is its slim form): its other
    keys deleted, runs past the kept days forgotten."""
    run_history.compact(GIS, summary["run_id"], NOTES)
    run_history.forget_older(GIS.job, run_ttl())
    log.info("gis run %s: %s", summary["status"],
             {k: v for k, v in summary.items() if k not in ("errors", "warnings")})


def run_ttl() -> int:
    """Seconds a GIS run is kept: GIS_RUNS_KEPT_DAYS."""
    return get_settings().gis_runs_kept_days * 86400


NOTES = ("errors", "warnings")  # the run's own keys, folded into its summary
GIS = runs.Runs("gis", summarize, ttl=run_ttl, ended=_ended, kept=run_history.slim)


def start_run(run_id: str, kind: str, scope: Scope, /, **fields: Any) -> None:
    GIS.start(run_id, kind, lc=scope.lc, workspace=scope.workspace, **fields)


def scope_of(run: Record) -> Scope:
    return Scope(int(run.get("lc") or 0), str(run.get("workspace") or "none"))


def add_notes(run_id: str | None, errors: list[Record], warnings: list[Record]) -> None:
    """The records this run rejected and the fields it dropped, each named once (sets:
    a record handled twice in a run is named once), at most NOTES_KEPT of each."""
    r = store.client()
    if not run_id or not r.exists(GIS.key(run_id)):  # none, or ended: its summary is kept
        return
    for name, found in (("errors", errors), ("warnings", warnings)):
        key = GIS.key(run_id, name)
        if found and r.scard(key) < NOTES_KEPT:
            with r.pipeline(transaction=False) as pipe:
                pipe.sadd(key, *[json.dumps(n, sort_keys=True) for n in found])
                pipe.expire(key, run_ttl())
                pipe.execute()


def notes(run_id: str, name: str) -> list[Record]:
    return sorted((json.loads(n) for n in store.client().smembers(GIS.key(run_id, name))),
                  key=lambda n: (n.get("kind", ""), n.get("id", ""), n.get("field", "")))


# -- walks: how far a run has read GIS ------------------------------------------------------
def open_walks(run_id: str, since: dict[str, str | None], moves_marks: bool,
               holds_lock: bool) -> None:
    """A walk per stream from its lower bound (None: everything). A scan's walks move
    the marks (unless it is a dry run) and hold the scan lock; a backfill's neither."""
    for stream, lower in since.items():
        GIS.open_walk(run_id, stream, {"cursor": Cursor(lower=lower).to_json(), "pages": 0,
                                       "newest": None, "moves_marks": moves_marks,
                                       "holds_lock": holds_lock})


def open_names_walk(run_id: str, names: list[str], stream: str = RETRIES) -> None:
    """A walk over records read again from GIS by id: the failed records due for a
    retry, the incoming applicants (`INCOMING_PEOPLE`), or (`REDO`) the records of a
    part whose message was lost. The names are kept grouped by kind (people first; the
    order within a kind kept: the longest waiting first), so the walk reads each kind a
    full page of ids per GIS call."""
    names = sorted(names, key=lambda n: n.split(":", 1)[0] != "person")  # stable
    GIS.open_walk(run_id, stream, {"names": names, "offset": 0, "pages": 0, "newest": None,
                                   "moves_marks": False,
                                   "holds_lock": stream in (RETRIES, INCOMING_PEOPLE)})


def by_names(stream: str) -> bool:
    """A walk over names (kind:id) rather than a GIS list."""
    return stream in (RETRIES, INCOMING_PEOPLE) or stream.startswith(REDO)


def save_walk(run_id: str, stream: str, cursor: Cursor, newest: str | None) -> Record:
    """A page was handed over: checkpoint the cursor, and (in a scan) move the stream's
    high-water mark to the newest record handed over."""
    pages = (GIS.walk(run_id, stream) or {}).get("pages", 0) + 1
    current = GIS.save_walk(run_id, stream, cursor=cursor.to_json(), newest=newest,
                            pages=pages)
    _move_mark(run_id, stream, current, newest)
    return current


def save_names_offset(run_id: str, stream: str, offset: int) -> Record:
    pages = (GIS.walk(run_id, stream) or {}).get("pages", 0) + 1
    return GIS.save_walk(run_id, stream, offset=offset, pages=pages)


def end_walk(run_id: str, stream: str, newest: str | None) -> int:
    """The stream is read to its end (or the run stopped); returns the walks still open.
    The last walk of a scan to end sets a cold start's baseline and lets the scan lock
    go; the run finishes if every part has reported already."""
    _move_mark(run_id, stream, GIS.walk(run_id, stream) or {}, newest)
    still_open = GIS.end_walk(run_id, stream)
    if still_open == 0:
        run = GIS.get(run_id) or {}
        if run.get("kind") == "scan":
            if run.get("cold_start") and not run.get("dry_run") and not GIS.stopped(run_id):
                set_baseline(scope_of(run), run_id)
            release_scan_lock(run_id)
    GIS.finish_if_complete(run_id)
    return still_open


def _move_mark(run_id: str, stream: str, current: Record, newest: str | None) -> None:
    if current.get("moves_marks") and newest:
        set_marks(scope_of(GIS.get(run_id) or {}), {stream: newest})


def redo_stream(run_id: str, part: str, names: list[str]) -> str:
    """A lost part's records, read again in a walk of their own (opened before the part
    counts as reported, so the run cannot look complete in between)."""
    stream = f"{REDO}{part}"
    open_names_walk(run_id, names, stream)
    GIS.count(run_id, {"records_launched": -len(names)})  # launched again by the redo
    GIS.report(run_id, part)
    return stream


# -- the scan lock: held by a run's tasks in turn, from the scan to its walks' end -------
def _lock_name(scope: Scope) -> str:
    return f"gis-scan:{scope.lc}:{scope.workspace}"


def take_scan_lock(scope: Scope, run_id: str, timeout: float) -> bool:
    return store.hold(_lock_name(scope), timeout, run_id)


def keep_scan_lock(run_id: str, timeout: float) -> None:
    """Renew the run's lock (or take it back after it expired while a step was
    redelivered); another run holding it is logged, not fatal: both read the same
    changes and the sync tasks are idempotent."""
    if not store.hold(_lock_name(scope_of(GIS.get(run_id) or {})), timeout, run_id):
        log.warning("gis run %s walks while another run holds the scan lock", run_id)


def release_scan_lock(run_id: str) -> None:
    store.let_go(_lock_name(scope_of(GIS.get(run_id) or {})), run_id)


def scan_lock_holder(scope: Scope) -> str | None:
    return store.client().get(store.key("lock", _lock_name(scope)))
