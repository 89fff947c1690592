"""One GIS record explained (`syncfleet gis explain person|application ID`; no Celery).

Reads the record from GIS (one call) and puts beside it what the fleet knows:

- a person: the digest of each attribute customer.io last accepted (state.py), compared
  with the mapping of the person as GIS shows it now: `differs` names the attributes the
  next sync that reads this person sends. customer.io keeps values, the fleet only their
  digests: an attribute that is the same now shows the value customer.io holds; one that
  differs shows GIS's new value, never the old one.
- an application: the last step customer.io accepted, and the events that step implies
  were sent, with their ids and timestamps, recomputed by the ladder from the record's
  dates (ids are deterministic: worker/gis_sync/ladder.py); and the events the next sync
  would send for it now (`pending`).
- a person of another LC (an incoming applicant): the open applications to the synced
  LCs that put them on the incoming refresh, and when it last ran (`incoming`): with
  none, their edits arrive only with a change of one of their applications;
- its entry on the failed or dead list (failed.py), with the reason;
- the run that last sent it, from the run reference kept with the state (state.py).

An event dated within COLD_START_EVENT_WINDOW of the record's last acceptance was surely
sent (`certain`); an older one was sent unless the record was first seen more than that
window after it (a cold start, or a backfill's --since, leaves such history out).
"""

from __future__ import annotations

import time
from typing import Any

from worker import run_history
from worker.clients.gis import GisClient
from worker.formats import Record, iso
from worker.gis_sync import failed, mapping, state
from worker.gis_sync.ladder import Ladder, Malformed, events, status_of
from worker.gis_sync.planning import ladder_from
from worker.settings import Settings

SAME, DIFFERS, ABSENT_NOW = "same", "differs", "absent in GIS now (customer.io keeps it)"


def person(person_id: str, settings: Settings, gis: GisClient | None = None
           ) -> Record | None:
    """The person explained; None when neither GIS nor the fleet knows the id."""
    record = (gis or GisClient(settings)).person(person_id)
    ws = state.workspace(settings)
    known, ref = state.accepted(ws, person_id)
    entry = failed.entry(ws, "person", person_id)
    if record is None and known is None and entry is None:
        return None
    out = _head("person", person_id, ws, record, _accepted(known is not None, ref),
                entry, ref)
    if record is not None:
        out.update(compare(record, known))
        home = mapping.home_lc_of(record)
        if home is not None and home not in settings.gis_lcs:
            out["incoming"] = incoming(person_id, settings)
    return out


def incoming(person_id: str, settings: Settings) -> Record:
    """Whether the refresh of incoming applicants reads this person of another LC, and why."""
    every = settings.gis_incoming_people_refresh
    opened: dict[str, list[str]] = {}
    last: list[float] = []  # the refreshes that read this person: their LCs' only
    for scope in state.scopes(settings):
        if apps := state.incoming_of(scope, person_id):
            opened[str(scope.lc)] = apps
            if (at := state.incoming_refreshed_at(scope)) is not None:
                last.append(at)
    return {"open_applications": opened, "refreshed": bool(opened) and every > 0,
            "refresh_every_s": every, "last_refresh_at": iso(max(last)) if last else None}


def _head(kind: str, record_id: str, ws: str, record: Record | None, accepted: Record,
          entry: Record | None, ref: state.Ref | None) -> Record:
    """What both kinds of explanation start with."""
    return {"kind": kind, "id": record_id, "workspace": ws, "in_gis": record is not None,
            "updated_at": (record or {}).get("updated_at"), "accepted": accepted,
            "failed": entry, "last_run": last_run(ref)}


def compare(record: Record, known: dict[str, str] | None) -> Record:
    """Each attribute now and against what customer.io accepted; `differs`: the
    attributes a sync would send (all of them when nothing was ever accepted)."""
    try:
        mapped = mapping.map_person(record)
    except Malformed as exc:
        return {"malformed": str(exc), "attributes": {}, "differs": []}
    attributes: dict[str, Record] = {}
    for name in state.ATTRIBUTES:
        value = mapped.attributes.get(name)
        accepted = (known or {}).get(name)
        if value is None:
            verdict = ABSENT_NOW if accepted else None
        else:
            verdict = SAME if accepted == state.digest(value) else DIFFERS
        if verdict:
            attributes[name] = {"now": value, "accepted": verdict}
    return {"attributes": attributes,
            "differs": [n for n, a in attributes.items() if a["accepted"] == DIFFERS],
            "warnings": [{"field": f, "reason": r} for f, r in mapped.warnings]}


def application(application_id: str, settings: Settings, gis: GisClient | None = None
                ) -> Record | None:
    """The application explained; None when neither GIS nor the fleet knows the id."""
    record = (gis or GisClient(settings)).application(application_id)
    ws = state.workspace(settings)
    step, ref = state.step_accepted(ws, application_id)
    entry = failed.entry(ws, "application", application_id)
    if record is None and step is None and entry is None:
        return None
    out = _head("application", application_id, ws, record,
                {**_accepted(step is not None, ref), "step": step}, entry, ref)
    if record is not None:
        out.update(_ladder(record, step, ref, settings))
    return out


def _ladder(record: Record, step: int | None, ref: state.Ref | None,
            settings: Settings) -> Record:
    ladder = ladder_from(settings)
    person_id = mapping.person_of(record)
    out: Record = {"person_id": person_id,
                   "person_accepted": bool(person_id) and
                   state.accepted(state.workspace(settings), person_id)[0] is not None}
    try:
        status = status_of(record)
        rung = ladder.rung(status)
        out["now"] = {"status": status, "step": rung[0] if rung else None}
        out["sent"] = sent_events(record, step, ladder, ref, settings)
        since = None if step is not None else \
            int(time.time() - settings.cold_start_event_window)
        out["pending"] = [_event(e) for e in events(step, record, ladder, since).events]
    except Malformed as exc:
        out.update(malformed=str(exc), sent=[], pending=[])
    return out


def sent_events(record: Record, step: int | None, ladder: Ladder, ref: state.Ref | None,
                settings: Settings) -> list[Record]:
    """The events the accepted step implies were sent: the history of the record as if
    it stood at that step, dated from its fields now."""
    if step is None:
        return []
    status = next((s for s, rung in ladder.table.items() if rung and rung[0] == step), None)
    if status is None:  # a step the ladder no longer has (GIS_STATUS_EVENTS changed)
        return []
    outcome = events(None, {**record, "status": status, "current_status": status}, ladder)
    edge = None if ref is None else ref.at - settings.cold_start_event_window
    return [{**_event(e), "certain": edge is not None and e.timestamp >= edge}
            for e in outcome.events]


def _event(event: Any) -> Record:
    return {"name": event.name, "id": event.id, "timestamp": event.timestamp,
            "at": iso(event.timestamp)}


def _accepted(known: bool, ref: state.Ref | None) -> Record:
    return {"known": known, "at": iso(ref.at) if ref else None}


def last_run(ref: state.Ref | None) -> Record | None:
    """The run that last sent the record: its id, kind, status and times, or its id's
    tail alone once the run is no longer kept (GIS_RUNS_KEPT)."""
    if ref is None or ref.run is None:
        return None
    run = run_history.ending_with("gis", ref.run, ref.at)
    if run is None:
        return {"run_id": None, "run_id_ends_with": ref.run, "kept": False}
    return {"run_id": run.get("run_id"), "kind": run.get("kind"), "status": run.get("status"),
            "started_at": run.get("started_at"), "finished_at": run.get("finished_at"),
            "kept": True}
