"""Starting a GIS run (no Celery here: the tasks pass how to send a walk and a part).

A scan of an LC takes the LC's scan lock, checks the GIS token with one cheap read and
opens a walk per stream (and one over the failed records due for a retry). A backfill
opens walks over every LC from a date, or reads the records asked for by id at once.
Either way the walks are open before anything is handed over: a part that reports
early must not find a run without walks and take it for complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from worker.clients.gis import GisClient
from worker.formats import Record, iso
from worker.gis_sync import changes, failed, pause, run_state, state, walk
from worker.gis_sync.ladder import to_unix
from worker.gis_sync.planning import BACKFILL, SCAN
from worker.gis_sync.run_state import GIS
from worker.http import AuthError
from worker.settings import Settings

log = logging.getLogger(__name__)

RETRIES_PER_SCAN = 500  # failed records a scan retries at most (read by id, 100 of a kind a call)

StartWalks = Callable[[str, list[str]], None]  # (run id, streams): send their first steps


def scopes(settings: Settings, lc: int | None) -> list[state.Scope]:
    """The LCs of GIS_HOME_LC_ID, or the one asked for (none when it is not among them)."""
    return [s for s in state.scopes(settings) if lc is None or s.lc == int(lc)]


def paused_answer() -> Record | None:
    """A scan's answer while an operator has paused the GIS schedule (logged), else None:
    a scan starts nothing then, whoever sent it (beat, `syncfleet gis scan`)."""
    held = pause.paused()
    if held is None:
        return None
    log.info("gis.scan skipped: %s", pause.describe(held))
    return {"status": "skipped", "reason": f"{pause.describe(held)}; `syncfleet gis resume` "
                                           "resumes it", "paused": held}


def scan_lc(run_id: str, scope: state.Scope, gis: GisClient, settings: Settings,
            start_walks: StartWalks) -> Record:
    if not run_state.take_scan_lock(scope, run_id, settings.gis_scan_lock_timeout):
        log.info("gis.scan of LC %s skipped: another scan holds the lock", scope.lc)
        return {"status": "skipped", "lc": scope.lc, "reason": "another scan is running"}
    cold = not state.has_baseline(scope)
    # The marks as they stand: a run halted by a wrong key (or cancelled) puts them back
    # when it ends, so the next scan reads again what this one did not send.
    run_state.start_run(run_id, "scan", scope, cold_start=cold, dry_run=settings.dry_run,
                        mode=SCAN, since_ts=None, marks_before=state.marks(scope))
    try:
        calls = gis.calls
        gis.check(scope.lc)  # a wrong token fails here, visibly
        GIS.count(run_id, {"gis_calls": gis.calls - calls})
    except AuthError as exc:  # recorded for the user, never retried in a loop
        GIS.halt(run_id, str(exc))
        run_state.release_scan_lock(run_id)
        GIS.count(run_id, {"gis_calls": 1})
        GIS.finish_if_complete(run_id)
        raise
    streams = walk.streams(settings)
    since = changes.since_marks({} if cold else state.marks(scope), streams,
                                settings.gis_scan_overlap)
    run_state.open_walks(run_id, since, moves_marks=not settings.dry_run, holds_lock=True)
    retries = [failed.name(kind, rid)
               for kind, rid in failed.due(scope.workspace, RETRIES_PER_SCAN)]
    if retries and scope.lc == settings.gis_lcs[0]:  # a workspace's retries: one run each
        run_state.open_names_walk(run_id, retries)
        streams = [*streams, run_state.RETRIES]
    streams += _incoming_people(run_id, scope, settings, cold)
    start_walks(run_id, streams)
    return {"status": "started", "run_id": run_id, "lc": scope.lc, "cold_start": cold,
            "streams": streams, "retries": len(retries) if run_state.RETRIES in streams else 0}


def _incoming_people(run_id: str, scope: state.Scope, settings: Settings, cold: bool
                     ) -> list[str]:
    """When due, a walk reading again by id the people behind the LC's open incoming
    applications: their edits move none of their applications, so no list walk sees
    them. A cold start reads every incoming application (and the person in it) anyway."""
    now = time.time()
    if not settings.gis_sync_incoming or not state.incoming_refresh_due(
            scope, settings.gis_incoming_people_refresh, now):
        return []
    state.set_incoming_refreshed(scope, now)
    people = [] if cold else state.incoming_people(scope)
    if not people:
        return []
    run_state.open_names_walk(run_id, [failed.name("person", pid) for pid in people],
                              run_state.INCOMING_PEOPLE)
    return [run_state.INCOMING_PEOPLE]


def backfill(run_id: str, settings: Settings, since: str | None, person_ids: list[str] | None,
             application_ids: list[str] | None, lc: int | None, start_walks: StartWalks,
             launch: walk.Launch) -> Record:
    """By date: a walk per stream of every LC (or `lc`), in one run. By id: the records
    read at once and handed over as one part; ids GIS does not know are reported."""
    since_ts = to_unix(since) if since else None
    if since and since_ts is None:  # a clear answer, not a traceback
        return {"status": "refused", "reason": f"since must be an ISO-8601 date such as "
                                               f"2026-01-31, got {since!r}"}
    chosen = scopes(settings, lc)
    if not chosen:
        return {"status": "refused", "reason": f"LC {lc} is not in GIS_HOME_LC_ID"}
    run_state.start_run(run_id, "backfill", chosen[0], since=since, dry_run=settings.dry_run,
                        mode=BACKFILL, since_ts=since_ts, lcs=[s.lc for s in chosen])
    if person_ids or application_ids:
        gis = GisClient(settings)
        people, applications = records_by_id(gis, since, person_ids, application_ids)
        missing = _missing(person_ids, application_ids, people, applications)
        GIS.update(run_id, missing=missing)
        GIS.count(run_id, {"gis_calls": gis.calls})
        launch(run_id, "ids", people, applications)
        GIS.finish_if_complete(run_id)  # nothing found: nothing will report
        return {"status": "started", "run_id": run_id, "people": len(people),
                "applications": len(applications), "missing": missing}
    lower = iso(since_ts) if since_ts is not None else None
    streams = [f"{stream}@{scope.lc}" for scope in chosen for stream in walk.streams(settings)]
    run_state.open_walks(run_id, dict.fromkeys(streams, lower), moves_marks=False,
                         holds_lock=False)
    start_walks(run_id, streams)
    return {"status": "started", "run_id": run_id, "since": since}


def records_by_id(gis: GisClient, since: str | None, person_ids: list[str] | None,
                  application_ids: list[str] | None) -> tuple[list[Record], list[Record]]:
    """The people asked for (with their applications) and the applications asked for."""
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


def _missing(person_ids: list[str] | None, application_ids: list[str] | None,
             people: list[Record], applications: list[Record]) -> dict[str, list[str]]:
    """The ids asked for that GIS does not know (reported, never dropped silently)."""
    found_people = {str(p.get("id")) for p in people}
    found_apps = {str(a.get("id")) for a in applications}
    return {kind: missing for kind, missing in (
        ("people", [str(i) for i in person_ids or [] if str(i) not in found_people]),
        ("applications", [str(i) for i in application_ids or []
                          if str(i) not in found_apps])) if missing}


def part_arguments(run_id: str, part: str, people: list[Record], applications: list[Record]
                   ) -> dict[str, Any]:
    """A part about to be handed over: recorded with its records' names (what a redo
    reads again) and counted; returns the arguments its sync tasks share."""
    names = [failed.name("person", str(p.get("id"))) for p in people]
    names += [failed.name("application", str(a.get("id"))) for a in applications]
    GIS.launch(run_id, {part: names})
    GIS.count(run_id, {"records_launched": len(people) + len(applications)})
    run = GIS.get(run_id) or {}
    return {"run_id": run_id, "mode": run.get("mode", SCAN), "since": run.get("since_ts")}
