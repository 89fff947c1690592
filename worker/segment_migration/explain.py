"""One migrated customer explained (`syncfleet migrate explain ID`; no Celery).

Its profile's fate in a run (the latest by default), from what the run keeps
(state.py): the slice holding its Segment id, and that slice's record:

    upserted    sent, and its bulk's async action was DONE without an error for it
    skipped     not sent: the profile has no usable identifier (the reason)
    failed      Voucherify's error for it (an async action's error item, a FAILED action,
                a bulk refused), Segment's (the profile went away), or its slice's
    would_send  a dry run mapped it
    pending     its slice has not reported yet (or the walk has not put it in one)
    unknown     the run's records predate per-profile source ids

ID is the customer's Voucherify `source_id` or the Segment profile id (a skipped profile
has no source_id). The lookup reads the run's slice ids and records once: O(profiles).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from worker import run_history, store
from worker.formats import Record
from worker.segment_migration import state
from worker.segment_migration.state import SEGMENT

BATCH = 500  # slices read per round trip


def profile(query: str, run_id: str | None = None) -> Record | None:
    """The profile's fate in the run; None when there is no run at all; "fate" None when
    the run does not hold the id."""
    run = _run(run_id)
    if run is None:
        return None
    run_id = str(run["run_id"])
    out: Record = {"query": query, "run_id": run_id, "run_status": run.get("status"),
                   "attempt": run.get("attempt"), "fate": None}
    walk = state.walk_checkpoint(run_id)
    results = state.all_results(run_id)
    for n, ids in _slices(run_id, int(walk.get("slices") or 0)):
        record = results.get(n)
        where = _position(query, ids, (record or {}).get("sources") or [])
        if where is not None:
            return {**out, **explain_in_slice(n, ids[where], record, where)}
    if query in (walk.get("buffer") or []):
        return {**out, "segment_id": query, "fate": "pending",
                "reason": "listed, not yet in a slice"}
    return out


def _run(run_id: str | None) -> Record | None:
    if run_id:
        found = SEGMENT.summary(run_id) or SEGMENT.get(run_id)
        return {"run_id": run_id, **found} if found else None
    latest = run_history.recent(1, job="segment")
    return latest[0] if latest else None


def _slices(run_id: str, total: int) -> Iterator[tuple[int, list[str]]]:
    """(slice number, its Segment ids), a batch of slices per round trip."""
    r = store.client()
    for start in range(0, total, BATCH):
        numbers = list(range(start, min(total, start + BATCH)))
        raws = r.mget([SEGMENT.key(run_id, "slice", n) for n in numbers])
        for n, raw in zip(numbers, raws, strict=True):
            yield n, json.loads(raw) if raw else []


def _position(query: str, ids: list[str], sources: list[str]) -> int | None:
    for listed in (ids, sources):
        if query in listed:
            return listed.index(query)
    return None


def explain_in_slice(n: int, segment_id: str, record: Record | None, where: int
                     ) -> Record:
    sources = (record or {}).get("sources") or []
    source = sources[where] if where < len(sources) else ""
    out: Record = {"segment_id": segment_id, "source_id": source or None, "slice": n}
    fate, reason = _fate(segment_id, source, record)
    warnings = [{"field": w.get("field"), "reason": w.get("reason")}
                for w in (record or {}).get("warnings") or []
                if w.get("segment_id") == segment_id]
    return {**out, "fate": fate, "reason": reason, "warnings": warnings}


def _fate(segment_id: str, source: str, record: Record | None) -> tuple[str, str | None]:
    if record is None:
        return "pending", "its slice has not reported yet"
    for skipped in record.get("skipped") or []:
        if skipped.get("segment_id") == segment_id:
            return "skipped", skipped.get("reason")
    for failed in record.get("failed") or []:
        if failed.get("segment_id") == segment_id or (source and
                                                      failed.get("source_id") == source):
            return "failed", failed.get("reason")
    if "sources" not in record:
        return "unknown", "the run's records predate per-profile source ids"
    if not source:
        return "failed", record.get("error") or "not sent"
    if "would_send" in record:
        return "would_send", "a dry run: mapped, not sent"
    unconfirmed = record.get("unconfirmed", 0)
    return "upserted", (f"unless among the {unconfirmed} customers of its slice Voucherify "
                        "never confirmed" if unconfirmed else None)
