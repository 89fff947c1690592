"""Segment -> Voucherify migration tasks (segment.*): thin Celery wrappers around the
plain modules `walk.py` (the profile id list), `slice.py` (fetch, map, upsert) and
`summary.py`.

    segment.migrate(run_id=None, slice_size=None)  -> run id, at once; sends segment.plan
    segment.plan(run_id)       walks the profile id list (as far as one delivery's time goes,
                               then on in the next) and starts a chord per batch of
                               SEGMENT_SLICES_PER_CHORD slices as the walk proceeds
    segment.migrate_slice(run_id, slice_no, segment_ids)  -> a small record; returns one
                               for every expected failure (raises only to retry)
    segment.summarize(results, run_id, slices)  the body of every chord: the body that finds
                               every slice of the run finished writes the summary, once
    segment.status(run_id)     progress for people and scripts

Why several chords and a run-wide completeness check: a chord can only be started with
its whole header, and a big space should not wait for its whole walk (or hold all its
ids in one message). Every chord body checks the run's state in Redis, not its own
results, so the last body to run, whichever chord it belongs to, writes the summary.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chord
from celery.exceptions import SoftTimeLimitExceeded
from ulid import ULID

from worker import retry, store
from worker.app import app
from worker.segment_migration import slice as slice_work
from worker.segment_migration import state, walk
from worker.segment_migration.summary import build_summary, log_summary
from worker.settings import get_settings
from worker.tasking import FleetTask

log = logging.getLogger(__name__)

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
    space = str(settings.segment_space_id)
    project = str(settings.voucherify_application_id or "dry-run")
    if state.create_run(run_id, size, settings.dry_run, space, project):
        log.info("segment.migrate run=%s started slice_size=%d dry_run=%s", run_id, size,
                 settings.dry_run)
    else:
        run = state.get_run(run_id) or {}
        if (run.get("space"), run.get("project")) != (space, project):
            # Its slices and checkpoints belong to another space or project.
            raise ValueError(
                f"run {run_id} migrates Segment space {run.get('space')} into Voucherify "
                f"project {run.get('project')}; the fleet is configured for space {space}, "
                f"project {project}: start a new run instead of resuming this one")
        redo = state.begin_resume(run_id)
        log.info("segment.migrate run=%s resumed: %d slice(s) to redo", run_id, len(redo))
    plan.apply_async((run_id,))
    return run_id


class PlanTask(FleetTask):
    def give_up(self, exc: Exception, run_id: str, *args: Any, **kwargs: Any) -> Any:
        # A walk that cannot go on still ends the run: halted, with a summary.
        state.halt(run_id, f"segment.plan gave up after {self.request.retries} retries: {exc}")
        return _plan_end(run_id)


@app.task(name="segment.plan", base=PlanTask, bind=True)
def plan(self: PlanTask, run_id: str) -> dict[str, Any]:
    """Walk the id list from the run's checkpoint and start chords as slices fill up.
    A redelivered or retried plan continues from the checkpoint."""
    settings = get_settings()
    try:
        with store.lock(f"segment:plan:{run_id}", settings.task_time_limit, renew=True):
            run = state.get_run(run_id)
            if run is None:
                raise ValueError(f"unknown run {run_id}")
            if not state.halted(run_id):
                # First the slices planned but not started in this attempt (a resume, a
                # redelivery), then the rest of the walk, as far as this delivery's time
                # goes (then it goes on in the next one, from the checkpoint).
                _launch_ready(run_id, final=run["walk_done"])
                if not run["walk_done"] and not walk.walk(
                        run_id, run, settings, lambda final: _launch_ready(run_id, final),
                        self.deadline()):
                    raise retry.Continue()
    except store.LockHeld:
        log.info("segment.plan run=%s: another plan is walking; nothing to do", run_id)
        return {"run_id": run_id, "duplicate": True}
    return _plan_end(run_id)


def _plan_end(run_id: str) -> dict[str, Any]:
    # Nothing launched (an empty space, a 401 at once) or everything already finished:
    # no chord body will come, so ask for the summary here (it is idempotent).
    summarize.apply_async(([], run_id, []))
    return {"run_id": run_id, "launched": (state.get_run(run_id) or {}).get("launched", 0)}


def _launch_ready(run_id: str, final: bool) -> None:
    """Start chords for the planned slices not started yet: full batches while walking,
    the rest at the end. Slices already done are not started again. The first batches
    ramp up (2, 2, 4, 8, ... slices) so work starts while the walk is young."""
    run = state.get_run(run_id) or {}
    launched, slices = run.get("launched", 0), run.get("slices", 0)
    per_chord = get_settings().segment_slices_per_chord
    while True:
        batch = min(per_chord, max(2, launched))
        if not (slices - launched >= batch or (final and slices > launched)):
            return
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

class SliceTask(FleetTask):
    def give_up(self, exc: Exception, run_id: str, slice_no: int,
                segment_ids: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        # A chord header must report back: its record says why the slice gave up.
        ids = list(segment_ids or state.slice_ids(run_id, slice_no))
        record = slice_work.failure_record(int(slice_no), ids,
                                           f"gave up after retries: {exc}")
        state.finish_slice(run_id, record)
        return record


@app.task(name="segment.migrate_slice", base=SliceTask, bind=True, max_retries=8)
def migrate_slice(self: SliceTask, run_id: str, slice_no: int,
                  segment_ids: list[str]) -> dict[str, Any]:
    """Fetch, map and upsert one slice; return its record (stored before it returns)."""
    stored = state.slice_outcome(run_id, slice_no)
    if stored is not None:  # redelivered, or a duplicate after a resume: nothing to redo
        return stored
    segment_ids = segment_ids or state.slice_ids(run_id, slice_no)
    settings = get_settings()
    try:
        with store.lock(f"segment:slice:{run_id}:{slice_no}", settings.task_time_limit):
            record = _slice_record(run_id, slice_no, segment_ids, self.deadline())
    except store.LockHeld:
        # The same slice is running elsewhere (a duplicate message); that one records it.
        return {"slice": slice_no, "ok": True, "duplicate": True}
    state.finish_slice(run_id, record)
    log.info("segment.migrate_slice run=%s slice=%d ok=%s profiles=%d sent=%d upserted=%d "
             "skipped=%d failed=%d warnings=%d", run_id, slice_no, record["ok"],
             record["profiles"], record["sent"], record["upserted"], len(record["skipped"]),
             len(record["failed"]), len(record["warnings"]))
    return record


def _slice_record(run_id: str, slice_no: int, segment_ids: list[str],
                  deadline: float) -> dict[str, Any]:
    """The slice's record, whatever happens but a retry or a continuation (which raise:
    FleetTask reschedules the slice, its checkpoints keeping what was done)."""
    reason = state.halted(run_id)
    if reason is not None:
        return slice_work.failure_record(slice_no, segment_ids, f"run halted: {reason}")
    try:
        return slice_work.migrate(run_id, slice_no, segment_ids, get_settings(), deadline)
    except (*retry.RETRYABLE, retry.Continue, SoftTimeLimitExceeded):
        raise
    except Exception as exc:  # a 4xx for the slice, a broken cursor, a bug: report it
        log.exception("segment.migrate_slice run=%s slice=%d failed", run_id, slice_no)
        return slice_work.failure_record(slice_no, segment_ids,
                                         f"{type(exc).__name__}: {exc}")


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


@app.task(name="segment.status")
def status(run_id: str) -> dict[str, Any] | None:
    """Slices finished of total, the counts so far, and the summary once it exists."""
    progress = state.progress(run_id)
    if progress is not None and progress["summary_ready"]:
        progress["summary"] = state.get_summary(run_id)
    return progress
