"""The walk of a migration: Segment's profile id list, cut into slices (no Celery here).

`walk` reads the id list from the run's checkpoint one page (100 ids) at a time, stores
every full slice's ids, checkpoints (cursor, slice count, ids not yet in a slice) and
then calls `launch(final)`, which starts the slices that are ready. It stops at its
deadline (the task goes on in a new delivery); a walk interrupted by a crash or a 429
continues from its checkpoint and loses at most one page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from worker import retry
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import VoucherifyClient
from worker.http import ApiError
from worker.segment_migration import state
from worker.settings import Settings

log = logging.getLogger(__name__)


def walk(run_id: str, run: dict[str, Any], settings: Settings,
         launch: Callable[[bool], None], deadline: float = float("inf")) -> bool:
    """Walk from the checkpoint towards the end of the list; True when the walk is over
    (the end, or the run halted), False when `deadline` (monotonic) came first. A 401, a
    missing space or a broken cursor halts the run with the reason; retryable failures
    raise (the task retries from the checkpoint)."""
    client = SegmentClient(settings)
    voucherify = None if run["dry_run"] else VoucherifyClient(settings)
    size, slices, buffer = run["slice_size"], run["slices"], list(run["buffer"])
    patience = partial(retry.in_place, deadline=deadline)
    try:
        if voucherify is not None and run["cursor"] in ("", "0"):
            # One cheap call at the start: a wrong key halts before any work.
            patience(voucherify.check_credentials)
        pages = client.walk_profile_ids(run["cursor"] or "0", patience)
        for ids, following in pages:
            buffer.extend(ids)
            state.add_live(run_id, profiles_listed=len(ids))
            while len(buffer) >= size or (following is None and buffer):
                state.store_slice_ids(run_id, slices, buffer[:size])
                buffer, slices = buffer[size:], slices + 1
            # The walk's end is recorded BEFORE the last slices start: their chord body
            # must see it to know the run is complete.
            state.save_walk(run_id, following, slices, buffer, walk_done=following is None)
            launch(following is None)
            if state.halted(run_id):  # a slice met a 401: start nothing more
                return True
            if following is not None and time.monotonic() > deadline:
                return False
        return True
    except retry.RETRYABLE:
        raise
    except ApiError as exc:  # 401, a 404 for the space, a broken cursor: halt, say why
        state.halt(run_id, str(exc))
        log.error("segment walk run=%s halted: %s", run_id, exc)
        return True
    finally:
        state.add_calls(run_id, segment=client.calls,
                        voucherify=voucherify.calls if voucherify else 0)
