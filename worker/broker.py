"""What the broker holds right now: messages waiting in the queues, messages workers hold
(delivered, not yet acknowledged) and tasks parked for a long wait.

Kombu's keys in Redis (under `{REDIS_KEY_PREFIX}:celery:` when the prefix is not `sf`,
see `worker/celeryconfig.py`):

    {queue}, {queue}\\x06\\x16{3,6,9}   a queue's list and its priority lists
    unacked                          hash: the messages workers hold, by delivery tag

Kombu pops a message from its queue before it records it in `unacked`: a worker killed
in between loses that message (measured: now and then in a SIGKILL mid-fan-out on a busy
machine). `quiet()` is how the fleet tells such a loss from work that is merely waiting:
when nothing is queued, held or parked, nothing unfinished can still arrive.
"""

from __future__ import annotations

from worker import parking, store
from worker.settings import get_settings

QUEUES = ("default", "gis", "segment")  # the fleet's queues (worker/celeryconfig.py)
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # kombu's default steps; step 0 is the plain list


def _prefix() -> str:
    prefix = get_settings().redis_key_prefix
    return "" if prefix == "sf" else f"{prefix}:celery:"


def _queue_lists(queue: str) -> list[str]:
    base = _prefix() + queue
    return [base, *(f"{base}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS)]


def depth(queue: str) -> int:
    """Messages waiting in `queue`, every priority included."""
    with store.client().pipeline(transaction=False) as pipe:
        for name in _queue_lists(queue):
            pipe.llen(name)
        return sum(pipe.execute())


def held() -> int:
    """Messages delivered to workers and not acknowledged yet (running, reserved,
    waiting for a countdown, or held by a dead worker until the sweep restores them)."""
    return int(store.client().hlen(_prefix() + "unacked"))


def quiet() -> bool:
    """Nothing queued, held or parked anywhere in the fleet, read in one transaction: a
    message moving from a queue to `unacked` (or back) is seen in one place or the other."""
    with store.client().pipeline(transaction=True) as pipe:
        for queue in QUEUES:
            for name in _queue_lists(queue):
                pipe.llen(name)
        pipe.hlen(_prefix() + "unacked")
        pipe.zcard(parking.due_key())
        return not any(pipe.execute())
