"""The walks of a GIS run: three lists read a page at a time, side by side (no Celery).

    people         people of the LC (home_committee)
    applications   applications of the LC's people (person_home_lc)
    incoming       applications to the LC's opportunities (opportunity_home_lc) from
                   people of other LCs (GIS_SYNC_INCOMING); the LC's own people's
                   applications come through `applications`
    retries        a scan's fourth walk: the failed records due for a retry, read again
                   from GIS one by one (`failed.py`)
    incoming_people  when GIS_INCOMING_PEOPLE_REFRESH is due (start.py): the people of
                   other LCs behind the LC's open incoming applications, read again by id,
                   PEOPLE_BY_ID_PAGE a call (an edit of theirs moves no application)
    redo:{part}    the records of a part whose message was lost, read again the same way
                   (the run engine's recovery, `worker/runs.py`)

A walk step (`step`) reads pages from the stream's checkpoint until its deadline:
each page's records are handed to the broker at once (`launch`), then the checkpoint
(the GIS cursor and the newest `updated_at` handed over) is saved and, in a scan, the
stream's high-water mark moves to it. A step that dies is redelivered and goes on from
the checkpoint; at worst one page is handed over twice (sync tasks are idempotent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from worker.clients.gis import (
    APPLICATIONS,
    PEOPLE,
    PEOPLE_BY_ID_PAGE,
    Cursor,
    GisClient,
    Listing,
)
from worker.formats import Record
from worker.gis_sync import failed, run_state
from worker.gis_sync.changes import newest
from worker.gis_sync.run_state import GIS
from worker.http import AuthError
from worker.settings import Settings

log = logging.getLogger(__name__)

# launch(run id, part id, people, applications): hand one page's records to the broker.
Launch = Callable[[str, str, list[Record], list[Record]], None]

STREAMS: dict[str, tuple[Listing, str]] = {
    "people": (PEOPLE, "home_committee"),
    "applications": (APPLICATIONS, "person_home_lc"),
    "incoming": (APPLICATIONS, "opportunity_home_lc"),
}


def streams(settings: Settings) -> list[str]:
    return [s for s in STREAMS if s != "incoming" or settings.gis_sync_incoming]


def step(run_id: str, stream: str, gis: GisClient, settings: Settings, launch: Launch,
         deadline: float) -> int | None:
    """Walk `stream` from its checkpoint until its end or `deadline` (monotonic). Returns
    None when the deadline came first, else the number of walks still open once this
    one ended. A 401 halts the run (the walk ends); retryable failures raise (the task
    retries from the checkpoint)."""
    walk = GIS.walk(run_id, stream)
    if walk is None and GIS.summary(run_id) is not None:
        return 0  # a late copy of a walk of an ended run (it keeps no checkpoint)
    if walk is None or not GIS.is_walking(run_id, stream):
        return None if walk is None else run_state.end_walk(run_id, stream, None)
    run = GIS.get(run_id) or {}
    if run_state.by_names(stream):
        return _names_step(run_id, stream, run["workspace"], walk, gis, launch, deadline)
    # "people" walks the run's LC; "people@1341" another LC of a multi-LC backfill.
    name, _, other_lc = stream.partition("@")
    lc = int(other_lc or run["lc"])
    listing, filter_name = STREAMS[name]
    cursor: Cursor | None = Cursor.from_json(walk["cursor"])
    newest_seen = walk.get("newest")
    try:
        while cursor is not None and not GIS.stopped(run_id):  # a 401, a cancel
            if walk.get("holds_lock"):
                run_state.keep_scan_lock(run_id, settings.gis_scan_lock_timeout)
            rows, cursor = gis.page(listing, {filter_name: lc}, cursor)
            _hand_over(run_id, stream, walk, rows, settings.gis_lcs, launch)
            newest_seen = newest(rows, newest_seen)
            if cursor is None:
                break
            walk = run_state.save_walk(run_id, stream, cursor, newest_seen)
            if time.monotonic() > deadline:
                return None
    except AuthError as exc:
        GIS.halt(run_id, str(exc))
        log.error("gis walk run=%s stream=%s halted: %s", run_id, stream, exc)
    finally:
        GIS.count(run_id, {"gis_calls": gis.calls})
    return run_state.end_walk(run_id, stream, newest_seen)


RETRY_CHUNK = 25  # failed records read again from GIS (one call each) per part


def _names_step(run_id: str, stream: str, ws: str, walk: dict[str, Any], gis: GisClient,
                launch: Launch, deadline: float) -> int | None:
    """Read the walk's records again from GIS by id and hand them over: the failed
    records due for a retry (GIS may have fixed them), RETRY_CHUNK at a time, one call
    each; the incoming applicants, PEOPLE_BY_ID_PAGE in one call. One that GIS no
    longer has is dropped."""
    names, offset = walk["names"], walk["offset"]
    paged = stream == run_state.INCOMING_PEOPLE  # people only, a page of ids per call
    size = PEOPLE_BY_ID_PAGE if paged else RETRY_CHUNK
    try:
        while offset < len(names) and not GIS.stopped(run_id):
            chunk = [n.split(":", 1) for n in names[offset:offset + size]]
            people, applications = (gis.people_by_id([i for _, i in chunk]), []) if paged \
                else _read_again(gis, ws, chunk)
            launch(run_id, f"{stream}:{offset}", people, applications)
            offset += len(chunk)
            run_state.save_names_offset(run_id, stream, offset)
            if offset < len(names) and time.monotonic() > deadline:
                return None
    except AuthError as exc:
        GIS.halt(run_id, str(exc))
    finally:
        GIS.count(run_id, {"gis_calls": gis.calls})
    return run_state.end_walk(run_id, stream, None)


def _read_again(gis: GisClient, ws: str, chunk: list[list[str]]
                ) -> tuple[list[Record], list[Record]]:
    people: list[Record] = []
    applications: list[Record] = []
    for kind, record_id in chunk:
        found = gis.person(record_id) if kind == "person" else gis.application(record_id)
        if found is None:
            failed.clear(ws, kind, [record_id])  # gone from GIS: nothing left to retry
        else:
            (people if kind == "person" else applications).append(found)
    return people, applications


def _hand_over(run_id: str, stream: str, walk: Record, rows: list[Record], lcs: list[int],
               launch: Launch) -> None:
    if stream.startswith("incoming"):  # the applications of people of a synced LC come
        own = {str(lc) for lc in lcs}  # through that LC's `applications` walk
        rows = [a for a in rows if _home_lc(a) not in own]
    if not rows:
        return
    part = f"{stream}:{walk.get('pages', 0)}"
    if stream.startswith("people"):
        launch(run_id, part, rows, [])
    else:
        launch(run_id, part, [], rows)


def _home_lc(application: Record) -> str | None:
    home = ((application.get("person") or {}).get("home_lc") or {}).get("id")
    return str(home) if home is not None else None
