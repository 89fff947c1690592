"""Runs that lost a message, found and finished: every worker's timer calls `look_after`
(`worker.tasking.CHORES`), one worker at a time fleet-wide (no Celery here).

Kombu pops a message from its queue before it records it as held (`worker/broker.py`):
a worker killed in between loses it, and its run waits for a walk step or a part that
will never come. A run that nothing has happened to for LOST_AFTER seconds while the
broker holds nothing at all (no queued, held or parked message: nothing of the run can
still arrive) lost its messages: its open walks are sent again and its parts that never
reported are redone (`recover`: the job's `relaunch`, from what `launch` kept for each
part), and the run ends as usual, its summary counting `parts_redone`. While other
work keeps the broker busy the look waits; a run idle for STALE_AFTER is then closed as
`incomplete` (unless something is parked: a long wait, maybe the run's own).

    sf:lock:runs-recovery     one worker looks at a time
"""

from __future__ import annotations

import logging

from worker import broker, parking, store
from worker.runs import JOBS, Runs

log = logging.getLogger(__name__)

# Longer than a walk's pause between pages and a dead worker's messages take to show in
# the broker again (the sweep); short enough to finish a run well within a minute.
LOST_AFTER = 15
# Longer than any retry, park or redelivery of a run's task.
STALE_AFTER = 3600
CHECK_LOCK_S = 30


def look_after() -> list[str]:
    """Relaunch what the idle runs lost, or close those that cannot finish; returns
    what was sent again ("job:run id:walk or part")."""
    if not any(runs.idle(LOST_AFTER) for runs in JOBS.values()):
        return []
    quiet = broker.quiet()
    if not quiet and parking.waiting():
        return []
    try:
        with store.lock("runs-recovery", CHECK_LOCK_S):
            return _relaunch_lost() if quiet else _close_stale()
    except store.LockHeld:
        return []


def recover(runs: Runs, run_id: str) -> list[str]:
    """A run that lost a message: its open walks sent again and its parts that never
    reported redone (the job's `relaunch`); one missing nothing (what should have
    written its summary was lost: a chord body, or its last reporter died first) ends
    here. Returns what was sent again."""
    if runs.get(run_id) is None:  # expired: nothing left to finish
        runs.unlist(run_id)
        return []
    walks, lost = runs.walking(run_id), runs.lost_parts(run_id)
    if not walks and not lost:
        runs.finish_if_complete(run_id, by="recovery")
        return []
    if runs.relaunch is None:
        return []
    runs.count(run_id, {"parts_redone": len(lost)})
    runs.touch(run_id)  # not relaunched again before what was sent has had its time
    runs.relaunch(run_id, walks, lost)
    return walks + list(lost)


def _relaunch_lost() -> list[str]:
    sent = []
    for runs in JOBS.values():
        for run_id in runs.idle(LOST_AFTER):
            again = recover(runs, run_id)
            if again:
                log.warning("%s run %s lost a message: sent again %s", runs.job, run_id,
                            ", ".join(again))
            sent += [f"{runs.job}:{run_id}:{what}" for what in again]
    return sent


def _close_stale() -> list[str]:
    for runs in JOBS.values():
        for run_id in runs.idle(STALE_AFTER):
            if runs.close(run_id, by="recovery"):
                log.warning("%s run %s never finished: closed as incomplete", runs.job,
                            run_id)
    return []
