"""A slice's fetch threads stop when the task's soft time limit hits the main thread
(pure: Segment is a stand-in that takes its time; the limit is a real signal)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from worker.segment_migration.tasks import fetch_and_map
from worker.settings import Settings


class SlowSegment:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def traits(self, segment_id: str) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        time.sleep(0.05)
        return {}

    def external_ids(self, segment_id: str) -> list[dict[str, Any]]:
        return []


def test_soft_time_limit_stops_the_fetch_threads():
    def soft_limit(*_: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_limit)
    segment = SlowSegment()
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(SoftTimeLimitExceeded):
            fetch_and_map(segment, [f"p{i}" for i in range(200)],
                          Settings(segment_fetch_concurrency=2))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # 200 profiles at 2 x 20/s would take 5 s: the threads stopped soon after 0.2 s.
    assert time.monotonic() - started < 1.0
    assert segment.calls < 30
