"""GIS runs that lost a message, found and finished (no Celery here: `send` sends).

Kombu pops a message before it records it as held (`worker/broker.py`): a worker killed
in between loses it, and the run waits for a part or a walk step that will never come.
Every worker looks every few seconds (its timer, `worker.tasking.CHORES`), one at a
time fleet-wide. A run that has done nothing for LOST_AFTER seconds while the broker
holds nothing at all (no queued, held or parked message: nothing of the run can still
arrive) lost its messages:

- a walk still open is sent again (a walk goes on from its checkpoint);
- a part that never reported is read again: a `redo:{part}` walk reads its records
  from GIS by id (the names kept in `sf:gis:run:{id}:pending`) and hands them over;
  sync tasks are idempotent, so whatever of the part did arrive is not sent twice.

The run then ends as usual, its summary counting `parts_redone`. While other work keeps
the broker busy the check waits; a run idle for STALE_AFTER is closed as incomplete by
the next scan (`tasks._close_stale_runs`).

    sf:lock:gis-recovery     one worker checks at a time
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from worker import broker, store
from worker.gis_sync import run_state

log = logging.getLogger(__name__)

# Longer than a walk step's pause between pages and a sweep's restore of a dead worker's
# messages takes to show in the broker; short enough to finish well within a minute.
LOST_AFTER = 15
CHECK_LOCK_S = 30

SendWalk = Callable[[str, str], None]  # (run id, stream): send the walk's next step


def recover(send_walk: SendWalk) -> list[str]:
    """Finish the runs that lost a message; returns the streams sent (run:stream)."""
    stale = run_state.stale_runs(LOST_AFTER)
    if not stale or not broker.quiet():
        return []
    try:
        with store.lock("gis-recovery", CHECK_LOCK_S):
            return [sent for run_id in stale for sent in _recover_run(run_id, send_walk)]
    except store.LockHeld:
        return []


def _recover_run(run_id: str, send_walk: SendWalk) -> list[str]:
    streams = run_state.walking(run_id)
    for part, names in run_state.lost_parts(run_id).items():
        streams.append(run_state.redo_part(run_id, part, names))
        log.warning("gis run %s: part %s never reported (a lost message): its %d records "
                    "are read again", run_id, part, len(names))
    for stream in streams:
        send_walk(run_id, stream)
    return [f"{run_id}:{stream}" for stream in streams]
