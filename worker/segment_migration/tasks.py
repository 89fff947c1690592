"""Segment -> Voucherify migration tasks (segment.*).

    segment.migrate(run_id=None, slice_size=None)  -> run id, at once; sends segment.plan
    segment.plan(run_id)       walks the profile id list (one call per 100 ids), stores each
                               slice's ids, and starts a chord per batch of
                               SEGMENT_SLICES_PER_CHORD slices as the walk proceeds
    segment.migrate_slice(run_id, slice_no, segment_ids)  -> a small record, never raises
                               for an expected failure (only to retry)
    segment.summarize(results, run_id, slices)  the body of every chord: the body that finds
                               every slice of the run finished writes the summary (SET NX)
    segment.status(run_id)     progress for people and scripts

Why several chords and a run-wide completeness check: a chord can only be started with
its whole header, and a big space should not wait for its whole walk (or hold all its
ids in one message). Every chord body checks the run's state in Redis, not its own
results, so the last body to run, whichever chord it belongs to, writes the summary.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from celery import chord
from celery.exceptions import MaxRetriesExceededError, Retry, SoftTimeLimitExceeded
from ulid import ULID

from worker import store
from worker.app import app
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import AsyncOutcome, VoucherifyClient
from worker.http import ApiError, AuthError, ClientError, RateLimited, TransientError
from worker.ratelimit import NoBudget
from worker.segment_migration import mapping, state
from worker.segment_migration.summary import build_summary, log_summary
from worker.settings import get_settings
from worker.tasking import FleetTask

log = logging.getLogger(__name__)

T = TypeVar("T")

# In-place retries inside a slice: a slice holds work already done (fetched profiles,
# sent bulks), so a short wait in place beats redoing it from a retry.
IN_PLACE_ATTEMPTS = 4
IN_PLACE_MAX_WAIT = 5.0  # longer waits go back to the queue (FleetTask retry)
BUDGET_WAIT_MAX = 60.0  # total seconds one call may wait for the shared budget in place
SUMMARY_POLL = 5.0  # seconds between a chord body's re-checks of a run still in flight
SUMMARY_MAX_POLLS = 720


def new_run_id() -> str:
    return str(ULID()).lower()


# --- segment.migrate / segment.plan ------------------------------------------------------

@app.task(name="segment.migrate", base=FleetTask, bind=True)
def migrate(self: FleetTask, run_id: str | None = None, slice_size: int | None = None) -> str:
    """Start a run (or resume `run_id`): returns the run id at once; segment.plan walks."""
    settings = get_settings()
    settings.require("SEGMENT_ACCESS_TOKEN", "SEGMENT_SPACE_ID")
    if not settings.dry_run:
        settings.require("VOUCHERIFY_APPLICATION_ID", "VOUCHERIFY_SECRET_KEY")
    run_id = run_id or new_run_id()
    size = int(slice_size or settings.segment_slice_size)
    if state.create_run(run_id, size, settings.dry_run):
        log.info("segment.migrate run=%s started slice_size=%d dry_run=%s", run_id, size,
                 settings.dry_run)
    else:
        redo = state.begin_resume(run_id)
        log.info("segment.migrate run=%s resumed: %d slice(s) to redo", run_id, len(redo))
    plan.apply_async((run_id,))
    return run_id


class ReturningTask(FleetTask):
    """FleetTask whose exhausted retries end in `give_up(...)`'s return value, not an
    exception: a failed chord header task would keep the chord from its body, and a
    failed plan would leave a run without a summary."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Retry:
            raise
        except (TransientError, RateLimited, NoBudget, MaxRetriesExceededError) as exc:
            log.error("task=%s gave up after %d retries: %s", self.name,
                      self.request.retries, exc)
            return self.give_up(exc, *args, **kwargs)

    def give_up(self, exc: Exception, *args: Any, **kwargs: Any) -> Any:
        raise exc


class PlanTask(ReturningTask):
    def give_up(self, exc: Exception, run_id: str, *args: Any, **kwargs: Any) -> Any:
        state.stop(run_id, f"segment.plan gave up after {self.request.retries} retries: {exc}")
        return _plan_end(run_id, (state.get_run(run_id) or {}).get("launched", 0))


@app.task(name="segment.plan", base=PlanTask, bind=True)
def plan(self: PlanTask, run_id: str) -> dict[str, Any]:
    """Walk the id list from the run's checkpoint and start chords as slices fill up.

    A redelivered or retried plan continues from the checkpoint (cursor + ids not yet in
    a slice), so a walk interrupted by a crash or a 429 loses at most one page."""
    settings = get_settings()
    timeout = settings.task_time_limit
    try:
        with store.lock(f"seg:plan:{run_id}", timeout=timeout) as held:
            return _plan(run_id, settings, held)
    except store.LockHeld:
        log.info("segment.plan run=%s: another plan is walking; nothing to do", run_id)
        return {"run_id": run_id, "duplicate": True}


def _plan(run_id: str, settings, held) -> dict[str, Any]:
    run = state.get_run(run_id)
    if run is None:
        raise ValueError(f"unknown run {run_id}")
    if run.get("status") == "stopped":  # a redelivered plan of a stopped run
        return _plan_end(run_id, run["launched"])
    if run.get("status") == "planning":
        state.update_run(run_id, status="running")
    launched = run["launched"]
    per_chord = settings.segment_slices_per_chord
    slices, buffer, cursor = run["slices"], run["buffer"], run["cursor"] or None
    # First the slices already planned but not started in this attempt (resume, redelivery).
    launched = _launch_ready(run_id, launched, slices, per_chord, final=run["walk_done"])
    if run["walk_done"]:
        return _plan_end(run_id, launched)
    client = SegmentClient(settings)
    voucherify = None if run["dry_run"] else VoucherifyClient(settings)
    try:
        if voucherify is not None:  # one cheap call: a wrong key stops the run before any work
            with_patience(voucherify.check_credentials)
        for ids, following in client.walk_profile_ids(cursor or "0", with_patience):
            buffer.extend(ids)
            while len(buffer) >= run["slice_size"] or (following is None and buffer):
                state.store_slice_ids(run_id, slices, buffer[:run["slice_size"]])
                buffer, slices = buffer[run["slice_size"]:], slices + 1
            # The walk's end is recorded BEFORE the last chord starts: its body must see it.
            state.save_walk(run_id, following, slices, buffer, walk_done=following is None)
            launched = _launch_ready(run_id, launched, slices, per_chord,
                                     final=following is None)
            held.extend(settings.task_time_limit, replace_ttl=True)
            if state.stopped(run_id):  # a slice met a 401: start nothing more
                break
    except (TransientError, RateLimited, NoBudget):
        raise  # FleetTask retries; the walk continues from its checkpoint
    except ApiError as exc:  # 401, a 404 for the space, a broken cursor: stop, say why
        state.stop(run_id, str(exc))
        log.error("segment.plan run=%s stopped: %s", run_id, exc)
    finally:
        state.add_calls(run_id, segment=client.calls,
                        voucherify=voucherify.calls if voucherify else 0)
    return _plan_end(run_id, launched)


def _plan_end(run_id: str, launched: int) -> dict[str, Any]:
    # Nothing launched (an empty space, a 401 at once) or everything already finished:
    # no chord body will come, so ask for the summary here (it is idempotent).
    summarize.apply_async(([], run_id, []))
    return {"run_id": run_id, "launched": launched}


def _launch_ready(run_id: str, launched: int, slices: int, per_chord: int,
                  final: bool) -> int:
    """Start chords for planned slices [launched, slices): full batches while walking,
    the rest at the end. Slices already done are not started again. The first batches
    ramp up (2, 2, 4, 8, ... slices) so work starts while the walk is young."""
    while True:
        batch = min(per_chord, max(2, launched))
        if not (slices - launched >= batch or (final and slices > launched)):
            return launched
        upto = min(slices, launched + batch)
        done = state.done_slices(run_id)
        todo = [n for n in range(launched, upto) if n not in done]
        if todo:
            header = [migrate_slice.s(run_id, n, state.slice_ids(run_id, n)) for n in todo]
            chord(header)(summarize.s(run_id, todo))
        log.info("segment.plan run=%s chord for slices %d..%d: %d to do", run_id,
                 launched, upto - 1, len(todo))
        launched = upto
        state.update_run(run_id, launched=launched)


# --- segment.migrate_slice -----------------------------------------------------------------

class SliceTask(ReturningTask):
    def give_up(self, exc: Exception, *args: Any, **kwargs: Any) -> dict[str, Any]:
        run_id, slice_no, segment_ids = _slice_args(args, kwargs)
        record = failure_record(slice_no, segment_ids, f"gave up after retries: {exc}")
        state.finish_slice(run_id, record)
        state.clear_actions(run_id, slice_no)
        return record


def _slice_args(args: tuple, kwargs: dict) -> tuple[str, int, list[str]]:
    names = ("run_id", "slice_no", "segment_ids")
    values = dict(zip(names, args, strict=False)) | kwargs
    return values["run_id"], int(values["slice_no"]), list(values.get("segment_ids") or [])


@app.task(name="segment.migrate_slice", base=SliceTask, bind=True, max_retries=8)
def migrate_slice(self: SliceTask, run_id: str, slice_no: int,
                  segment_ids: list[str]) -> dict[str, Any]:
    """Fetch, map and upsert one slice; return its record (stored before it returns)."""
    stored = state.slice_outcome(run_id, slice_no)
    if stored is not None:  # redelivered, or a duplicate after a resume: nothing to redo
        return stored
    if not segment_ids:
        segment_ids = state.slice_ids(run_id, slice_no)
    reason = state.stopped(run_id)
    if reason is not None:
        record = failure_record(slice_no, segment_ids, f"run stopped: {reason}")
        state.finish_slice(run_id, record)
        return record
    settings = get_settings()
    try:
        with store.lock(f"seg:slice:{run_id}:{slice_no}", timeout=settings.task_time_limit):
            return _migrate_slice(run_id, slice_no, segment_ids)
    except store.LockHeld:
        # The same slice is running elsewhere (a duplicate message); that one records it.
        return {"slice": slice_no, "ok": True, "duplicate": True}


def failure_record(slice_no: int, segment_ids: list[str], reason: str) -> dict[str, Any]:
    """Every profile of a slice that could not complete, failed with the same reason."""
    return {"slice": slice_no, "ok": False, "error": reason, "profiles": len(segment_ids),
            "sent": 0, "upserted": 0, "skipped": [], "warnings": [],
            "failed": [{"segment_id": sid, "reason": reason} for sid in segment_ids]}


def _migrate_slice(run_id: str, slice_no: int, segment_ids: list[str]) -> dict[str, Any]:
    settings = get_settings()
    run = state.get_run(run_id) or {}
    dry_run = bool(run.get("dry_run", settings.dry_run))
    segment = voucherify = None
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
        # A wrong credential will stay wrong: stop the whole run, name the variable.
        state.stop(run_id, str(exc))
        log.error("segment.migrate_slice run=%s slice=%d stopped the run: %s",
                  run_id, slice_no, exc)
        record = failure_record(slice_no, segment_ids, f"run stopped: {exc}")
    except (TransientError, RateLimited, NoBudget):
        raise  # FleetTask retries; the checkpoints keep what was done
    except SoftTimeLimitExceeded:
        record = failure_record(slice_no, segment_ids, "slice exceeded TASK_SOFT_TIME_LIMIT")
    except Exception as exc:  # a 4xx for the slice, a broken cursor, a bug: report it
        log.exception("segment.migrate_slice run=%s slice=%d failed", run_id, slice_no)
        record = failure_record(slice_no, segment_ids, f"{type(exc).__name__}: {exc}")
    finally:
        state.add_calls(run_id, segment=segment.calls if segment else 0,
                        voucherify=voucherify.calls if voucherify else 0)
    state.finish_slice(run_id, record)
    state.clear_actions(run_id, slice_no)
    log.info("segment.migrate_slice run=%s slice=%d ok=%s profiles=%d sent=%d upserted=%d "
             "skipped=%d failed=%d warnings=%d", run_id, slice_no, record["ok"],
             record["profiles"], record["sent"], record["upserted"], len(record["skipped"]),
             len(record["failed"]), len(record["warnings"]))
    return record


def with_patience(call: Callable[[], T], stop: threading.Event | None = None) -> T:
    """Run one API call, absorbing short waits in place: the shared budget (NoBudget), a
    429's Retry-After up to IN_PLACE_MAX_WAIT, a few 5xx with a short backoff. Longer
    waits raise, and FleetTask reschedules the slice (its checkpoints keep the work)."""
    failures, waited = 0, 0.0
    while True:
        if stop is not None and stop.is_set():
            raise _Stopped()
        try:
            return call()
        except NoBudget as exc:
            if waited + exc.retry_after > BUDGET_WAIT_MAX:
                raise
            pause = exc.retry_after
        except RateLimited as exc:
            failures += 1
            if failures >= IN_PLACE_ATTEMPTS or exc.retry_after > IN_PLACE_MAX_WAIT:
                raise
            pause = exc.retry_after + random.uniform(0.05, 0.25)
        except TransientError:
            failures += 1
            if failures >= IN_PLACE_ATTEMPTS:
                raise
            pause = random.uniform(0.2, 0.5) * 2 ** failures
        waited += pause
        time.sleep(pause)


class _Stopped(Exception):
    """Another thread of the slice failed for good: stop fetching."""


def fetch_and_map(client: SegmentClient, segment_ids: list[str], settings,
                  stop: threading.Event | None = None) -> dict[str, Any]:
    """Fetch every profile of the slice (a few at once) and map it. A 401, an exhausted
    retry or the soft time limit sets `stop`: the other fetches end at their next call."""
    stop = stop or threading.Event()

    def one(segment_id: str) -> tuple[str, Any, Any]:
        try:
            traits = with_patience(lambda: client.traits(segment_id), stop)
            ids = with_patience(lambda: client.external_ids(segment_id), stop)
            return segment_id, traits, ids
        except ClientError as exc:  # e.g. 404: the profile went away after the walk
            return segment_id, exc, None
        except BaseException:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
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
    real = [e for e in errors if not isinstance(e, _Stopped)]
    if real:  # AuthError first: it stops the run, whatever else happened
        raise next((e for e in real if isinstance(e, AuthError)), real[0])
    return map_profiles(fetched, settings)


def map_profiles(fetched: list[tuple[str, Any, Any]], settings) -> dict[str, Any]:
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
           customers: list[dict[str, Any]], bulk_size: int, record: dict[str, Any]) -> None:
    """Send the slice's customers in bulks, then read every async action's outcome.

    Each bulk's action id is stored (by its position in the slice) the moment Voucherify
    accepts it, and each outcome once it is final: a slice redone after a crash or a
    retry polls what it sent and never sends a bulk twice. A 413 halves the bulk."""
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
            action_id = with_patience(lambda p=payload: client.bulk_upsert(p))
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
        outcome = _outcome(client, run_id, slice_no, pos, action_id, known.get(f"{pos}:outcome"),
                           first_poll=n == 0)
        _apply_outcome(record, customers[pos:pos + length], outcome)


def _outcome(client: VoucherifyClient, run_id: str, slice_no: int, pos: int,
             action_id: str, stored: str | None, first_poll: bool) -> AsyncOutcome:
    """The stored outcome of a bulk (read with the slice's other checkpoints), or a
    poll of its async action until final, stored then."""
    if stored:
        return AsyncOutcome(**json.loads(stored))
    outcome = client.wait_for(action_id, first=0.3 if first_poll else 0.0,
                              patience=with_patience)
    state.save_action(run_id, slice_no, f"{pos}:outcome", state.dumps(outcome.__dict__))
    return outcome


def _chunk_failed(record: dict[str, Any], chunk: list[dict[str, Any]], reason: str) -> None:
    record["ok"] = False
    record["error"] = record.get("error") or reason
    record["failed"].extend({"segment_id": c["segment_id"],
                             "source_id": c["customer"]["source_id"], "reason": reason}
                            for c in chunk)


def _apply_outcome(record: dict[str, Any], chunk: list[dict[str, Any]],
                   outcome: AsyncOutcome) -> None:
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


# --- segment.summarize / segment.status --------------------------------------------------

@app.task(name="segment.summarize", base=FleetTask, bind=True, max_retries=SUMMARY_MAX_POLLS)
def summarize(self: FleetTask, results: list[Any], run_id: str,
              slices: list[int] | None = None) -> dict[str, Any]:
    """Write the run's summary if every slice is finished; else leave it to the chord
    body that will be last (or, if this chord's own slices are not all recorded yet,
    look again shortly)."""
    existing = state.get_summary(run_id)
    if existing is not None:
        return existing
    run = state.get_run(run_id)
    if run is None:
        raise ValueError(f"unknown run {run_id}")
    finished = state.finished_slices(run_id)
    if not state.is_complete(run, finished):
        if any(n not in finished for n in slices or []):
            # Capped like every retry (MAX_RETRY_COUNTDOWN stays under the visibility timeout).
            raise self.retry(countdown=min(SUMMARY_POLL, get_settings().max_retry_countdown))
        return {"run_id": run_id, "complete": False}
    summary = build_summary(run, state.all_results(run_id), state.calls(run_id))
    if state.save_summary(run_id, summary):
        log_summary(summary)
        return summary
    return state.get_summary(run_id) or summary


@app.task(name="segment.status", bind=True)
def status(self, run_id: str) -> dict[str, Any] | None:
    """Slices finished of total, the counts so far, and the summary once it exists."""
    progress = state.progress(run_id)
    if progress is not None and progress["summary_ready"]:
        progress["summary"] = state.get_summary(run_id)
    return progress
