"""GIS -> customer.io tasks (gis.*): thin Celery wrappers around `sync.py`.

    gis.scan                      beat: lock, read changes since the mark, fan out, advance
    gis.sync_person(person_id, record=None, run_id=None, mode="scan", since=None)
    gis.sync_application(application_id, record=None, run_id=None, mode="scan", since=None)
    gis.sync_batch(people, applications, run_id=None, mode="scan", since=None)
    gis.finish_scan(results, run_id)  chord body: the run's summary, kept once
    gis.backfill(since=None, person_ids=None, application_ids=None)
    gis.runs(n=10)                the last n run summaries, newest first
    gis.failed()                  records that failed and are retried by the next scan

Everything a task takes or returns is JSON and free of credentials.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import chord

from worker import runs as fleet_runs
from worker import store
from worker.app import app
from worker.clients.gis import GisClient
from worker.gis_sync import changes, state, sync
from worker.gis_sync.ladder import to_unix
from worker.http import AuthError
from worker.settings import Settings, get_settings
from worker.tasking import FleetTask

log = logging.getLogger(__name__)

Record = dict[str, Any]


def _settings() -> Settings:
    settings = get_settings()
    settings.require("GIS_ACCESS_TOKEN", "GIS_HOME_LC_ID")
    if not settings.dry_run:
        settings.require("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY")
    return settings


@app.task(name="gis.scan", base=FleetTask, bind=True)
def scan(self: FleetTask) -> dict[str, Any]:
    settings = _settings()
    run_id = self.request.id or f"manual-{time.time_ns()}"
    try:
        with store.lock(state.SCAN_LOCK, settings.gis_scan_lock_timeout, token=run_id,
                        renew=True):
            return _scan(run_id, settings)
    except store.LockHeld:
        log.info("gis.scan skipped: another scan holds the lock")
        return {"status": "skipped", "reason": "another scan is running"}


def _scan(run_id: str, settings: Settings) -> dict[str, Any]:
    started = time.time()
    _close_stale_runs(settings)
    cold = not state.has_baseline()
    gis = GisClient(settings)
    meta = {"cold_start": cold, "dry_run": settings.dry_run}
    try:
        found = changes.read_changes(gis, settings, None if cold else state.marks())
    except AuthError as exc:
        # A 401 stops the scan: recorded for the user, never retried in a loop.
        state.start_run(run_id, "scan", **meta, gis_calls=gis.calls)
        state.halt(run_id, str(exc))
        state.finish_run(run_id, settings.gis_runs_kept,
                         duration_s=round(time.time() - started, 3))
        raise
    people, applications = changes.with_retries(found.people, found.applications)
    state.start_run(run_id, "scan", **meta, gis_calls=found.gis_calls)
    tasks = _fan_out(run_id, settings, people, applications, sync.SCAN, None)
    if not settings.dry_run:  # the fan-out is in the broker now: safe to move on
        state.set_marks(found.marks)
        if cold:
            state.set_baseline(run_id)
    return {"status": "started", "run_id": run_id, "cold_start": cold, "people": len(people),
            "applications": len(applications), "tasks": tasks, "gis_calls": found.gis_calls}


def _close_stale_runs(settings: Settings) -> None:
    """Summaries for runs whose chord body never ran, marked incomplete (after twice
    the visibility timeout, every redelivery and retry of theirs is over)."""
    for run_id in state.stale_runs(2 * settings.visibility_timeout):
        summary = state.finish_run(run_id, settings.gis_runs_kept, incomplete=True)
        if summary:
            log.warning("gis run %s never finished: summary kept as incomplete", run_id)


def _fan_out(run_id: str, settings: Settings, people: list[Record],
             applications: list[Record], mode: str, since: int | None) -> int:
    """Hand the records to sync tasks (chord -> gis.finish_scan); returns the task count."""
    common = {"run_id": run_id, "mode": mode, "since": since}
    if len(people) + len(applications) >= settings.gis_batch_threshold:
        header = [sync_batch.s(ps, apps, **common)
                  for ps, apps in changes.bundles(people, applications, settings.gis_batch_size)]
    else:
        header = [sync_person.s(str(p.get("id")), record=p, **common) for p in people]
        header += [sync_application.s(str(a.get("id")), record=a, **common)
                   for a in applications]
    if header:
        chord(header)(finish_scan.s(run_id))
    else:
        finish_scan.delay([], run_id)
    return len(header)


def _job(settings: Settings, run_id: str | None, mode: str, since: int | None,
         use_batch: bool) -> sync.Job:
    return sync.Job(settings, run_id=run_id, mode=mode, since=since, use_batch=use_batch)


@app.task(name="gis.sync_person", base=FleetTask, bind=True)
def sync_person(self: FleetTask, person_id: str, record: Record | None = None,
                run_id: str | None = None, mode: str = sync.SCAN,
                since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    record = record or GisClient(settings).person(person_id)
    if record is None:
        return {"missing": person_id}
    return sync.sync_records([record], [], _job(settings, run_id, mode, since, False))


@app.task(name="gis.sync_application", base=FleetTask, bind=True)
def sync_application(self: FleetTask, application_id: str, record: Record | None = None,
                     run_id: str | None = None, mode: str = sync.SCAN,
                     since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    record = record or GisClient(settings).application(application_id)
    if record is None:
        return {"missing": application_id}
    return sync.sync_records([], [record], _job(settings, run_id, mode, since, False))


@app.task(name="gis.sync_batch", base=FleetTask, bind=True)
def sync_batch(self: FleetTask, people: list[Record], applications: list[Record],
               run_id: str | None = None, mode: str = sync.SCAN,
               since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    job = _job(settings, run_id, mode, since, settings.customerio_use_batch)
    return sync.sync_records(people, applications, job)


@app.task(name="gis.finish_scan", base=FleetTask, bind=True)
def finish_scan(self: FleetTask, results: list[Any], run_id: str) -> dict[str, Any]:
    """Chord body: the run's counters become its summary (once, even if redelivered)."""
    settings = get_settings()
    started = (fleet_runs.get(state.JOB, run_id) or {}).get("started_ts") or time.time()
    summary = state.finish_run(run_id, settings.gis_runs_kept, tasks=len(results),
                               duration_s=round(time.time() - started, 3))
    if summary is None:
        return fleet_runs.summary(state.JOB, run_id) or {"run_id": run_id}
    log.info("gis run finished: %s", {k: v for k, v in summary.items() if k != "errors"})
    return summary


@app.task(name="gis.backfill", base=FleetTask, bind=True)
def backfill(self: FleetTask, since: str | None = None, person_ids: list[str] | None = None,
             application_ids: list[str] | None = None) -> dict[str, Any]:
    """Re-sync a date range (or given ids) through the scan's path, sending the full
    history since `since` with the same deterministic event ids (safe to repeat)."""
    settings = _settings()
    since_ts = to_unix(since) if since else None
    if since and since_ts is None:
        raise ValueError(f"since must be an ISO-8601 date, got {since!r}")
    run_id = self.request.id or f"backfill-{time.time_ns()}"
    gis = GisClient(settings)
    people, applications = _backfill_records(gis, settings, since, person_ids, application_ids)
    state.start_run(run_id, "backfill", since=since, dry_run=settings.dry_run,
                    gis_calls=gis.calls)
    tasks = _fan_out(run_id, settings, people, applications, sync.BACKFILL, since_ts)
    return {"status": "started", "run_id": run_id, "people": len(people),
            "applications": len(applications), "tasks": tasks, "gis_calls": gis.calls}


def _backfill_records(gis: GisClient, settings: Settings, since: str | None,
                      person_ids: list[str] | None, application_ids: list[str] | None
                      ) -> tuple[list[Record], list[Record]]:
    if not person_ids and not application_ids:
        found = changes.read_changes(gis, settings, _since_marks(since))
        return found.people, found.applications
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


def _since_marks(since: str | None) -> dict[str, str] | None:
    """Read from `since` exactly (no overlap subtracted: marks get overlap added back)."""
    if not since:
        return None
    ts = to_unix(since)
    assert ts is not None
    shifted = changes.iso(ts + get_settings().gis_scan_overlap)
    return {"people": shifted, "applications": shifted, "incoming": shifted}


@app.task(name="gis.runs")
def runs(n: int = 10) -> list[dict[str, Any]]:
    return state.recent_runs(n)


@app.task(name="gis.failed")
def failed() -> dict[str, dict[str, Any]]:
    return {name: {"reason": f["reason"], "at": f["at"]} for name, f in state.failures().items()}
