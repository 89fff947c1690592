"""One slice of a migration as plain functions: fetch, map, upsert (no Celery here).

`migrate` fetches the slice's profiles from Segment a few at once, maps them
(`mapping.py`), sends the customers to Voucherify in bulks and reads every bulk's async
action until it is final. Work survives a retry or a redelivery through checkpoints in
Redis (`state.py`): the mapped customers are kept once fetched, each bulk's async action
id the moment Voucherify accepts it, and each outcome once final. A redone slice polls
what it sent and never sends a bulk twice.

Short waits (budget, a brief Retry-After, a few 5xx) are spent in place under the
fleet's retry policy (`worker.retry.in_place`); longer ones raise, and the task
reschedules itself with its checkpoints intact.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from worker import retry
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import AsyncOutcome, VoucherifyClient
from worker.http import ApiError, AuthError, ClientError
from worker.segment_migration import mapping, state
from worker.settings import Settings

log = logging.getLogger(__name__)

Record = dict[str, Any]
FIRST_POLL = 0.3  # seconds before the first poll of the last bulk's async action


def failure_record(slice_no: int, segment_ids: list[str], reason: str) -> Record:
    """Every profile of a slice that could not complete, failed with the same reason."""
    return {"slice": slice_no, "ok": False, "error": reason, "profiles": len(segment_ids),
            "sent": 0, "upserted": 0, "skipped": [], "warnings": [],
            "failed": [{"segment_id": sid, "reason": reason} for sid in segment_ids]}


def migrate(run_id: str, slice_no: int, segment_ids: list[str], settings: Settings
            ) -> Record:
    """Fetch, map and upsert one slice; returns its record. A 401 halts the whole run
    (the record says so); retryable failures raise (the task retries)."""
    run = state.get_run(run_id) or {}
    dry_run = bool(run.get("dry_run", settings.dry_run))
    segment: SegmentClient | None = None
    voucherify: VoucherifyClient | None = None
    try:
        batch = state.get_mapped(run_id, slice_no)
        if batch is None:
            segment = SegmentClient(settings, pool_size=settings.segment_fetch_concurrency)
            batch = fetch_and_map(segment, segment_ids, settings)
            state.save_mapped(run_id, slice_no, batch)
        record = {"slice": slice_no, "ok": True, "error": None, "profiles": len(segment_ids),
                  "sent": 0, "upserted": 0, "skipped": batch["skipped"],
                  "failed": list(batch["failed"]), "warnings": batch["warnings"]}
        if dry_run:
            record["would_send"] = len(batch["customers"])
        elif batch["customers"]:
            voucherify = VoucherifyClient(settings)
            upsert(voucherify, run_id, slice_no, batch["customers"],
                   settings.voucherify_bulk_size, record)
    except AuthError as exc:
        # A wrong credential will stay wrong: halt the whole run, name the variable.
        state.halt(run_id, str(exc))
        log.error("segment slice run=%s slice=%d halted the run: %s", run_id, slice_no, exc)
        record = failure_record(slice_no, segment_ids, f"run halted: {exc}")
    finally:
        state.add_calls(run_id, segment=segment.calls if segment else 0,
                        voucherify=voucherify.calls if voucherify else 0)
    return record


def fetch_and_map(client: SegmentClient, segment_ids: list[str], settings: Settings,
                  stop: threading.Event | None = None) -> dict[str, Any]:
    """Fetch every profile of the slice (a few at once) and map it. A 401, an exhausted
    retry or the soft time limit sets `stop`: the other fetches end at their next call."""
    stop = stop or threading.Event()

    def one(segment_id: str) -> tuple[str, Any, Any]:
        try:
            traits = retry.in_place(lambda: client.traits(segment_id), stop)
            ids = retry.in_place(lambda: client.external_ids(segment_id), stop)
            return segment_id, traits, ids
        except ClientError as exc:  # e.g. 404: the profile went away after the walk
            return segment_id, exc, None
        except BaseException:
            stop.set()
            raise

    workers = max(1, min(settings.segment_fetch_concurrency, len(segment_ids)))
    with ThreadPoolExecutor(workers, thread_name_prefix="segment-fetch") as pool:
        futures = []
        try:
            futures += [pool.submit(one, sid) for sid in segment_ids]
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            # The soft time limit (raised in this thread): the fetch threads stop at their
            # next call instead of finishing the slice while the hard limit runs out.
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
    fetched = [f.result() for f in futures if not f.cancelled() and not f.exception()]
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
    real = [e for e in errors if not isinstance(e, retry.Stopped)]
    if real:  # AuthError first: it halts the run, whatever else happened
        raise next((e for e in real if isinstance(e, AuthError)), real[0])
    return map_profiles(fetched, settings)


def map_profiles(fetched: list[tuple[str, Any, Any]], settings: Settings) -> dict[str, Any]:
    batch: dict[str, Any] = {"customers": [], "skipped": [], "failed": [], "warnings": []}
    for segment_id, traits, ids in fetched:
        if isinstance(traits, ApiError):
            batch["failed"].append({"segment_id": segment_id,
                                    "reason": f"segment: {traits.status} {traits.body}"})
            continue
        out = mapping.customer(segment_id, traits, ids, settings.segment_source_id_type,
                               settings.segment_extra_traits_to_metadata)
        batch["warnings"].extend(out.warnings)
        if out.customer is None:
            batch["skipped"].append({"segment_id": segment_id, "reason": out.skipped})
        else:
            batch["customers"].append({"segment_id": segment_id, "customer": out.customer})
    return batch


def upsert(client: VoucherifyClient, run_id: str, slice_no: int,
           customers: list[dict[str, Any]], bulk_size: int, record: Record) -> None:
    """Send the slice's customers in bulks, then read every async action's outcome.
    Each bulk's action id is stored (by its position in the slice) the moment Voucherify
    accepts it, each outcome once final. A 413 halves the bulk."""
    known = state.actions(run_id, slice_no)  # "pos" -> "length:action id"
    sent: list[tuple[int, int, str]] = []
    pos, size = 0, bulk_size
    while pos < len(customers):
        if str(pos) in known:
            length, action_id = known[str(pos)].split(":", 1)
            sent.append((pos, int(length), action_id))
            pos += int(length)
            continue
        chunk = customers[pos:pos + size]
        try:
            payload = [c["customer"] for c in chunk]
            action_id = retry.in_place(lambda p=payload: client.bulk_upsert(p))
        except ClientError as exc:
            if exc.status == 413 and len(chunk) > 1:  # older plans cap a bulk at 100
                size = max(1, len(chunk) // 2)
                log.warning("voucherify: 413 for %d customers; sending %d at a time "
                            "(lower VOUCHERIFY_BULK_SIZE)", len(chunk), size)
                continue
            _chunk_failed(record, chunk, f"voucherify rejected the bulk: {exc}")
            pos += len(chunk)
            continue
        state.save_action(run_id, slice_no, str(pos), f"{len(chunk)}:{action_id}")
        sent.append((pos, len(chunk), action_id))
        pos += len(chunk)
    record["sent"] = sum(length for _, length, _ in sent)
    # Bulks are processed in order, so the last one is final last: wait for it first,
    # then the others are final already and cost one poll each.
    for n, (pos, length, action_id) in enumerate(reversed(sent)):
        outcome = _outcome(client, run_id, slice_no, pos, action_id,
                           known.get(f"{pos}:outcome"), first_poll=n == 0)
        _apply_outcome(record, customers[pos:pos + length], outcome)


def _outcome(client: VoucherifyClient, run_id: str, slice_no: int, pos: int,
             action_id: str, stored: str | None, first_poll: bool) -> AsyncOutcome:
    """The stored outcome of a bulk, or a poll of its async action until final."""
    if stored:
        return AsyncOutcome(**json.loads(stored))
    outcome = client.wait_for(action_id, first=FIRST_POLL if first_poll else 0.0,
                              patience=retry.in_place)
    state.save_action(run_id, slice_no, f"{pos}:outcome", state.dumps(outcome.__dict__))
    return outcome


def _chunk_failed(record: Record, chunk: list[dict[str, Any]], reason: str) -> None:
    record["ok"] = False
    record["error"] = record.get("error") or reason
    record["failed"].extend({"segment_id": c["segment_id"],
                             "source_id": c["customer"]["source_id"], "reason": reason}
                            for c in chunk)


def _apply_outcome(record: Record, chunk: list[dict[str, Any]], outcome: AsyncOutcome) -> None:
    if outcome.status != "DONE":
        _chunk_failed(record, chunk, f"async action {outcome.id} {outcome.status}: "
                      f"{outcome.message or 'no message'}")
        return
    record["upserted"] += outcome.done_count
    by_source = {c["customer"]["source_id"]: c["segment_id"] for c in chunk}
    for error in outcome.errors:
        source_id = str(error.get("source_id") or "")  # the vendor's error item names it
        reason = ": ".join(str(error[k]) for k in ("key", "message", "details", "reason")
                           if error.get(k))
        record["failed"].append({"segment_id": by_source.get(source_id, ""),
                                 "source_id": source_id, "reason": reason or "failed"})
    unconfirmed = len(chunk) - outcome.done_count - len(outcome.errors)
    if unconfirmed > 0:
        record["unconfirmed"] = record.get("unconfirmed", 0) + unconfirmed
