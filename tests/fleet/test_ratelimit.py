"""Paced budgets space requests evenly across threads (real Redis)."""

from __future__ import annotations

import threading

import pytest

from worker.ratelimit import NoBudget, PacedBudget, per_second

BUDGET_SHARE = 0.96


def test_paced_budget_spaces_requests_across_threads(redis_url):
    # The slots Redis grants are the pacing (a thread may wake late from its wait on a
    # busy machine, which only spaces requests further): assert on them, exactly.
    budget = PacedBudget("pace-test", per_second(100), share=BUDGET_SHARE)
    slots: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(15):
            slot = budget.acquire()
            with lock:
                slots.append(slot)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    gap = 1 / (100 * BUDGET_SHARE)
    # 60 requests at 96/s from 4 threads: one slot each, never two closer than the pace.
    assert len(slots) == len(set(slots)) == 60
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) >= gap - 1e-6
    assert max(sum(1 for s in slots if x <= s < x + 0.1) for x in slots) <= 10


def test_paced_budget_raises_no_budget_while_cooling_down(redis_url):
    budget = PacedBudget("pace-cool", per_second(100))
    budget.cool_down(60)
    with pytest.raises(NoBudget) as caught:
        budget.acquire()
    assert 30 < caught.value.retry_after <= 60.01  # the cool-down's rest, whatever the delay
