"""What a handful of GIS records needs (pure reads of the job's state, no sending): the
`Plan` of identifies and events to send and what to remember once customer.io accepted
them, under a `Job`'s scan or backfill semantics. `sync.py` sends it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.formats import Record
from worker.gis_sync import mapping, state
from worker.gis_sync.ladder import Ladder, Malformed, events, load_ladder
from worker.gis_sync.mapping import person_of
from worker.settings import Settings

SCAN = "scan"
BACKFILL = "backfill"


def ladder_from(settings: Settings) -> Ladder:
    return load_ladder(settings.gis_status_events, settings.gis_event_name_field)


@dataclass
class Job:
    """How to sync: the run it counts into, and the scan / backfill semantics."""

    settings: Settings
    run_id: str | None = None
    mode: str = SCAN
    since: int | None = None  # backfill: history from this Unix time
    use_batch: bool = False
    now: float = field(default_factory=time.time)

    @property
    def dry_run(self) -> bool:
        return self.settings.dry_run

    @property
    def workspace(self) -> str:
        return state.workspace(self.settings)


@dataclass
class Plan:
    identifies: dict[str, dict[str, Any]] = field(default_factory=dict)  # pid -> payload
    digests: dict[str, dict[str, str]] = field(default_factory=dict)  # pid -> to remember
    events: dict[str, list[Record]] = field(default_factory=dict)  # aid -> events
    owner: dict[str, str] = field(default_factory=dict)  # aid -> pid
    steps: dict[str, int] = field(default_factory=dict)  # aid -> step to remember
    failures: list[Record] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)  # fields dropped
    counts: dict[str, int] = field(default_factory=dict)
    people_seen: set[str] = field(default_factory=set)  # ids given as person records
    sent_names: Counter[str] = field(default_factory=Counter)  # event name -> sent

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def fail(self, kind: str, record_id: str, reason: str) -> None:
        self.failures.append({"kind": kind, "id": record_id, "reason": reason})
        self.add(f"{'people' if kind == 'person' else 'applications'}_failed")

    def warn(self, kind: str, record_id: str, problems: list[tuple[str, str]]) -> None:
        self.warnings += [{"kind": kind, "id": record_id, "field": name, "reason": reason}
                          for name, reason in problems]
        self.add("fields_dropped", len(problems))


def _id(record: Any) -> str:
    """A record's id for messages, whatever shape the record has."""
    return str(record.get("id")) if isinstance(record, dict) else f"<{type(record).__name__}>"


def plan(people: list[Record], applications: list[Record], job: Job
         ) -> Plan:
    """Everything to send and to remember, from the records and the state (pure reads)."""
    out = Plan()
    embedded = [person_of(a) for a in applications if isinstance(a, dict)]
    known = state.sent(job.workspace, [_id(p) for p in people] + [k for k in embedded if k])
    for person in people:
        out.add("people_seen")
        _plan_person(person, known.get(_id(person)), job, out)
    ladder = ladder_from(job.settings)
    previous = state.steps(job.workspace, [_id(a) for a in applications])
    for application in applications:
        out.add("applications_seen")
        _plan_application(application, previous.get(_id(application)), known, ladder,
                          job, out)
    return out


def _plan_person(person: Any, known: dict[str, str] | None, job: Job, out: Plan) -> None:
    try:
        mapped = mapping.map_person(person)
    except Malformed as exc:  # no usable id: nothing can be sent for this person
        out.fail("person", _id(person), str(exc))
        return
    out.people_seen.add(mapped.id)
    out.warn("person", mapped.id, mapped.warnings)
    if not _identify(mapped, known, job.mode == BACKFILL, out):
        out.add("people_unchanged")


def _identify(mapped: mapping.MappedPerson, known: dict[str, str] | None, resend: bool,
              out: Plan) -> bool:
    """Plan the identify a person needs: all of it the first time (with the
    first-identify attributes), else what changed (everything again in a backfill).
    False when nothing needs sending."""
    if known is None:
        payload = {**mapped.attributes, **mapped.first}
    elif resend:  # a manual re-sync re-sends what we think is current
        payload = dict(mapped.attributes)
    else:
        payload = changed(mapped.attributes, known)
    if not payload:
        return False
    out.identifies[mapped.id] = payload
    out.digests[mapped.id] = state.digests(mapped.attributes)
    return True


def changed(attributes: dict[str, Any], known: dict[str, str]) -> dict[str, Any]:
    """The attributes whose digest differs from what customer.io last accepted."""
    return {k: v for k, v in attributes.items() if known.get(k) != state.digest(v)}


def _plan_application(application: Any, previous: int | None,
                      known: dict[str, dict[str, str] | None], ladder: Ladder, job: Job,
                      out: Plan) -> None:
    aid = _id(application)
    if job.mode == BACKFILL:
        previous, since = None, job.since
    else:  # nothing known about it (first run, Redis lost): only recent transitions
        since = None if previous is not None else int(
            job.now - job.settings.cold_start_event_window)
    try:
        outcome = events(previous, application, ladder, since)
        pid = _person_ready(application, known, job, out)
    except Malformed as exc:
        out.fail("application", aid, str(exc))
        return
    out.warn("application", aid, outcome.warnings)
    out.add(f"moves_{outcome.kind}")
    out.add("events_skipped", outcome.skipped)
    out.owner[aid] = pid
    out.events[aid] = [e.as_dict() for e in outcome.events]
    # Remembered when it moved or sent something: an unchanged step is not written again,
    # so its run reference names the run that last sent it, not the last that read it.
    if outcome.step is not None and (outcome.step != previous or outcome.events):
        out.steps[aid] = outcome.step


def _person_ready(application: Record, known: dict[str, dict[str, str] | None],
                  job: Job, out: Plan) -> str:
    """The id of the application's person, identified before any of its events: from
    the person record of this batch, else from the person GIS embeds in the
    application (people of other LCs, whom no people query returns, arrive and change
    this way). Malformed when the person cannot be identified."""
    pid = person_of(application)
    if not pid:
        raise Malformed("no person")
    if pid in out.people_seen:
        if pid not in out.identifies and known.get(pid) is None:  # its identify failed
            why = next((f["reason"] for f in out.failures
                        if f["kind"] == "person" and f["id"] == pid), "not identified")
            raise Malformed(f"person {pid}: {why}")
        return pid
    if pid in out.identifies:
        return pid
    embedded = application.get("person")
    try:
        mapped = mapping.map_person(embedded if isinstance(embedded, dict) else {"id": pid})
    except Malformed as exc:
        raise Malformed(f"person {pid}: {exc}") from None
    out.warn("person", pid, mapped.warnings)
    if _identify(mapped, known.get(pid), False, out):
        out.add("people_identified_from_applications" if known.get(pid) is None
                else "people_updated_from_applications")
    return pid


