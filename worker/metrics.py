"""The fleet's counters, kept in Redis so that one exporter sees every worker on every
host (`worker/exporter.py` serves them to Prometheus; workers need no scrape of their
own). Counting is one HINCRBY per event, fleet-wide; a failure to count never fails the
work (the counter is lost, the sync goes on).

Keys:

    sf:metrics                 hash: "name|label=value,label=value" -> count
    sf:metrics:task_seconds    hash: "task|le" -> deliveries that took at most `le` s and
                               more than the bucket below ("task|+Inf": longer), and
                               "task|sum_ms", "task|count" (a histogram, kept as counters)

Counters (exported with the prefix `syncfleet_` and the suffix `_total`; the label
`job` is stored as written and served as `sync`, since Prometheus owns `job`):

    records{job, kind, outcome}   records handled: synced, unchanged, skipped, failed
    events{name}                  customer.io events sent, by event name
    http_requests{api, status}    requests to each API by answer (status code, or
                                  "timeout" / "connection" when none came)
    rate_limited{api}             429s from each API
    budget_waits{api}             waits for the fleet's own budget
    runs{job, status}             runs ended, by status
    task_failures{task}           task deliveries that ended in an error (retries spent)
    task_retries{task, reason}    deliveries retried: error (429, 5xx, time limit), budget
                                  (waiting for the fleet's budget), continue (a checkpoint)

The histogram `task_seconds{task}` (exported as `_bucket`, `_sum`, `_count`) times every
delivery of every task.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import redis

from worker import store

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the task time histogram's buckets; the hard time limit is 20 s.
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0)


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
    bucket = next((f"{le:g}" for le in TASK_BUCKETS if seconds <= le), "+Inf")
    try:
        with store.client().pipeline(transaction=False) as pipe:
            for name, value in ((bucket, 1), ("sum_ms", round(seconds * 1000)), ("count", 1)):
                pipe.hincrby(_histogram(), f"{task}|{name}", value)
            pipe.execute()
    except redis.RedisError:
        log.warning("metrics: could not time task %s", task)


def _histogram() -> str:
    return store.key("metrics", "task_seconds")


def task_seconds() -> dict[str, dict[str, float]]:
    """task -> {"buckets": cumulative counts by upper bound ("+Inf" last), "sum": seconds,
    "count": deliveries}."""
    raw: dict[str, dict[str, int]] = {}
    for name, value in store.client().hgetall(_histogram()).items():
        task, _, part = name.rpartition("|")
        raw.setdefault(task, {})[part] = int(value)
    out: dict[str, dict[str, Any]] = {}
    for task, parts in sorted(raw.items()):
        running, buckets = 0, {}
        for stored, served in [(f"{b:g}", str(b)) for b in TASK_BUCKETS] + [("+Inf",) * 2]:
            running += parts.get(stored, 0)
            buckets[served] = running  # served as Prometheus writes bounds: 20.0, 0.05
        out[task] = {"buckets": buckets, "sum": parts.get("sum_ms", 0) / 1000,
                     "count": parts.get("count", 0)}
    return out
