"""Segment -> Voucherify migration tasks (segment.*): thin Celery wrappers around the
plain modules `start.py`, `walk.py` (the profile id list) and `slices.py` (fetch, map,
upsert); the run engine `worker.runs` through `state.SEGMENT`.

    segment.migrate(run_id=None, slice_size=None)  -> run id, at once; sends segment.plan
    segment.plan(run_id)       walks the profile id list (as far as one delivery's time goes,
                               then on in the next), handing the slices it plans over as
                               a chord as soon as they are planned
    segment.migrate_slice(run_id, slice_no)  a chord header: stores and reports its
                               record (progress, lost-message recovery), returns its
                               numbers; returns for every expected failure (raises only
                               to retry)
    segment.summarize(results, run_id)  every chord's body: forgets its headers' results;
                               the body that finds the run complete (walk ended, every
                               slice reported) writes the summary, once (SET NX)
    segment.status(run_id)     progress for people and scripts

Several chords, not one: a chord is sent with its whole header, and a big space should
not wait for its whole walk. So each body asks the engine about the run, not about its
own chord: whichever body runs last after the walk ended writes the summary. A walk that
ends after every slice has reported (no body still to come) sends segment.summarize
itself. A slice message lost keeps its chord's body from ever running: the recovery
(`worker/recovery.py`) sends the lost slices again as a new chord with its own body, and
ends a complete run whose body was lost (`written_by: recovery`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chord
from celery.exceptions import SoftTimeLimitExceeded

from worker import retry, store
from worker.app import app
from worker.formats import Record
from worker.segment_migration import slices, start, state, walk
from worker.segment_migration.state import SEGMENT
from worker.settings import get_settings
from worker.tasking import FleetTask, forget_results

log = logging.getLogger(__name__)


@app.task(name="segment.migrate", base=FleetTask, bind=True, ignore_result=False)
def migrate(self: FleetTask, run_id: str | None = None, slice_size: int | None = None) -> str:
    """Start a run (or resume `run_id`): returns the run id at once; segment.plan walks."""
    run_id = run_id or start.new_run_id()
    start.start_or_resume(run_id, slice_size, get_settings())
    plan.apply_async((run_id,))
    return run_id


class PlanTask(FleetTask):
    def give_up(self, exc: Exception, run_id: str, *args: Any, **kwargs: Any) -> Any:
        # A walk that cannot go on still ends the run: halted, with a summary.
        SEGMENT.halt(run_id, f"segment.plan gave up after {self.request.retries} retries: {exc}")
        return _end(run_id)


@app.task(name="segment.plan", base=PlanTask, bind=True)
def plan(self: PlanTask, run_id: str) -> dict[str, Any]:
    """Walk the id list from the run's checkpoint, handing slices over as it goes. A
    redelivered or retried plan continues from the checkpoint."""
    settings = get_settings()
    try:
        with store.lock(f"segment:plan:{run_id}", settings.task_time_limit, renew=True):
            if not walk.walk(run_id, settings, _launch, self.deadline()):
                raise retry.Continue()
    except store.LockHeld:
        log.info("segment.plan run=%s: another plan is walking; nothing to do", run_id)
        return {"run_id": run_id, "duplicate": True}
    return _end(run_id)


def _end(run_id: str) -> dict[str, Any]:
    ended = walk.end(run_id)
    if ended.pop("complete"):
        # Every slice reported before the walk ended: no chord body still to come will
        # find the run complete, so a summarize of its own is sent.
        summarize.apply_async(([], run_id))
    return ended


# Slices per chord at most: a body's message carries its headers' results (~200 bytes
# each). A walk hands over a page's worth at a time; a resume may hand thousands over.
SLICES_PER_CHORD = 100


def _launch(run_id: str, numbers: list[int]) -> None:
    """Hand slices to the broker, recorded first (a lost one is redone by number), as
    chords whose body is segment.summarize."""
    SEGMENT.launch(run_id, {str(n): n for n in numbers})
    _send_chords(run_id, numbers)
    if numbers:
        log.info("segment.plan run=%s handed over slices %d..%d", run_id, numbers[0],
                 numbers[-1])


def _send_chords(run_id: str, numbers: list[int]) -> None:
    for at in range(0, len(numbers), SLICES_PER_CHORD):
        header = [migrate_slice.s(run_id, n) for n in numbers[at:at + SLICES_PER_CHORD]]
        chord(header)(summarize.s(run_id))


def _relaunch(run_id: str, walks: list[str], lost: dict[str, Any]) -> None:
    """A run that lost a message: its walk sent again, its lost slices sent again as a
    new chord (the chord they were in never reaches its body). A redone slice reads its
    profiles again; its checkpoints keep what was sent from being sent twice."""
    if walks:
        plan.apply_async((run_id,))
    _send_chords(run_id, sorted(int(part) for part in lost))


SEGMENT.relaunch = _relaunch  # the run engine's recovery (worker/recovery.py) sends with it


class SliceTask(FleetTask):
    def give_up(self, exc: Exception, run_id: str, slice_no: int, *args: Any,
                **kwargs: Any) -> Record:
        # A chord header must report: its record says why it gave up (a header that
        # raised would hand its chord's body a ChordError instead of running it).
        record = slices.failure_record(int(slice_no), state.slice_ids(run_id, int(slice_no)),
                                       f"gave up after retries: {exc}")
        slices.report(run_id, record)
        return slices.outcome(record, self.request.id)


# ignore_result=False: a chord's body reads its headers' results (whatever the default).
@app.task(name="segment.migrate_slice", base=SliceTask, bind=True, max_retries=8,
          ignore_result=False)
def migrate_slice(self: SliceTask, run_id: str, slice_no: int,
                  segment_ids: list[str] | None = None) -> Record:
    """Fetch, map and upsert one slice; its record is stored and reported, its numbers
    returned (`slices.outcome`). (`segment_ids`: sent by earlier versions; the walk
    stored them.)"""
    stored = state.slice_outcome(run_id, slice_no)
    if stored is not None:  # redelivered, or redone twice: nothing to redo
        return slices.outcome(stored, self.request.id)
    settings = get_settings()
    try:
        with store.lock(f"segment:slice:{run_id}:{slice_no}", settings.task_time_limit):
            record = _slice_record(run_id, slice_no, self.deadline())
            slices.report(run_id, record)
    except store.LockHeld:
        # The same slice is running elsewhere (a duplicate message); that one reports.
        # (Should this copy complete their chord first, its body finds the slice not
        # reported yet: another body, or the recovery, ends the run.)
        return {"slice": slice_no, "ok": True, "duplicate": True, "task_id": self.request.id}
    return slices.outcome(record, self.request.id)


def _slice_record(run_id: str, slice_no: int, deadline: float) -> Record:
    """The slice's record, whatever happens but a retry or a continuation (which raise:
    FleetTask reschedules the slice, its checkpoints keeping what was done)."""
    try:
        return slices.migrate(run_id, slice_no, get_settings(), deadline)
    except (*retry.RETRYABLE, retry.Continue, SoftTimeLimitExceeded):
        raise
    except Exception as exc:  # a 4xx for the slice, a broken cursor, a bug: report it
        log.exception("segment.migrate_slice run=%s slice=%d failed", run_id, slice_no)
        return slices.failure_record(slice_no, state.slice_ids(run_id, slice_no),
                                     f"{type(exc).__name__}: {exc}")


@app.task(name="segment.summarize", base=FleetTask, bind=True, ignore_result=True)
def summarize(self: FleetTask, results: list[Any], run_id: str) -> Record:
    """A chord's body: its slices have all reported. Their results are forgotten (read
    here, needed nowhere else), and the run ends if nothing else is left: walk ended,
    every slice reported. Idempotent: a second body, or this one redelivered, finds the
    summary written (SET NX) and changes nothing."""
    forget_results(self.app, [r["task_id"] for r in results
                              if isinstance(r, dict) and r.get("task_id")])
    summary = SEGMENT.finish_if_complete(run_id, by=self.name)
    return {"run_id": run_id, "slices": len(results), "ended": summary is not None}


@app.task(name="segment.status", ignore_result=False)
def status(run_id: str) -> Record | None:
    """Slices finished of total, the counts so far, and the summary once it exists."""
    progress = state.progress(run_id)
    if progress is not None and progress["summary_ready"]:
        progress["summary"] = state.get_summary(run_id)
    return progress
