"""Paced budgets space requests evenly across threads (real Redis)."""

from __future__ import annotations

import threading
import time

import pytest

from worker.ratelimit import NoBudget, PacedBudget, per_second

BUDGET_SHARE = 0.96


def test_paced_budget_spaces_requests_across_threads(redis_url):
    budget = PacedBudget("pace-test", per_second(100), redis_url, share=BUDGET_SHARE)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(15):
            budget.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    elapsed = stamps[-1] - stamps[0]
    # 60 requests at 98/s: never faster than the pace, no bursts.
    assert elapsed >= 59 / (100 * BUDGET_SHARE) * 0.97
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    in_any_100ms = max(sum(1 for s in stamps if x <= s < x + 0.1) for x in stamps)
    assert in_any_100ms <= 11 and min(gaps) >= 0


def test_paced_budget_raises_no_budget_while_cooling_down(redis_url):
    budget = PacedBudget("pace-cool", per_second(100), redis_url)
    budget.cool_down(5)
    with pytest.raises(NoBudget) as caught:
        budget.acquire()
    assert 4 < caught.value.retry_after <= 5.01
