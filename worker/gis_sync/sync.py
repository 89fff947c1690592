"""The GIS -> customer.io job as plain functions; `tasks.py` only wraps them in Celery.

`sync_records` syncs a handful of people and applications: it diffs each person with
what customer.io last accepted, identifies (first) the people that need it, then sends
the ladder's events, and only then remembers attributes and steps. Expected failures
(a malformed record, a 400) become failure records; 429/5xx/no budget propagate so the
task retries; a 401 halts the run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker import metrics
from worker.clients.customerio import CustomerIo, event_item, identify_item
from worker.gis_sync import failed, mapping, run_state, state
from worker.gis_sync import ladder as ladder_mod
from worker.gis_sync.ladder import Ladder, Malformed
from worker.gis_sync.mapping import person_of
from worker.http import AuthError, ClientError
from worker.settings import Settings

log = logging.getLogger(__name__)

SCAN = "scan"
BACKFILL = "backfill"


def ladder_from(settings: Settings) -> Ladder:
    return ladder_mod.load_ladder(settings.gis_status_events, settings.gis_event_name_field)


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
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # aid -> events
    owner: dict[str, str] = field(default_factory=dict)  # aid -> pid
    steps: dict[str, int] = field(default_factory=dict)  # aid -> step to remember
    failures: list[dict[str, Any]] = field(default_factory=list)
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


def plan(people: list[dict[str, Any]], applications: list[dict[str, Any]], job: Job
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
        outcome = ladder_mod.events(previous, application, ladder, since)
        pid = _person_ready(application, known, job, out)
    except Malformed as exc:
        out.fail("application", aid, str(exc))
        return
    out.warn("application", aid, outcome.warnings)
    out.add(f"moves_{outcome.kind}")
    out.add("events_skipped", outcome.skipped)
    out.owner[aid] = pid
    out.events[aid] = [e.as_dict() for e in outcome.events]
    if outcome.step is not None:
        out.steps[aid] = outcome.step


def _person_ready(application: dict[str, Any], known: dict[str, dict[str, str] | None],
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


def sync_records(people: list[dict[str, Any]], applications: list[dict[str, Any]],
                 job: Job) -> dict[str, Any]:
    """Sync these records; returns (and counts into the run) what happened."""
    reason = run_state.halted(job.run_id)
    if reason:  # a wrong key: send nothing more (the run's marks go back when it ends)
        return {"halted": reason}
    work = plan(people, applications, job)
    if job.dry_run:
        return _dry_run(work, job)
    cio = CustomerIo(job.settings)
    try:
        failed_people = _send_identifies(cio, work, job)
        failed_apps = _send_events(cio, work, failed_people, job)
    except AuthError as exc:
        run_state.halt(job.run_id, str(exc))
        log.error("gis sync halted: %s", exc)
        work.add("cio_calls", cio.calls)
        run_state.count(job.run_id, work.counts)
        return {"halted": str(exc)}
    work.add("cio_calls", cio.calls)
    _remember(work, failed_people, failed_apps, people, applications, job)
    return work.counts


def keep_for_next_scan(people: list[dict[str, Any]], applications: list[dict[str, Any]],
                       reason: str, settings: Settings) -> None:
    """Records this run could not send go to the failed list: the scan's marks have
    moved past them, and a later scan retries what that list holds. A dry run writes
    nothing (its marks do not move)."""
    if settings.dry_run:
        return
    failed.record(
        state.workspace(settings),
        [{"kind": "person", "id": str(p.get("id")), "reason": reason} for p in people]
        + [{"kind": "application", "id": str(a.get("id")), "reason": reason}
           for a in applications], failure_policy(settings))


def failure_policy(settings: Settings) -> failed.Policy:
    return failed.Policy(interval=settings.gis_scan_interval,
                         max_attempts=settings.gis_failed_max_attempts,
                         max_age=settings.gis_failed_max_age)


def _send_identifies(cio: CustomerIo, work: Plan, job: Job) -> set[str]:
    """Identify every planned person; returns the ids customer.io refused."""
    refused: dict[str, str] = {}
    pids = list(work.identifies)
    if job.use_batch and pids:
        items = [identify_item(pid, work.identifies[pid]) for pid in pids]
        for error in cio.batch(items):
            refused[pids[error.index]] = error.reason
    else:
        for pid in pids:
            try:
                cio.identify(pid, work.identifies[pid])
            except ClientError as exc:
                refused[pid] = str(exc)
    for pid, reason in refused.items():
        work.fail("person", pid, f"customer.io refused identify: {reason}")
    work.add("people_updated", len(pids) - len(refused))
    return set(refused)


def _send_events(cio: CustomerIo, work: Plan, failed_people: set[str], job: Job
                 ) -> set[str]:
    """Send every planned event whose person is identified; returns refused app ids."""
    refused: dict[str, str] = {}
    for aid, pid in work.owner.items():
        if pid in failed_people:
            refused[aid] = f"person {pid} not identified"
    ready = [(aid, e) for aid, events in work.events.items() if aid not in refused
             for e in events]
    if job.use_batch and ready:
        items = [event_item(work.owner[aid], e) for aid, e in ready]
        for error in cio.batch(items):
            refused.setdefault(ready[error.index][0], error.reason)
    else:
        for aid, event in ready:
            if aid in refused:
                continue  # keep an application's events in order: stop at its first refusal
            try:
                cio.track(work.owner[aid], event)
            except ClientError as exc:
                refused[aid] = str(exc)
    for aid, reason in refused.items():
        work.fail("application", aid, f"customer.io refused event: {reason}")
    work.sent_names.update(e["name"] for aid, e in ready if aid not in refused)
    work.add("events_sent", sum(work.sent_names.values()))
    return set(refused)


def _remember(work: Plan, failed_people: set[str], failed_apps: set[str],
              people: list[dict[str, Any]], applications: list[dict[str, Any]],
              job: Job) -> None:
    """Written only after customer.io accepted: a crash before this repeats the sends,
    and the deterministic event ids make the repeat harmless."""
    ws = job.workspace
    state.save_sent(ws, {pid: d for pid, d in work.digests.items() if pid not in failed_people})
    state.save_steps(ws, {aid: s for aid, s in work.steps.items() if aid not in failed_apps})
    failed.record(ws, work.failures, failure_policy(job.settings))
    refused = {(f["kind"], f["id"]) for f in work.failures}
    for kind, records in (("person", people), ("application", applications)):
        failed.clear(ws, kind, [str(r.get("id")) for r in records
                            if (kind, str(r.get("id"))) not in refused])
    _count_into_run(work, job)


def _count_into_run(work: Plan, job: Job) -> None:
    """The run's counters and error list get this task's share; the fleet's metrics
    too (what was really sent: not in a dry run)."""
    run_state.count(job.run_id, work.counts)
    run_state.add_notes(job.run_id, work.failures, work.warnings)
    if not job.dry_run:
        metrics.add_many(record_metrics(work.counts, work.sent_names))


# Run counters -> outcome of each kind of record (records{job="gis", kind, outcome}).
OUTCOMES = {
    # people_updated counts every identify customer.io accepted, those of people read
    # through their applications included.
    ("person", "synced"): ("people_updated",),
    ("person", "unchanged"): ("people_unchanged",),
    ("person", "failed"): ("people_failed",),
    ("application", "synced"): ("moves_forward", "moves_withdrawn", "moves_rejected",
                                "moves_history"),
    ("application", "unchanged"): ("moves_unchanged",),
    ("application", "skipped"): ("moves_backward", "moves_unmapped"),
    ("application", "failed"): ("applications_failed",),
}


def record_metrics(counts: dict[str, int], sent_names: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (kind, outcome), names in OUTCOMES.items():
        out[metrics.field("records", {"job": "gis", "kind": kind, "outcome": outcome})] += \
            sum(counts.get(n, 0) for n in names)
    for name, n in sent_names.items():
        out[metrics.field("events", {"name": name})] += n
    return out


def _dry_run(work: Plan, job: Job) -> dict[str, Any]:
    for pid, payload in work.identifies.items():
        log.info("dry_run identify person=%s attributes=%s", pid, sorted(payload))
    for aid, events in work.events.items():
        for event in events:
            log.info("dry_run event person=%s application=%s name=%s timestamp=%s id=%s",
                     work.owner[aid], aid, event["name"], event["timestamp"], event["id"])
    work.add("people_updated", len(work.identifies))
    work.add("events_sent", sum(len(e) for e in work.events.values()))
    _count_into_run(work, job)
    return {**work.counts, "dry_run": True}
