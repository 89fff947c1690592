"""One slice of a migration as plain functions: fetch, map, upsert (no Celery here).

`migrate` fetches the slice's profiles from Segment a few at once, maps them
(`mapping.py`), sends the customers to Voucherify in bulks and reads every bulk's async
action until it is final. Work survives a retry or a redelivery through checkpoints in
Redis (`state.py`): the mapped customers are kept once fetched, each bulk's async action
id the moment Voucherify accepts it, and each outcome once final. A redone slice polls
what it sent and never sends a bulk twice.

Every delivery has a deadline (a few seconds before the task's soft time limit). Work
not done by then is checkpointed (the profiles fetched so far, the bulks sent, the
outcomes read) and `retry.Continue` is raised: the task goes on in a new delivery.
Short waits (budget, a brief Retry-After, a few 5xx) are spent in place under the
fleet's retry policy (`worker.retry.in_place`); longer ones raise, and the task
reschedules itself with its checkpoints intact.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from worker import retry
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import AsyncActionTimeout, AsyncOutcome, VoucherifyClient
from worker.http import ApiError, AuthError, ClientError
from worker.segment_migration import mapping, state
from worker.settings import Settings

log = logging.getLogger(__name__)

Record = dict[str, Any]
FIRST_POLL = 0.3  # seconds before the first poll of the last bulk's async action
# How long an async action may stay pending (across deliveries) before the slice counts it
# as a failure to retry: Voucherify queues can be slow, not endless.
ACTION_PATIENCE_S = 900
NO_DEADLINE = float("inf")
_LATER = object()  # a profile not fetched before the deadline: the next delivery does it


def failure_record(slice_no: int, segment_ids: list[str], reason: str) -> Record:
    """Every profile of a slice that could not complete, failed with the same reason."""
    return {"slice": slice_no, "ok": False, "error": reason, "profiles": len(segment_ids),
            "sent": 0, "upserted": 0, "skipped": [], "warnings": [],
            "failed": [{"segment_id": sid, "reason": reason} for sid in segment_ids]}


def migrate(run_id: str, slice_no: int, segment_ids: list[str], settings: Settings,
            deadline: float = NO_DEADLINE) -> Record:
    """Fetch, map and upsert one slice; returns its record. A 401 halts the whole run
    (the record says so); retryable failures raise (the task retries); work left at
    `deadline` (monotonic) is checkpointed and `retry.Continue` raised."""
    run = state.get_run(run_id) or {}
    dry_run = bool(run.get("dry_run", settings.dry_run))
    segment: SegmentClient | None = None
    voucherify: VoucherifyClient | None = None
    try:
        batch = state.get_mapped(run_id, slice_no)
        if batch is None or not batch.get("complete"):
            segment = SegmentClient(settings, pool_size=settings.segment_fetch_concurrency)
            batch = fetch_and_map(segment, segment_ids, settings, deadline=deadline,
                                  before=batch,
                                  on_fetched=lambda: state.add_live(run_id, profiles_fetched=1))
            state.save_mapped(run_id, slice_no, batch)
            if not batch["complete"]:
                raise retry.Continue()
        record = {"slice": slice_no, "ok": True, "error": None, "profiles": len(segment_ids),
                  "sent": 0, "upserted": 0, "skipped": batch["skipped"],
                  "failed": list(batch["failed"]), "warnings": batch["warnings"]}
        if dry_run:
            record["would_send"] = len(batch["customers"])
        elif batch["customers"]:
            voucherify = VoucherifyClient(settings)
            upsert(voucherify, run_id, slice_no, batch["customers"],
                   settings.voucherify_bulk_size, record, deadline)
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
                  stop: threading.Event | None = None, deadline: float = NO_DEADLINE,
                  before: dict[str, Any] | None = None,
                  on_fetched: Callable[[], None] | None = None) -> dict[str, Any]:
    """Fetch the slice's profiles (a few at once) and map them, adding to `before` (the
    checkpoint of an earlier delivery: its profiles are not fetched again). Profiles not
    started by `deadline` are left for the next delivery (`complete` is then false). A
    401, an exhausted retry or the soft time limit sets `stop`: the other fetches end at
    their next call."""
    stop = stop or threading.Event()
    batch = before or {"customers": [], "skipped": [], "failed": [], "warnings": [],
                       "seen": []}
    seen = set(batch.get("seen") or [])
    todo = [sid for sid in segment_ids if sid not in seen]

    def one(segment_id: str) -> tuple[str, Any, Any]:
        if time.monotonic() > deadline:
            return segment_id, _LATER, None
        try:
            traits = retry.in_place(lambda: client.traits(segment_id), stop,
                                    deadline=deadline)
            ids = retry.in_place(lambda: client.external_ids(segment_id), stop,
                                 deadline=deadline)
            if on_fetched is not None:
                on_fetched()
            return segment_id, traits, ids
        except ClientError as exc:  # e.g. 404: the profile went away after the walk
            return segment_id, exc, None
        except BaseException:
            stop.set()
            raise

    workers = max(1, min(settings.segment_fetch_concurrency, len(todo) or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="segment-fetch") as pool:
        futures = []
        try:
            futures += [pool.submit(one, sid) for sid in todo]
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
    done = [f for f in fetched if f[1] is not _LATER]
    map_profiles(done, settings, batch)
    batch["seen"] = sorted(seen | {sid for sid, _, _ in done})
    batch["complete"] = len(batch["seen"]) >= len(set(segment_ids))
    return batch


def map_profiles(fetched: list[tuple[str, Any, Any]], settings: Settings,
                 batch: dict[str, Any] | None = None) -> dict[str, Any]:
    """Map fetched profiles into `batch` (customers, skipped, failed, warnings)."""
    batch = batch if batch is not None else {"customers": [], "skipped": [], "failed": [],
                                             "warnings": []}
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
           customers: list[dict[str, Any]], bulk_size: int, record: Record,
           deadline: float = NO_DEADLINE) -> None:
    """Send the slice's customers in bulks, then read every async action's outcome.
    Each bulk's action id is stored (by its position in the slice) the moment Voucherify
    accepts it, each outcome once final. A 413 halves the bulk."""
    known = state.actions(run_id, slice_no)  # "pos" -> "length:sent at:action id"
    sent: list[tuple[int, int, float, str]] = []
    pos, size = 0, bulk_size
    while pos < len(customers):
        if str(pos) in known:
            length, sent_at, action_id = known[str(pos)].split(":", 2)
            sent.append((pos, int(length), float(sent_at), action_id))
            pos += int(length)
            continue
        if time.monotonic() > deadline:
            raise retry.Continue()  # the bulks sent so far are stored: go on from here
        chunk = customers[pos:pos + size]
        try:
            payload = [c["customer"] for c in chunk]
            action_id = retry.in_place(lambda p=payload: client.bulk_upsert(p),
                                       deadline=deadline)
        except ClientError as exc:
            if exc.status == 413 and len(chunk) > 1:  # older plans cap a bulk at 100
                size = max(1, len(chunk) // 2)
                log.warning("voucherify: 413 for %d customers; sending %d at a time "
                            "(lower VOUCHERIFY_BULK_SIZE)", len(chunk), size)
                continue
            _chunk_failed(record, chunk, f"voucherify rejected the bulk: {exc}")
            pos += len(chunk)
            continue
        now = time.time()
        state.save_action(run_id, slice_no, str(pos), f"{len(chunk)}:{now:.0f}:{action_id}")
        sent.append((pos, len(chunk), now, action_id))
        pos += len(chunk)
    record["sent"] = sum(length for _, length, _, _ in sent)
    # Bulks are processed in order, so the last one is final last: wait for it first,
    # then the others are final already and cost one poll each.
    for n, (pos, length, sent_at, action_id) in enumerate(reversed(sent)):
        outcome = _outcome(client, run_id, slice_no, pos, action_id, sent_at,
                           known.get(f"{pos}:outcome"), first_poll=n == 0, deadline=deadline)
        _apply_outcome(record, customers[pos:pos + length], outcome)


def _outcome(client: VoucherifyClient, run_id: str, slice_no: int, pos: int,
             action_id: str, sent_at: float, stored: str | None, first_poll: bool,
             deadline: float) -> AsyncOutcome:
    """The stored outcome of a bulk, or a poll of its async action until final: until
    the delivery's deadline (then the next delivery polls on), at most
    ACTION_PATIENCE_S after the bulk was sent (then it is a failure to retry)."""
    if stored:
        return AsyncOutcome(**json.loads(stored))
    timeout = min(deadline - time.monotonic(), sent_at + ACTION_PATIENCE_S - time.time())
    try:
        outcome = client.wait_for(action_id, timeout=max(0.5, timeout),
                                  first=FIRST_POLL if first_poll else 0.0,
                                  patience=lambda call: retry.in_place(call, deadline=deadline))
    except AsyncActionTimeout:
        if time.time() - sent_at < ACTION_PATIENCE_S:
            raise retry.Continue() from None  # still within patience: poll on later
        raise
    state.save_action(run_id, slice_no, f"{pos}:outcome", state.dumps(outcome.__dict__))
    state.add_live(run_id, customers_confirmed=outcome.done_count + outcome.failed_count)
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
