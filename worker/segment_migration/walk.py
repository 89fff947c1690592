"""The walk of a migration: Segment's profile id list, cut into slices (no Celery here).

`walk` first hands over the planned slices not handed over in this attempt (a resume, a
redelivery), then reads the id list from the run's checkpoint one page (100 ids) at a
time: it stores every full slice's ids, checkpoints (cursor, slice count, ids not yet in
a slice) and hands the new slices over at once (`launch`). It stops at its deadline
(the task goes on in a new delivery); a walk interrupted by a crash or a 429 continues
from its checkpoint and loses at most one page. A stopped run (halted, cancelled) hands
nothing more over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from worker import retry
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import VoucherifyClient
from worker.http import ApiError
from worker.segment_migration import state
from worker.segment_migration.state import SEGMENT
from worker.settings import Settings

log = logging.getLogger(__name__)

# launch(run id, slice numbers): hand these slices to the broker.
Launch = Callable[[str, list[int]], None]


def walk(run_id: str, settings: Settings, launch: Launch,
         deadline: float = float("inf")) -> bool:
    """Walk from the checkpoint towards the end of the list; True when the walk is over
    (the end, or the run stopped), False when `deadline` (monotonic) came first. A 401, a
    missing space or a broken cursor halts the run with the reason; retryable failures
    raise (the task retries from the checkpoint)."""
    run = state.get_run(run_id)
    if run is None:
        raise ValueError(f"unknown run {run_id}")
    checkpoint = state.walk_checkpoint(run_id)
    if SEGMENT.stopped(run_id):
        return True
    launch(run_id, state.unlaunched(run_id, checkpoint["slices"]))
    if checkpoint["listed_all"]:
        return True
    return _read_list(run_id, run, checkpoint, settings, launch, deadline)


def _read_list(run_id: str, run: dict, checkpoint: dict, settings: Settings, launch: Launch,
               deadline: float) -> bool:
    client = SegmentClient(settings)
    voucherify = None if run["dry_run"] else VoucherifyClient(settings)
    size, slices, buffer = run["slice_size"], checkpoint["slices"], list(checkpoint["buffer"])
    patience = partial(retry.in_place, deadline=deadline)
    try:
        if voucherify is not None and checkpoint["cursor"] in ("", "0"):
            # One cheap call at the start: a wrong key halts before any work.
            patience(voucherify.check_credentials)
        for ids, following in client.walk_profile_ids(checkpoint["cursor"] or "0", patience):
            buffer.extend(ids)
            state.add_live(run_id, profiles_listed=len(ids))
            planned = slices
            while len(buffer) >= size or (following is None and buffer):
                state.store_slice_ids(run_id, slices, buffer[:size])
                buffer, slices = buffer[size:], slices + 1
            state.save_walk(run_id, following, slices, buffer, listed_all=following is None)
            if SEGMENT.stopped(run_id):  # a slice met a 401, or a cancel: start nothing more
                return True
            launch(run_id, list(range(planned, slices)))
            if following is not None and time.monotonic() > deadline:
                return False
        return True
    except retry.RETRYABLE:
        raise
    except ApiError as exc:  # 401, a 404 for the space, a broken cursor: halt, say why
        SEGMENT.halt(run_id, str(exc))
        log.error("segment walk run=%s halted: %s", run_id, exc)
        return True
    finally:
        state.add_calls(run_id, segment=client.calls,
                        voucherify=voucherify.calls if voucherify else 0)


def end(run_id: str) -> dict[str, int | str | bool]:
    """The walk has handed everything over (or the run stopped): it ends. `complete`:
    every slice has reported already (an empty space, a 401 at once, slices quicker
    than the walk's last step), so no chord body still to come will find the walk
    ended: the caller has the run summarized. Ended before the check, so at least one
    of the two sees the run complete."""
    SEGMENT.end_walk(run_id, state.WALK)
    return {"run_id": run_id, "complete": SEGMENT.complete(run_id),
            **SEGMENT.progress(run_id)}
