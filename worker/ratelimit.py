"""Fleet-wide request budgets per external API, kept in Redis.

A Celery `rate_limit` is per worker process; these budgets hold across every worker.
`limits` keeps a moving window in Redis. A short wait for the next free slot is spent
in place (that is what keeps the budget fully used); a longer one raises `NoBudget`,
and the task reschedules itself instead of sleeping in its slot.

Per-second budgets (customer.io, Segment) use `PacedBudget`: evenly spaced slots
handed out by Redis. A moving window lets a whole second's budget leave in one burst as
soon as slots free up, and arrival jitter then overflows the service's own window.

Every budget keeps `RATE_LIMIT_MARGIN` (a fraction, 4 % by default) below the limit it
was given: a paced budget spaces its slots at (1 - margin) of the rate, a moving window
admits floor(amount x (1 - margin)) requests (at least one) per period. The published
limit counts requests as they *arrive*; ours are granted as they *leave*, and a thread
that wakes a little late from its wait (a busy host, the GIL, a connection being opened)
lands closer to the requests after it. A paced budget at 96 % absorbs 4 % of a period of
such lateness (42 ms of Segment's second) without a request over the limit, and a
thread that woke more than a quarter of that after its slot gives the slot up for a new
one (`LATE_SHARE`, at most `LATE_RETRIES` times).

After a 429 anywhere, `cool_down` stops every worker's calls to that API until the
service's Retry-After.

    sf:limits:LIMITER/...  the moving windows (the `limits` library's keys, prefixed)
    sf:pace:{budget}       the next free slot of a paced budget
    sf:cooldown:{budget}   set for the Retry-After of a 429: no calls until it expires
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute, parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from worker import metrics, store
from worker.redis_target import RedisTarget
from worker.settings import get_settings

INLINE_WAIT_MAX = 2.0  # seconds a task may wait in place for budget
# A paced slot is used only if the thread woke within this share of the margin's slack
# (margin x period) after it; otherwise it takes a new slot, up to LATE_RETRIES times.
LATE_SHARE = 0.25
LATE_RETRIES = 3


class NoBudget(Exception):
    """No budget now: retry after `retry_after` seconds."""

    def __init__(self, service: str, retry_after: float) -> None:
        super().__init__(service, retry_after)  # Celery rebuilds errors as `cls(*args)`
        self.service = service
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.service}: no budget for {self.retry_after:.1f}s"


@lru_cache(maxsize=4)
def _limiter(target: RedisTarget, key_prefix: str) -> MovingWindowRateLimiter:
    # On a pool of the fleet's own connection (a Sentinel-managed one follows a failover;
    # the URL only tells `limits` it speaks to Redis), under the fleet's prefix
    # (`sf:limits`): two fleets sharing a Redis keep their own windows.
    pool = store.connect(target, decode_responses=False).connection_pool
    return MovingWindowRateLimiter(RedisStorage("redis://", connection_pool=pool,
                                                key_prefix=key_prefix))


def under_margin(item: RateLimitItem, margin: float) -> RateLimitItem:
    """`item` with `margin` of its amount held back: whole requests, at least one."""
    amount = max(1, int(item.amount * (1 - margin) + 1e-9))
    return type(item)(amount, item.multiples, item.namespace)


def pace_interval_us(item: RateLimitItem, margin: float) -> int:
    """Microseconds between two slots of a paced budget of `item` kept `margin` below it."""
    return math.ceil(1_000_000 * item.get_expiry() / (item.amount * (1 - margin)))


def per_second(rate: float) -> RateLimitItem:
    """A budget of `rate` requests per second; fractions become a per-minute budget."""
    if rate >= 1 and float(rate).is_integer():
        return parse(f"{int(rate)}/second")
    return RateLimitItemPerMinute(max(1, int(rate * 60)))


def per_minute(rate: float) -> RateLimitItem:
    return RateLimitItemPerMinute(max(1, int(rate)))


def per_hour(count: int) -> RateLimitItem:
    return RateLimitItemPerHour(count)


@dataclass
class Budget:
    """A fleet-wide budget of `item` for calls to `service`, kept in the fleet's Redis,
    `margin` below it (`RATE_LIMIT_MARGIN` when not given)."""

    service: str
    item: RateLimitItem
    key: str = ""
    margin: float | None = None
    limit: RateLimitItem = field(init=False, repr=False)  # `item` less the margin

    def __post_init__(self) -> None:
        self.key = self.key or self.service
        if self.margin is None:
            self.margin = get_settings().rate_limit_margin
        self.limit = under_margin(self.item, self.margin)

    @property
    def _cooldown_key(self) -> str:
        return store.key("cooldown", self.key)

    def acquire(self) -> float:
        """Take one request's budget, waiting in place at most INLINE_WAIT_MAX seconds;
        returns when it was taken (Unix seconds)."""
        limiter = _limiter(store.target(), store.key("limits"))
        deadline = time.monotonic() + INLINE_WAIT_MAX
        while True:
            wait = self.cooling_for()
            if wait <= 0:
                if limiter.hit(self.limit, "syncfleet", self.key):
                    return time.time()
                reset_at = limiter.get_window_stats(self.limit, "syncfleet", self.key).reset_time
                wait = max(0.005, reset_at - time.time())
            metrics.add("budget_waits", api=self.service)
            if time.monotonic() + wait > deadline:
                raise NoBudget(self.service, wait)
            time.sleep(wait)

    def cooling_for(self) -> float:
        """Seconds left of a cool-down that a 429 started, 0 when none."""
        ms = store.client().pttl(self._cooldown_key)
        return ms / 1000 if ms and ms > 0 else 0.0

    def cool_down(self, seconds: float) -> None:
        """Stop the whole fleet's calls to this API for `seconds` (never shortens one)."""
        if seconds > 0 and seconds > self.cooling_for():
            store.client().set(self._cooldown_key, "1", px=int(seconds * 1000) + 1)


# One slot per `gap` µs for the whole fleet, on Redis's clock (every host agrees): reserve
# the next free slot and answer {wait, slot}, or {-wait, slot} without reserving when the
# wait is longer than the caller may spend in place.
_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1]))
local wait = slot - now
if wait > tonumber(ARGV[2]) then return {-wait, slot} end
redis.call('SET', KEYS[1], slot, 'PX', 60000)
return {wait, slot}
"""


@dataclass
class PacedBudget(Budget):
    """A fleet-wide per-second budget that spaces requests evenly (a leaky bucket in
    Redis), `margin` below the rate to leave room for arrival jitter."""

    def acquire(self) -> float:
        """Wait for the fleet's next slot; returns the slot's time (Redis clock, s)."""
        gap_us = pace_interval_us(self.item, self.margin or 0.0)
        late_max = LATE_SHARE * (self.margin or 0.0) * self.item.get_expiry()
        deadline = time.monotonic() + INLINE_WAIT_MAX
        given_up = 0
        while True:
            self._sit_out_cool_down(deadline)
            slot_us, late = self._take_slot(gap_us)
            # A slot this thread woke too late for is given up (its request would land
            # closer than the pace to the ones after it), a few times at most; as is a
            # slot that fell inside a cool-down (a 429 meanwhile): requests held back by
            # a cool-down must not all leave at its end.
            if late > late_max > 0 and given_up < LATE_RETRIES:
                given_up += 1
                metrics.add("budget_waits", api=self.service)
                continue
            if self.cooling_for() <= 0:
                return slot_us / 1e6

    def _sit_out_cool_down(self, deadline: float) -> None:
        while (cooling := self.cooling_for()) > 0:
            metrics.add("budget_waits", api=self.service)
            if time.monotonic() + cooling > deadline:
                raise NoBudget(self.service, cooling)
            time.sleep(cooling)

    def _take_slot(self, gap_us: int) -> tuple[int, float]:
        """Reserve the fleet's next slot and sleep until it: (slot in µs on Redis's
        clock, seconds this thread woke after it); NoBudget when it is too far off."""
        wait_us, slot_us = (int(v) for v in store.client().eval(
            _PACE, 1, store.key("pace", self.key), gap_us, int(INLINE_WAIT_MAX * 1e6)))
        # Counted from the answer: Redis's round trip delays every slot alike (no harm);
        # what compresses requests is a thread that wakes later than its peers.
        answered = time.monotonic()
        if wait_us < 0:
            metrics.add("budget_waits", api=self.service)
            raise NoBudget(self.service, -wait_us / 1e6)
        time.sleep(wait_us / 1e6)
        return slot_us, time.monotonic() - answered - wait_us / 1e6
