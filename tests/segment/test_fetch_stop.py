"""A slice's fetch threads stop when the task's soft time limit hits the main thread.

Pure: Segment is a stand-in, and the soft limit is the real signal mechanism (prefork
delivers SIGUSR1 to the process; here it goes to the main thread once two fetches are
under way). Nothing depends on timing: fetches after the signal wait until the slice
tells its threads to stop, so the count of calls is exact."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from worker.segment_migration.slices import fetch_and_map
from worker.settings import Settings

PROFILES = 200
THREADS = 2
SIGNAL_AT = 3  # the soft limit arrives during the third fetch


class SegmentHitByTheSoftLimit:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.calls = 0
        self.lock = threading.Lock()

    def traits(self, segment_id: str) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call == SIGNAL_AT:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        if call >= SIGNAL_AT:  # a slow answer: still in flight when the limit hits
            assert self.stop.wait(30), "the soft limit never stopped the fetch threads"
        return {}

    def external_ids(self, segment_id: str) -> list[dict[str, Any]]:
        return []


def test_soft_time_limit_stops_the_fetch_threads():
    def soft_limit(*_: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGUSR1, soft_limit)
    stop = threading.Event()
    segment = SegmentHitByTheSoftLimit(stop)
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            fetch_and_map(segment, [f"p{i}" for i in range(PROFILES)],
                          Settings(segment_fetch_concurrency=THREADS), stop=stop)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert stop.is_set()
    # Only the fetches already in flight when the limit hit were made; none after it.
    assert SIGNAL_AT <= segment.calls <= SIGNAL_AT + THREADS - 1
