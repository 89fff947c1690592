"""Paced budgets space requests evenly across threads (real Redis)."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from worker.clients.customerio import CustomerIo
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import VoucherifyClient
from worker.ratelimit import (
    Budget,
    NoBudget,
    PacedBudget,
    pace_interval_us,
    per_hour,
    per_minute,
    per_second,
    under_margin,
)
from worker.settings import Settings

MARGIN = 0.04


def test_paced_budget_spaces_requests_across_threads(redis_url):
    # The slots Redis grants are the pacing (a thread may wake late from its wait on a
    # busy machine, which only spaces requests further): assert on them, exactly.
    budget = PacedBudget("pace-test", per_second(100), margin=MARGIN)
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
    gap = 1 / (100 * (1 - MARGIN))
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


def test_margin_arithmetic_of_each_kind_of_budget():
    # Paced: Segment's and customer.io's 100/s at 4 % under -> one slot per 10,417 us
    # (96/s); without a margin, one per 10,000 us.
    assert pace_interval_us(per_second(100), 0.04) == 10_417
    assert pace_interval_us(per_second(100), 0.0) == 10_000
    assert 1e6 / pace_interval_us(per_second(100), 0.04) <= 96
    # Moving windows admit whole requests: Voucherify's 100/min -> 96, GIS's 10/s -> 9,
    # an hourly bulk cap of 50 -> 48; never fewer than one.
    assert under_margin(per_minute(100), 0.04).amount == 96
    assert under_margin(per_minute(100), 0.04).get_expiry() == 60
    assert under_margin(per_second(10), 0.04).amount == 9
    assert under_margin(per_second(10), 0.04).get_expiry() == 1
    assert under_margin(per_hour(50), 0.04).amount == 48
    assert under_margin(per_second(1), 0.04).amount == 1
    assert under_margin(per_minute(100), 0.0).amount == 100


def test_every_client_budget_keeps_the_configured_margin():
    settings = Settings(
        rate_limit_margin=0.1, segment_access_token="t", segment_space_id="spa_1",
        customerio_site_id="s", customerio_api_key="k", voucherify_application_id="a",
        voucherify_secret_key="k", voucherify_max_bulk_per_hour=50, gis_access_token="g")
    from worker.clients.gis import GisClient

    budgets = [SegmentClient(settings).api.budget, CustomerIo(settings).api.budget,
               VoucherifyClient(settings).api.budget, VoucherifyClient(settings).bulk_budget,
               GisClient(settings).api.budget]
    assert [b.margin for b in budgets] == [0.1] * 5
    assert [b.limit.amount for b in budgets[2:]] == [90, 45, 9]
    assert pace_interval_us(budgets[0].item, budgets[0].margin) == 11_112  # 90/s


def test_budget_margin_defaults_to_the_setting_and_is_validated(monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_MARGIN", "0.2")
    from worker.settings import get_settings

    get_settings.cache_clear()
    try:
        assert Budget("x", per_minute(100)).limit.amount == 80
    finally:
        monkeypatch.delenv("RATE_LIMIT_MARGIN")
        get_settings.cache_clear()
    assert Settings().rate_limit_margin == 0.04
    for bad in (-0.01, 0.5, 0.9):
        with pytest.raises(ValidationError):
            Settings(rate_limit_margin=bad)


def test_a_paced_slot_woken_too_late_for_is_given_up_for_a_new_one(redis_url, monkeypatch):
    # A thread that wakes after its slot by more than a quarter of the margin's slack
    # (10 ms of a second at 4 %) would land too close to the requests after it: it takes
    # a new slot. The first wake-up here comes 50 ms late (a descheduled thread).
    import time

    from worker import ratelimit, store

    budget = PacedBudget("pace-late", per_second(100), margin=MARGIN)
    real_sleep, slots = time.sleep, []

    def late_once(seconds: float) -> None:
        slots.append(int(store.client().get(store.key("pace", "pace-late"))))
        real_sleep(seconds + (0.05 if len(slots) == 1 else 0))

    monkeypatch.setattr(ratelimit.time, "sleep", late_once)
    taken = budget.acquire()
    assert len(slots) == 2  # the late slot was given up, the second one used
    assert taken == slots[1] / 1e6 and slots[1] - slots[0] >= 50_000
