"""The fleet's counters, kept in Redis so that one exporter sees every worker on every
host (`worker/exporter.py` serves them to Prometheus; workers need no scrape of their
own). Counting is one HINCRBY per event, fleet-wide; a failure to count never fails the
work (the counter is lost, the sync goes on).

Keys:

    sf:metrics                 hash: "name|label=value,label=value" -> count
    sf:metrics:task_longest    hash: task name -> the longest delivery so far (seconds)

Counters (exported with the prefix `syncfleet_` and the suffix `_total`):

    records{job, kind, outcome}   records handled: synced, unchanged, skipped, failed
    events{name}                  customer.io events sent, by event name
    http_requests{api, status}    requests to each API by answer (status code, or
                                  "timeout" / "connection" when none came)
    rate_limited{api}             429s from each API
    budget_waits{api}             waits for the fleet's own budget
    runs{job, status}             runs ended, by status
    task_runs{task}               task deliveries run (a retry or continuation is one more)
    task_milliseconds{task}       their time, summed (exported in seconds)
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import redis

from worker import store

log = logging.getLogger(__name__)

# HSET the field to the new value when it is larger: the longest delivery, fleet-wide.
_KEEP_MAX = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""

def field(name: str, labels: dict[str, Any]) -> str:
    inner = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return f"{name}|{inner}"


def parse(name_and_labels: str) -> tuple[str, dict[str, str]]:
    name, _, inner = name_and_labels.partition("|")
    labels = dict(pair.split("=", 1) for pair in inner.split(",") if "=" in pair)
    return name, labels


def add(name: str, n: int = 1, **labels: Any) -> None:
    """Count `n` of `name` with these labels (never raises)."""
    if n:
        add_many(Counter({field(name, labels): n}))


def add_many(counts: Counter[str] | dict[str, int]) -> None:
    """Count several fields at once (fields built with `field`)."""
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return
    try:
        with store.client().pipeline(transaction=False) as pipe:
            for name, value in counts.items():
                pipe.hincrby(store.key("metrics"), name, value)
            pipe.execute()
    except redis.RedisError:
        log.warning("metrics: could not count %s", sorted(counts))


def snapshot() -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    """Every counter: (name, sorted labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for raw, value in store.client().hgetall(store.key("metrics")).items():
        name, labels = parse(raw)
        out[(name, tuple(sorted(labels.items())))] = int(value)
    return out


def task_ran(task: str, seconds: float) -> None:
    """A delivery of `task` took `seconds` (never raises)."""
    try:
        r = store.client()
        with r.pipeline(transaction=False) as pipe:
            pipe.hincrby(store.key("metrics"), field("task_runs", {"task": task}), 1)
            pipe.hincrby(store.key("metrics"), field("task_milliseconds", {"task": task}),
                         round(seconds * 1000))
            pipe.eval(_KEEP_MAX, 1, store.key("metrics", "task_longest"), task,
                      f"{seconds:.3f}")
            pipe.execute()
    except redis.RedisError:
        log.warning("metrics: could not time task %s", task)


def longest_tasks() -> dict[str, float]:
    """task name -> its longest delivery so far (seconds)."""
    return {k: float(v) for k, v in
            store.client().hgetall(store.key("metrics", "task_longest")).items()}
