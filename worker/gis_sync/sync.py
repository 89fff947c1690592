"""The GIS -> customer.io job as plain functions; `tasks.py` only wraps them in Celery.

`sync_records` syncs a handful of people and applications: it plans them
(`planning.py`: each person diffed with what customer.io last accepted, the ladder's
events), identifies (first) the people that need it, then sends the events, and only
then remembers attributes and steps. Expected failures (a malformed record, a 400)
become failure records; 429/5xx/no budget propagate so the task retries; a 401 halts the
run. A scan's failures go on the failed list (retried by later scans); a backfill's stay
in its run's summary only (see `give_up`).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from worker import metrics
from worker.clients.customerio import CustomerIo, event_item, identify_item
from worker.formats import Record
from worker.gis_sync import failed, run_state, state
from worker.gis_sync.planning import SCAN, Job, Plan, plan
from worker.gis_sync.run_state import GIS
from worker.http import AuthError, ClientError

log = logging.getLogger(__name__)

def sync_records(people: list[Record], applications: list[Record],
                 job: Job) -> dict[str, Any]:
    """Sync these records; returns (and counts into the run) what happened."""
    reason = GIS.stopped(job.run_id)
    if reason:  # halted (a wrong key) or cancelled: send nothing more
        return {"stopped": reason}
    work = plan(people, applications, job)
    if job.dry_run:
        return _dry_run(work, job)
    cio = CustomerIo(job.settings)
    try:
        failed_people = _send_identifies(cio, work, job)
        failed_apps = _send_events(cio, work, failed_people, job)
    except AuthError as exc:
        GIS.halt(job.run_id, str(exc))
        log.error("gis sync halted: %s", exc)
        work.add("cio_calls", cio.calls)
        GIS.count(job.run_id, work.counts)
        return {"stopped": str(exc)}
    work.add("cio_calls", cio.calls)
    _remember(work, failed_people, failed_apps, people, applications, job)
    return work.counts


def give_up(people: list[Record], applications: list[Record], reason: str,
            job: Job) -> dict[str, Any]:
    """A sync task out of retries still reports: its records are errors of the run,
    and (a scan's) kept on the failed list for a later scan."""
    failures = [{"kind": "person", "id": str(p.get("id")), "reason": reason} for p in people]
    failures += [{"kind": "application", "id": str(a.get("id")), "reason": reason}
                 for a in applications]
    _keep_failed(failures, job)
    counts = {"people_failed": len(people), "applications_failed": len(applications)}
    GIS.count(job.run_id, counts)
    run_state.add_notes(job.run_id, failures, [])
    return {**counts, "gave_up": reason}


def _keep_failed(failures: list[Record], job: Job) -> None:
    """A scan's failures go on the failed list: its marks have moved past them, and a
    later scan retries what the list holds (until they are dead). A backfill's do not:
    it is a re-send asked for by hand, whose failures are listed in its summary (send
    them again with a backfill by id); counted there, they would spend a record's
    attempts and make it dead for the scans. A dry run writes nothing."""
    if job.mode == SCAN and not job.dry_run:
        failed.record(job.workspace, failures, failed.policy(job.settings))


def task_records(task: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[list[Record], list[Record]]:
    """The people and applications a sync task was given, from its arguments."""
    if task == "gis.sync_batch":
        values = dict(zip(("people", "applications"), args, strict=False)) | kwargs
        return list(values.get("people") or []), list(values.get("applications") or [])
    values = dict(zip(("record_id", "record"), args, strict=False)) | kwargs
    record = values.get("record") or {"id": values.get("record_id") or
                                      kwargs.get("person_id") or kwargs.get("application_id")}
    return ([record], []) if task == "gis.sync_person" else ([], [record])


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
              people: list[Record], applications: list[Record],
              job: Job) -> None:
    """Written only after customer.io accepted: a crash before this repeats the sends,
    and the deterministic event ids make the repeat harmless."""
    ws, ref = job.workspace, state.run_ref(job.run_id)  # `syncfleet gis explain` reads it
    state.save_sent(ws, {pid: d for pid, d in work.digests.items() if pid not in failed_people},
                    ref)
    state.save_steps(ws, {aid: s for aid, s in work.steps.items() if aid not in failed_apps},
                     ref)
    _keep_failed(work.failures, job)
    # The people of other LCs behind open applications: read again by id now and then
    # (start.py), since an edit of theirs alone moves none of their applications.
    state.note_incoming(ws, job.settings.gis_lcs, applications)
    refused = {(f["kind"], f["id"]) for f in work.failures}
    for kind, records in (("person", people), ("application", applications)):
        failed.clear(ws, kind, [str(r.get("id")) for r in records
                            if (kind, str(r.get("id"))) not in refused])
    _count_into_run(work, job)


def _count_into_run(work: Plan, job: Job) -> None:
    """The run's counters and error list get this task's share; the fleet's metrics
    too (what was really sent: not in a dry run)."""
    GIS.count(job.run_id, work.counts)
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
