"""GIS -> customer.io tasks (gis.*): thin Celery wrappers around `walk.py` and `sync.py`.

    gis.scan()                    beat: one cheap read (a wrong token fails here, at once),
                                  the scan lock, the run, then a walk per stream
    gis.walk(run_id, stream)      reads the stream's pages from its checkpoint (as far as
                                  one delivery's time goes, then on in the next); each
                                  page becomes a chord of sync tasks at once
    gis.sync_person | gis.sync_application(id, record=None, run_id=None, mode, since)
    gis.sync_batch(people, applications, run_id=None, mode="scan", since=None)
    gis.part_done(results, run_id, part)  chord body: the part has reported; the run's
                                  summary is written, once, when every walk has ended and
                                  every part reported
    gis.backfill(since=None, person_ids=None, application_ids=None)
    gis.runs(n=10)                the last n runs, newest first
    gis.failed()                  records that failed and are retried by the next scan

Everything a task takes or returns is JSON and free of credentials.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import chord

from worker import retry, store, tasking
from worker import runs as fleet_runs
from worker.app import app
from worker.clients.gis import GisClient
from worker.gis_sync import changes, failed, recovery, run_state, state, sync, walk
from worker.gis_sync.ladder import to_unix
from worker.http import AuthError
from worker.settings import Settings, get_settings
from worker.tasking import FleetTask

log = logging.getLogger(__name__)

Record = dict[str, Any]
RETRIES_PER_SCAN = 500  # failed records a scan retries at most (each is one GIS read)


def _settings() -> Settings:
    settings = get_settings()
    settings.require("GIS_ACCESS_TOKEN", "GIS_HOME_LC_ID")
    if not settings.dry_run:
        settings.require("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY")
    return settings


# --- gis.scan / gis.backfill: start a run -------------------------------------------------

@app.task(name="gis.scan", base=FleetTask, bind=True)
def scan(self: FleetTask, lc: int | None = None) -> dict[str, Any]:
    """Start a scan of each LC of GIS_HOME_LC_ID (or of `lc`): a run per LC, with its
    own marks and lock; the LCs share the fleet's budgets. One LC: the run's id is this
    task's id; several: `{task id}-{lc}`."""
    settings = _settings()
    task_id = self.request.id or f"manual-{time.time_ns()}"
    scopes = [s for s in state.scopes(settings) if lc is None or s.lc == int(lc)]
    if not scopes:
        return {"status": "refused", "reason": f"LC {lc} is not in GIS_HOME_LC_ID"}
    gis = GisClient(settings)
    started = [_scan_lc(task_id if len(scopes) == 1 else f"{task_id}-{scope.lc}", scope,
                        gis, settings) for scope in scopes]
    if len(started) == 1:
        return started[0]
    return {"status": "started" if any(s["status"] == "started" for s in started)
            else "skipped", "runs": started}


def _scan_lc(run_id: str, scope: state.Scope, gis: GisClient, settings: Settings
             ) -> dict[str, Any]:
    if not run_state.take_scan_lock(scope, run_id, settings.gis_scan_lock_timeout):
        log.info("gis.scan of LC %s skipped: another scan holds the lock", scope.lc)
        return {"status": "skipped", "lc": scope.lc, "reason": "another scan is running"}
    _close_stale_runs(settings)
    cold = not state.has_baseline(scope)
    # The marks as they stand: a run halted by a wrong key puts them back when it ends,
    # so the next scan reads again what this one could not send.
    run_state.start_run(run_id, "scan", scope, cold_start=cold, dry_run=settings.dry_run,
                        mode=sync.SCAN, since_ts=None, marks_before=state.marks(scope))
    try:
        calls = gis.calls
        gis.check(scope.lc)  # a wrong token fails here, visibly
        run_state.count(run_id, {"gis_calls": gis.calls - calls})
    except AuthError as exc:  # recorded for the user, never retried in a loop
        run_state.halt(run_id, str(exc))
        run_state.release_scan_lock(run_id)
        run_state.count(run_id, {"gis_calls": 1})
        run_state.finish_run(run_id, settings.gis_runs_kept)
        raise
    streams = walk.streams(settings)
    since = changes.since_marks({} if cold else state.marks(scope), streams,
                                settings.gis_scan_overlap)
    # The walks are open before anything is handed over: a part that reports early
    # must not find a run without walks and take it for complete.
    run_state.open_walks(run_id, since, moves_marks=not settings.dry_run, holds_lock=True)
    retries = [failed.name(kind, rid)
               for kind, rid in failed.due(scope.workspace, RETRIES_PER_SCAN)]
    if retries and scope.lc == settings.gis_lcs[0]:  # a workspace's retries: one run each
        run_state.open_retry_walk(run_id, retries)
        streams = [*streams, run_state.RETRIES]
    _start_walks(run_id, streams)
    return {"status": "started", "run_id": run_id, "lc": scope.lc, "cold_start": cold,
            "streams": streams, "retries": len(retries) if run_state.RETRIES in streams else 0}


@app.task(name="gis.backfill", base=FleetTask, bind=True)
def backfill(self: FleetTask, since: str | None = None, person_ids: list[str] | None = None,
             application_ids: list[str] | None = None, lc: int | None = None
             ) -> dict[str, Any]:
    """Re-sync a date range (or given ids) through the scan's path, sending the full
    history since `since` with the same deterministic event ids (safe to repeat). By
    date, every LC of GIS_HOME_LC_ID (or `lc`) is walked, in one run."""
    settings = _settings()
    since_ts = to_unix(since) if since else None
    if since and since_ts is None:  # a clear answer, not a traceback
        return {"status": "refused", "reason": f"since must be an ISO-8601 date such as "
                                               f"2026-01-31, got {since!r}"}
    scopes = [s for s in state.scopes(settings) if lc is None or s.lc == int(lc)]
    if not scopes:
        return {"status": "refused", "reason": f"LC {lc} is not in GIS_HOME_LC_ID"}
    run_id = self.request.id or f"backfill-{time.time_ns()}"
    run_state.start_run(run_id, "backfill", scopes[0], since=since, dry_run=settings.dry_run,
                        mode=sync.BACKFILL, since_ts=since_ts,
                        lcs=[s.lc for s in scopes])
    if person_ids or application_ids:
        gis = GisClient(settings)
        people, applications = _records_by_id(gis, since, person_ids, application_ids)
        missing = _missing(person_ids, application_ids, people, applications)
        fleet_runs.update(run_state.JOB, run_id, missing=missing)
        run_state.count(run_id, {"gis_calls": gis.calls})
        _launch(run_id, "ids", people, applications)
        _walk_ended(run_id, 0)
        return {"status": "started", "run_id": run_id, "people": len(people),
                "applications": len(applications), "missing": missing}
    lower = changes.iso(since_ts) if since_ts is not None else None
    streams = [f"{stream}@{scope.lc}" for scope in scopes for stream in walk.streams(settings)]
    run_state.open_walks(run_id, dict.fromkeys(streams, lower), moves_marks=False,
                         holds_lock=False)
    _start_walks(run_id, streams)
    return {"status": "started", "run_id": run_id, "since": since}


def _records_by_id(gis: GisClient, since: str | None, person_ids: list[str] | None,
                   application_ids: list[str] | None) -> tuple[list[Record], list[Record]]:
    people = [p for p in (gis.person(str(i)) for i in person_ids or []) if p]
    applications: dict[str, Record] = {}
    for pid in person_ids or []:
        for a in gis.applications(since, person_id=int(pid)):
            applications[str(a["id"])] = a
    for aid in application_ids or []:
        a = gis.application(str(aid))
        if a:
            applications[str(a["id"])] = a
    return people, list(applications.values())


def _start_walks(run_id: str, streams: list[str]) -> None:
    """Start the walks side by side (a redelivered start sends the same task ids
    again; a walk already under way goes on from its checkpoint)."""
    for stream in streams:
        walk_stream.apply_async((run_id, stream), task_id=f"{run_id}:walk:{stream}")


def _recover_lost(_app: Any) -> None:
    recovery.recover(lambda run_id, stream: _start_walks(run_id, [stream]))


tasking.CHORES.append(_recover_lost)  # every worker's timer: runs that lost a message


def _close_stale_runs(settings: Settings) -> None:
    """Summaries for runs whose work never all reported (a message lost), marked
    incomplete once nothing of theirs has happened for a long while."""
    for run_id in run_state.stale_runs(run_state.STALE_AFTER):
        summary = run_state.finish_run(run_id, settings.gis_runs_kept, incomplete=True)
        if summary:
            log.warning("gis run %s never finished: summary kept as incomplete", run_id)


# --- gis.walk: read a stream, hand each page over ------------------------------------------

@app.task(name="gis.walk", base=FleetTask, bind=True)
def walk_stream(self: FleetTask, run_id: str, stream: str) -> dict[str, Any]:
    settings = _settings()
    try:
        with store.lock(f"gis:walk:{run_id}:{stream}", settings.task_time_limit):
            open_walks = walk.step(run_id, stream, GisClient(settings), settings,
                                   lambda part, ps, apps: _launch(run_id, part, ps, apps),
                                   self.deadline())
    except store.LockHeld:  # a duplicate delivery: the other one walks
        return {"run_id": run_id, "stream": stream, "duplicate": True}
    if open_walks is None:
        raise retry.Continue()  # checkpointed: the next delivery reads on
    _walk_ended(run_id, open_walks)
    return {"run_id": run_id, "stream": stream, **(run_state.walk(run_id, stream) or {})}


def _missing(person_ids: list[str] | None, application_ids: list[str] | None,
             people: list[Record], applications: list[Record]) -> dict[str, list[str]]:
    """The ids asked for that GIS does not know (reported, never dropped silently)."""
    found_people = {str(p.get("id")) for p in people}
    found_apps = {str(a.get("id")) for a in applications}
    return {kind: missing for kind, missing in (
        ("people", [str(i) for i in person_ids or [] if str(i) not in found_people]),
        ("applications", [str(i) for i in application_ids or []
                          if str(i) not in found_apps])) if missing}


def _walk_ended(run_id: str, open_walks: int) -> None:
    """When the last walk ends, everything is handed over: a cold start's baseline is
    set, the scan lock goes; the run finishes if every part has reported already."""
    if open_walks == 0:
        record = run_state.record(run_id)
        if record.get("kind") == "scan":
            if record.get("cold_start") and not record.get("dry_run") and \
                    not run_state.halted(run_id):
                state.set_baseline(run_state.scope_of(record), run_id)
            run_state.release_scan_lock(run_id)
    _finish_if_complete(run_id)


def _launch(run_id: str, part: str, people: list[Record], applications: list[Record]
            ) -> None:
    """Hand a part (a page, the retries) to the broker: a chord of sync tasks whose
    body reports the part. Small parts go one task per record, large ones in bundles
    through customer.io's batch API."""
    if not people and not applications:
        return
    settings = get_settings()
    record = run_state.record(run_id)
    common = {"run_id": run_id, "mode": record.get("mode", sync.SCAN),
              "since": record.get("since_ts")}
    if len(people) + len(applications) >= settings.gis_batch_threshold:
        header = [sync_batch.s(ps, apps, **common)
                  for ps, apps in changes.bundles(people, applications,
                                                  settings.gis_batch_size)]
    else:
        header = [sync_person.s(str(p.get("id")), record=p, **common) for p in people]
        header += [sync_application.s(str(a.get("id")), record=a, **common)
                   for a in applications]
    names = [failed.name("person", str(p.get("id"))) for p in people]
    names += [failed.name("application", str(a.get("id"))) for a in applications]
    run_state.part_launched(run_id, part, names)  # what a redo reads again
    run_state.count(run_id, {"records_launched": len(people) + len(applications)})
    chord(header)(part_done.s(run_id, part))


# --- the sync tasks (chord headers) ---------------------------------------------------------

def _job(settings: Settings, run_id: str | None, mode: str, since: int | None,
         use_batch: bool) -> sync.Job:
    return sync.Job(settings, run_id=run_id, mode=mode, since=since, use_batch=use_batch)


class SyncTask(FleetTask):
    """A chord header must always report back: out of retries, its records go to the
    failed list (the next scan retries them) and it returns what it could not do."""

    def give_up(self, exc: Exception, *args: Any, **kwargs: Any) -> dict[str, Any]:
        people, applications = _records_of(self.name, args, kwargs)
        reason = f"gave up after retries: {exc}"
        sync.keep_for_next_scan(people, applications, reason, get_settings())
        counts = {"people_failed": len(people), "applications_failed": len(applications)}
        run_state.count(kwargs.get("run_id"), counts)
        return {**counts, "gave_up": str(exc)}


def _records_of(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> tuple[list[Record], list[Record]]:
    if name == "gis.sync_batch":
        values = dict(zip(("people", "applications"), args, strict=False)) | kwargs
        return list(values.get("people") or []), list(values.get("applications") or [])
    values = dict(zip(("record_id", "record"), args, strict=False)) | kwargs
    record = values.get("record") or {"id": values.get("record_id") or
                                      kwargs.get("person_id") or kwargs.get("application_id")}
    return ([record], []) if name == "gis.sync_person" else ([], [record])


@app.task(name="gis.sync_person", base=SyncTask, bind=True)
def sync_person(self: FleetTask, person_id: str, record: Record | None = None,
                run_id: str | None = None, mode: str = sync.SCAN,
                since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    record = record or GisClient(settings).person(person_id)
    if record is None:
        return {"missing": person_id}
    return sync.sync_records([record], [], _job(settings, run_id, mode, since, False))


@app.task(name="gis.sync_application", base=SyncTask, bind=True)
def sync_application(self: FleetTask, application_id: str, record: Record | None = None,
                     run_id: str | None = None, mode: str = sync.SCAN,
                     since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    record = record or GisClient(settings).application(application_id)
    if record is None:
        return {"missing": application_id}
    return sync.sync_records([], [record], _job(settings, run_id, mode, since, False))


@app.task(name="gis.sync_batch", base=SyncTask, bind=True)
def sync_batch(self: FleetTask, people: list[Record], applications: list[Record],
               run_id: str | None = None, mode: str = sync.SCAN,
               since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    job = _job(settings, run_id, mode, since, settings.customerio_use_batch)
    return sync.sync_records(people, applications, job)


# --- the end of a run -----------------------------------------------------------------------

@app.task(name="gis.part_done", base=FleetTask, bind=True)
def part_done(self: FleetTask, results: list[Any], run_id: str, part: str) -> dict[str, Any]:
    """Chord body: the part's sync tasks have all reported."""
    run_state.part_finished(run_id, part)
    summary = _finish_if_complete(run_id)
    return summary or {"run_id": run_id, "part": part, **run_state.progress(run_id)}


def _finish_if_complete(run_id: str) -> dict[str, Any] | None:
    """The run's summary, written once, when every walk has ended and every part has
    reported (whichever comes last calls this with effect)."""
    record = fleet_runs.get(run_state.JOB, run_id)
    if record is None or not run_state.is_complete(run_id):
        return None  # an unknown run (expired, or a stray message) has nothing to finish
    settings = get_settings()
    started = record.get("started_ts") or time.time()
    summary = run_state.finish_run(run_id, settings.gis_runs_kept,
                                   duration_s=round(time.time() - started, 3),
                                   parts=run_state.progress(run_id)["parts_finished"])
    if summary is not None:
        log.info("gis run finished: %s", {k: v for k, v in summary.items() if k != "errors"})
    return summary


@app.task(name="gis.runs")
def runs(n: int = 10) -> list[dict[str, Any]]:
    return run_state.recent_runs(n)


@app.task(name="gis.failed")
def failed_records() -> dict[str, dict[str, dict[str, Any]]]:
    """The records waiting for a retry, and those given up (dead), with their reasons."""
    ws = state.workspace(get_settings())
    return {"failed": failed.failing(ws), "dead": failed.dead(ws)}
