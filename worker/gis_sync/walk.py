"""The walks of a GIS run: three lists read a page at a time, side by side (no Celery).

    people         people of the LC (home_committee)
    applications   applications of the LC's people (person_home_lc)
    incoming       applications to the LC's opportunities (opportunity_home_lc) from
                   people of other LCs (GIS_SYNC_INCOMING); the LC's own people's
                   applications come through `applications`
    retries        a scan's fourth walk: the failed records due for a retry, read again
                   from GIS by id, BY_ID_PAGE of one kind a call (`failed.py`)
    incoming_people  when GIS_INCOMING_PEOPLE_REFRESH is due (start.py): the people of
                   other LCs behind the LC's open incoming applications, read again by id,
                   BY_ID_PAGE a call (an edit of theirs moves no application)
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
    APPLICATIONS_BY_ID,
    BY_ID_PAGE,
    PEOPLE,
    PEOPLE_BY_ID,
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
    if walk is None and GIS.get(run_id) is None:
        # A run this Redis does not know (forgotten, expired, or lost with a Redis that
        # was restored or flushed): waiting would spin for ever. Were its start
        # redelivered, the start would open the walk and send it again.
        log.warning("gis walk run=%s stream=%s: no such run, message dropped", run_id, stream)
        return 0
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


BY_KIND = {"person": PEOPLE_BY_ID, "application": APPLICATIONS_BY_ID}


def _names_step(run_id: str, stream: str, ws: str, walk: dict[str, Any], gis: GisClient,
                launch: Launch, deadline: float) -> int | None:
    """Read the walk's records again from GIS by id and hand them over, a part per GIS
    call: up to BY_ID_PAGE records of one kind (`run_state.open_names_walk` keeps the
    names grouped by kind, so n people and m applications cost ceil(n / 100) +
    ceil(m / 100) calls). One that GIS no longer has is left out; a failed record
    (`retries`, `redo:{part}`) is dropped from the failed list then."""
    names, offset = walk["names"], walk["offset"]
    forget_gone = stream != run_state.INCOMING_PEOPLE  # not failed records: none to drop
    try:
        while offset < len(names) and not GIS.stopped(run_id):
            kind, ids = _same_kind(names, offset)
            found = _read_again(gis, ws if forget_gone else None, kind, ids)
            people, applications = (found, []) if kind == "person" else ([], found)
            launch(run_id, f"{stream}:{offset}", people, applications)
            offset += len(ids)
            run_state.save_names_offset(run_id, stream, offset)
            if offset < len(names) and time.monotonic() > deadline:
                return None
    except AuthError as exc:
        GIS.halt(run_id, str(exc))
    finally:
        GIS.count(run_id, {"gis_calls": gis.calls})
    return run_state.end_walk(run_id, stream, None)


def _same_kind(names: list[str], offset: int) -> tuple[str, list[str]]:
    """The kind of the name at `offset`, and the ids of the names of that kind that
    follow it without a break (at most BY_ID_PAGE): what one GIS call reads."""
    kind = names[offset].split(":", 1)[0]
    ids: list[str] = []
    for name in names[offset:offset + BY_ID_PAGE]:
        this_kind, record_id = name.split(":", 1)
        if this_kind != kind:
            break
        ids.append(record_id)
    return kind, ids


def _read_again(gis: GisClient, ws: str | None, kind: str, ids: list[str]) -> list[Record]:
    """The records GIS still has among `ids` (one call); with `ws`, those it no longer
    has leave that workspace's failed list (nothing left to retry)."""
    answers = gis.by_id(BY_KIND[kind], ids)
    gone = [record_id for record_id, found in zip(ids, answers, strict=True) if found is None]
    if ws is not None and gone:
        failed.clear(ws, kind, gone)
    return [found for found in answers if found is not None]


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
