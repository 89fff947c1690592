"""GIS -> customer.io tasks (gis.*): thin Celery wrappers around the plain modules
(`start.py`, `walk.py`, `sync.py`; the run engine `worker.runs` through `run_state.GIS`).

    gis.scan(lc=None)             beat: a run per LC (`start.scan_lc`), then its walks
    gis.backfill(since=None, person_ids=None, application_ids=None, lc=None)
    gis.walk(run_id, stream)      reads the stream's pages from its checkpoint (as far as
                                  one delivery's time goes, then on in the next); each
                                  page becomes a chord of sync tasks at once
    gis.sync_person | gis.sync_application(id, record=None, run_id=None, mode, since)
    gis.sync_batch(people, applications, run_id=None, mode="scan", since=None)
    gis.part_done(results, run_id, part, headers)  chord body: the part has reported
                                  (its header's results forgotten); the run's summary is
                                  written, once, by whichever caller finds it complete
    gis.runs(n=10)                the last n runs, newest first
    gis.failed()                  records that failed and are retried by the next scan

Everything a task takes or returns is JSON and free of credentials. Results are stored
(for RESULT_EXPIRES) only where someone reads them: gis.scan, gis.backfill (the CLI,
`celery call`), gis.runs, gis.failed, and the chord headers (gis.sync_*: their body
forgets them); beat's scans send `ignore_result` (beat/schedule.py).
"""

from __future__ import annotations

import time
from typing import Any

from celery import chord

from worker import retry, run_history, store
from worker.app import app
from worker.clients.gis import GisClient
from worker.formats import Record
from worker.gis_sync import changes, failed, run_state, start, state, sync, walk
from worker.gis_sync.planning import SCAN, Job
from worker.gis_sync.run_state import GIS
from worker.settings import Settings, get_settings
from worker.tasking import FleetTask, forget_results


def _settings() -> Settings:
    settings = get_settings()
    settings.require("GIS_ACCESS_TOKEN", "GIS_HOME_LC_ID")
    if not settings.dry_run:
        settings.require("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY")
    return settings


# --- gis.scan / gis.backfill: start a run -------------------------------------------------

@app.task(name="gis.scan", base=FleetTask, bind=True, ignore_result=False)
def scan(self: FleetTask, lc: int | None = None) -> dict[str, Any]:
    """Start a scan of each LC of GIS_HOME_LC_ID (or of `lc`), unless the schedule is
    paused (`pause.py`): a run per LC, with its own marks and lock; the LCs share the
    fleet's budgets. One LC: the run's id is this task's id; several: `{task id}-{lc}`."""
    settings = _settings()
    paused = start.paused_answer()
    if paused is not None:
        return paused
    task_id = self.request.id or f"manual-{time.time_ns()}"
    scopes = start.scopes(settings, lc)
    if not scopes:
        return {"status": "refused", "reason": f"LC {lc} is not in GIS_HOME_LC_ID"}
    gis = GisClient(settings)
    started = [start.scan_lc(task_id if len(scopes) == 1 else f"{task_id}-{scope.lc}",
                             scope, gis, settings, _start_walks) for scope in scopes]
    if len(started) == 1:
        return started[0]
    return {"status": "started" if any(s["status"] == "started" for s in started)
            else "skipped", "runs": started}


@app.task(name="gis.backfill", base=FleetTask, bind=True, ignore_result=False)
def backfill(self: FleetTask, since: str | None = None, person_ids: list[str] | None = None,
             application_ids: list[str] | None = None, lc: int | None = None
             ) -> dict[str, Any]:
    """Re-sync a date range (or given ids) through the scan's path, sending the full
    history since `since` with the same deterministic event ids (safe to repeat). By
    date, every LC of GIS_HOME_LC_ID (or `lc`) is walked, in one run."""
    run_id = self.request.id or f"backfill-{time.time_ns()}"
    return start.backfill(run_id, _settings(), since, person_ids, application_ids, lc,
                          _start_walks, _launch)


def _start_walks(run_id: str, streams: list[str]) -> None:
    """Start the walks side by side (a redelivered start sends the same task ids
    again; a walk already under way goes on from its checkpoint)."""
    for stream in streams:
        walk_stream.apply_async((run_id, stream), task_id=f"{run_id}:walk:{stream}")


def _relaunch(run_id: str, walks: list[str], lost: dict[str, Any]) -> None:
    """A run that lost a message: its open walks again, and a redo walk per lost part
    (its records read again from GIS by id)."""
    redo = [run_state.redo_stream(run_id, part, names or []) for part, names in lost.items()]
    _start_walks(run_id, [*walks, *redo])


GIS.relaunch = _relaunch  # the run engine's recovery (worker.runs.look_after) sends with it


# --- gis.walk: read a stream, hand each page over ------------------------------------------

@app.task(name="gis.walk", base=FleetTask, bind=True)
def walk_stream(self: FleetTask, run_id: str, stream: str) -> dict[str, Any]:
    settings = _settings()
    try:
        with store.lock(f"gis:walk:{run_id}:{stream}", settings.task_time_limit):
            open_walks = walk.step(run_id, stream, GisClient(settings), settings, _launch,
                                   self.deadline())
    except store.LockHeld:  # a duplicate delivery: the other one walks
        return {"run_id": run_id, "stream": stream, "duplicate": True}
    if open_walks is None:
        raise retry.Continue()  # checkpointed: the next delivery reads on
    return {"run_id": run_id, "stream": stream, "walks_open": open_walks}


def _launch(run_id: str, part: str, people: list[Record], applications: list[Record]
            ) -> None:
    """Hand a part (a page, the retries) to the broker: a chord of sync tasks whose
    body reports the part. Small parts go one task per record, large ones in bundles
    through customer.io's batch API."""
    if not people and not applications:
        return
    settings = get_settings()
    common = start.part_arguments(run_id, part, people, applications)
    if len(people) + len(applications) >= settings.gis_batch_threshold:
        header = [sync_batch.s(ps, apps, **common) for ps, apps in
                  changes.bundles(people, applications, settings.gis_batch_size)]
    else:
        header = [sync_person.s(str(p.get("id")), record=p, **common) for p in people]
        header += [sync_application.s(str(a.get("id")), record=a, **common)
                   for a in applications]
    # Each header task's id names its run, part and place, so the body forgets their
    # results once it has them (a chord's header must store its results; nobody else
    # reads them).
    for i, signature in enumerate(header):
        signature.set(task_id=header_id(run_id, part, i))
    chord(header)(part_done.s(run_id, part, len(header)))


def header_id(run_id: str, part: str, i: int) -> str:
    return f"{run_id}:{part}:{i}"


# --- the sync tasks (chord headers) ---------------------------------------------------------

class SyncTask(FleetTask):
    """A chord header must always report back: out of retries, its records are errors
    of the run (a scan's go to the failed list) and it returns what it could not do."""

    def give_up(self, exc: Exception, *args: Any, **kwargs: Any) -> dict[str, Any]:
        people, applications = sync.task_records(self.name, args, kwargs)
        job = Job(get_settings(), run_id=kwargs.get("run_id"), mode=kwargs.get("mode", SCAN))
        return sync.give_up(people, applications, f"gave up after retries: {exc}", job)


@app.task(name="gis.sync_person", base=SyncTask, bind=True, ignore_result=False)
def sync_person(self: FleetTask, person_id: str, record: Record | None = None,
                run_id: str | None = None, mode: str = SCAN,
                since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    record = record or GisClient(settings).person(person_id)
    if record is None:
        return {"missing": person_id}
    return sync.sync_records([record], [], Job(settings, run_id, mode, since))


@app.task(name="gis.sync_application", base=SyncTask, bind=True, ignore_result=False)
def sync_application(self: FleetTask, application_id: str, record: Record | None = None,
                     run_id: str | None = None, mode: str = SCAN,
                     since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    record = record or GisClient(settings).application(application_id)
    if record is None:
        return {"missing": application_id}
    return sync.sync_records([], [record], Job(settings, run_id, mode, since))


@app.task(name="gis.sync_batch", base=SyncTask, bind=True, ignore_result=False)
def sync_batch(self: FleetTask, people: list[Record], applications: list[Record],
               run_id: str | None = None, mode: str = SCAN,
               since: int | None = None) -> dict[str, Any]:
    settings = _settings()
    job = Job(settings, run_id, mode, since, use_batch=settings.customerio_use_batch)
    return sync.sync_records(people, applications, job)


# --- the end of a part, and what people ask -------------------------------------------------

@app.task(name="gis.part_done", base=FleetTask, bind=True)
def part_done(self: FleetTask, results: list[Any], run_id: str, part: str,
              headers: int = 0) -> dict[str, Any]:
    """Chord body: the part's sync tasks have all reported (their results forgotten);
    the run ends if it was the last thing it waited for."""
    forget_results(self.app, [header_id(run_id, part, i) for i in range(headers)])
    GIS.report(run_id, part)
    summary = GIS.finish_if_complete(run_id)
    return summary or {"run_id": run_id, "part": part, **GIS.progress(run_id)}


@app.task(name="gis.runs", ignore_result=False)
def list_runs(n: int = 10) -> list[dict[str, Any]]:
    return run_history.recent(n, job=GIS.job)


@app.task(name="gis.failed", ignore_result=False)
def failed_records() -> dict[str, dict[str, dict[str, Any]]]:
    """The records waiting for a retry, and those given up (dead), with their reasons."""
    ws = state.workspace(get_settings())
    return {"failed": failed.failing(ws), "dead": failed.dead(ws)}
