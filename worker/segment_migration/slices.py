"""One slice of a migration as plain functions: fetch, map, upsert (no Celery here).

`migrate` fetches the slice's profiles from Segment a few at once, maps them
(`mapping.py`) into a `Batch`, sends the customers to Voucherify in bulks and reads every
bulk's async action until it is final; its `SliceRecord` says what happened to every
profile. Work survives a retry, a redelivery or a redo after a lost message through
checkpoints in Redis (`state.py`): the mapped customers are kept once fetched, each
bulk's async action id the moment Voucherify accepts it, and each outcome once final. A
redone slice polls what it sent and never sends a bulk twice.

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
from dataclasses import dataclass, field
from typing import Any

from worker import retry, runs
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import AsyncActionTimeout, AsyncOutcome, VoucherifyClient
from worker.formats import Record, dumps
from worker.http import ApiError, AuthError, ClientError
from worker.segment_migration import mapping, state
from worker.segment_migration.state import SEGMENT
from worker.settings import Settings

log = logging.getLogger(__name__)

FIRST_POLL = 0.3  # seconds before the first poll of the last bulk's async action
# How long an async action may stay pending (across deliveries) before the slice counts it
# as a failure to retry: Voucherify queues can be slow, not endless.
ACTION_PATIENCE_S = 900
NO_DEADLINE = float("inf")
_LATER = object()  # a profile not fetched before the deadline: the next delivery does it


@dataclass
class Batch:
    """A slice's profiles fetched and mapped so far: its `mapped:{n}` checkpoint."""

    customers: list[Record] = field(default_factory=list)  # {segment_id, customer}
    skipped: list[Record] = field(default_factory=list)  # {segment_id, reason}
    failed: list[Record] = field(default_factory=list)  # {segment_id, reason}: gone (404)
    warnings: list[Record] = field(default_factory=list)  # values dropped
    seen: list[str] = field(default_factory=list)  # segment ids fetched
    complete: bool = False

    @property
    def handled(self) -> int:
        """Profiles done without a send: skipped, or gone from Segment."""
        return len(self.skipped) + len(self.failed)


@dataclass
class SliceRecord:
    """What happened to every profile of a slice: stored, returned, summed up."""

    slice: int
    profiles: int
    ok: bool = True
    error: str | None = None
    sent: int = 0
    upserted: int = 0
    skipped: list[Record] = field(default_factory=list)
    failed: list[Record] = field(default_factory=list)  # {segment_id, source_id?, reason}
    warnings: list[Record] = field(default_factory=list)
    unconfirmed: int = 0  # sent, neither done nor reported failed
    would_send: int | None = None  # a dry run's
    # The source_id sent for each of the slice's profiles, in the order of its ids ("":
    # none sent): `syncfleet migrate explain` finds a customer by it (len + 3 bytes each).
    sources: list[str] = field(default_factory=list)

    def as_dict(self) -> Record:
        record = dict(vars(self))  # not dataclasses.asdict: no deep copy of the lists
        if self.would_send is None:
            del record["would_send"]
        return record

    def fail(self, reason: str, failed: list[Record]) -> None:
        self.ok, self.error = False, self.error or reason
        self.failed.extend(failed)


def failure_record(slice_no: int, segment_ids: list[str], reason: str) -> Record:
    """Every profile of a slice that could not complete, failed with the same reason."""
    return SliceRecord(slice_no, len(segment_ids), ok=False, error=reason, failed=[
        {"segment_id": sid, "reason": reason} for sid in segment_ids]).as_dict()


def stopped_record(slice_no: int, segment_ids: list[str], stopped: str) -> Record:
    """A slice of a stopped run, not started: a halt fails its profiles (they name
    the reason); a cancel leaves them to a resume, unseen."""
    if stopped == runs.CANCELLED:
        return SliceRecord(slice_no, 0, ok=False, error="run cancelled before it started"
                           ).as_dict()
    return failure_record(slice_no, segment_ids, f"run halted: {stopped}")


def migrate(run_id: str, slice_no: int, settings: Settings,
            deadline: float = NO_DEADLINE) -> Record:
    """Fetch, map and upsert one slice (its ids from the walk); returns its record. A
    401 halts the whole run (the record says so); retryable failures raise (the task
    retries); work left at `deadline` (monotonic) is checkpointed, `retry.Continue`
    raised."""
    segment_ids = state.slice_ids(run_id, slice_no)
    stored = state.get_mapped(run_id, slice_no)
    stopped = SEGMENT.stopped(run_id)
    # Halted: nothing can be sent. Cancelled: a slice that has begun (its checkpoint
    # exists) goes on to its end; one that has not does nothing.
    if stopped and (stopped != runs.CANCELLED or stored is None):
        return stopped_record(slice_no, segment_ids, stopped)
    run = state.get_run(run_id) or {}
    segment: SegmentClient | None = None
    voucherify: VoucherifyClient | None = None
    try:
        batch = Batch(**stored) if stored else Batch()
        if not batch.complete:
            segment = SegmentClient(settings, pool_size=settings.segment_fetch_concurrency)
            handled = batch.handled
            batch = fetch_and_map(segment, segment_ids, settings, deadline=deadline,
                                  before=batch,
                                  on_fetched=lambda: state.add_live(run_id, profiles_fetched=1))
            state.save_mapped(run_id, slice_no, vars(batch), handled=batch.handled - handled)
            if not batch.complete:
                raise retry.Continue()
        record = SliceRecord(slice_no, len(segment_ids), skipped=batch.skipped,
                             failed=list(batch.failed), warnings=batch.warnings,
                             sources=sources(segment_ids, batch.customers))
        if run.get("dry_run", settings.dry_run):
            record.would_send = len(batch.customers)
        elif batch.customers:
            voucherify = VoucherifyClient(settings)
            upsert(voucherify, run_id, slice_no, batch.customers,
                   settings.voucherify_bulk_size, record, deadline)
    except AuthError as exc:
        # A wrong credential will stay wrong: halt the whole run, name the variable.
        SEGMENT.halt(run_id, str(exc))
        log.error("segment slice run=%s slice=%d halted the run: %s", run_id, slice_no, exc)
        return failure_record(slice_no, segment_ids, f"run halted: {exc}")
    finally:
        state.add_calls(run_id, segment=segment.calls if segment else 0,
                        voucherify=voucherify.calls if voucherify else 0)
    return record.as_dict()


def sources(segment_ids: list[str], customers: list[Record]) -> list[str]:
    by_segment = {c["segment_id"]: str(c["customer"]["source_id"]) for c in customers}
    return [by_segment.get(sid, "") for sid in segment_ids]


def report(run_id: str, record: Record) -> None:
    """The slice has an outcome: stored and reported (progress, and the recovery of lost
    messages, see it at once). The run is ended by its chord's body, not here."""
    state.finish_slice(run_id, record)
    log.info("segment.migrate_slice run=%s slice=%d ok=%s profiles=%d sent=%d upserted=%d "
             "skipped=%d failed=%d warnings=%d", run_id, record["slice"], record["ok"],
             record["profiles"], record["sent"], record["upserted"], len(record["skipped"]),
             len(record["failed"]), len(record["warnings"]))


def outcome(record: Record, task_id: str | None) -> Record:
    """What a slice task returns, its chord header's result: its numbers, not its lists
    (the whole record is stored; the chord's body gets every header's result in one
    message). `task_id`: the body forgets the header's stored result by it."""
    small = {name: record.get(name) for name in ("slice", "ok", "error", "duplicate")
             if record.get(name) is not None}
    for name in state.COUNT_FIELDS:
        value = record.get(name)
        small[name] = len(value) if isinstance(value, list) else int(value or 0)
    return {**small, "task_id": task_id}


def fetch_and_map(client: SegmentClient, segment_ids: list[str], settings: Settings,
                  stop: threading.Event | None = None, deadline: float = NO_DEADLINE,
                  before: Batch | None = None,
                  on_fetched: Callable[[], None] | None = None) -> Batch:
    """Fetch the slice's profiles (a few at once) and map them, adding to `before` (the
    checkpoint of an earlier delivery: its profiles are not fetched again). Profiles not
    started by `deadline` are left for the next delivery (`complete` is then false). A
    401, an exhausted retry or the soft time limit sets `stop`: the other fetches end at
    their next call."""
    stop = stop or threading.Event()
    batch = before or Batch()
    seen = set(batch.seen)
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
    batch.seen = sorted(seen | {sid for sid, _, _ in done})
    batch.complete = len(batch.seen) >= len(set(segment_ids))
    return batch


def map_profiles(fetched: list[tuple[str, Any, Any]], settings: Settings,
                 batch: Batch | None = None) -> Batch:
    """Map fetched profiles into `batch` (customers, skipped, failed, warnings)."""
    batch = batch if batch is not None else Batch()
    for segment_id, traits, ids in fetched:
        if isinstance(traits, ApiError):
            batch.failed.append({"segment_id": segment_id,
                                 "reason": f"segment: {traits.status} {traits.body}"})
            continue
        out = mapping.customer(segment_id, traits, ids, settings.segment_source_id_type,
                               settings.segment_extra_traits_to_metadata)
        batch.warnings.extend(out.warnings)
        if out.customer is None:
            batch.skipped.append({"segment_id": segment_id, "reason": out.skipped})
        else:
            batch.customers.append({"segment_id": segment_id, "customer": out.customer})
    return batch


def upsert(client: VoucherifyClient, run_id: str, slice_no: int,
           customers: list[Record], bulk_size: int, record: SliceRecord,
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
            reason = f"voucherify rejected the bulk: {exc}"
            record.fail(reason, _customers(chunk, reason))
            pos += len(chunk)
            continue
        now = time.time()
        state.save_action(run_id, slice_no, str(pos), f"{len(chunk)}:{now:.0f}:{action_id}")
        sent.append((pos, len(chunk), now, action_id))
        pos += len(chunk)
    record.sent = sum(length for _, length, _, _ in sent)
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
    state.save_action(run_id, slice_no, f"{pos}:outcome", dumps(outcome.__dict__),
                      confirmed=outcome.done_count + outcome.failed_count)
    return outcome


def _customers(chunk: list[Record], reason: str) -> list[Record]:
    return [{"segment_id": c["segment_id"], "source_id": c["customer"]["source_id"],
             "reason": reason} for c in chunk]


def _apply_outcome(record: SliceRecord, chunk: list[Record], outcome: AsyncOutcome) -> None:
    if outcome.status != "DONE":
        reason = f"async action {outcome.id} {outcome.status}: {outcome.message or 'no message'}"
        record.fail(reason, _customers(chunk, reason))
        return
    record.upserted += outcome.done_count
    by_source = {c["customer"]["source_id"]: c["segment_id"] for c in chunk}
    for error in outcome.errors:
        source_id = str(error.get("source_id") or "")  # the vendor's error item names it
        reason = ": ".join(str(error[k]) for k in ("key", "message", "details", "reason")
                           if error.get(k))
        record.failed.append({"segment_id": by_source.get(source_id, ""),
                              "source_id": source_id, "reason": reason or "failed"})
    record.unconfirmed += max(0, len(chunk) - outcome.done_count - len(outcome.errors))
