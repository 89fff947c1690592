"""Time arithmetic of one API: its rate budget (moving windows) and the Retry-Afters it
gave. Every method takes `now`, monotonic seconds from `Sandbox.clock`, so tests that
prove this arithmetic step a manual clock instead of waiting.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import NamedTuple

from sandbox.config import Limits

# Loopback jitter: requests a client spaced exactly at its budget can arrive a few ms
# closer together; the window is this much shorter than its period to absorb that.
WINDOW_GRACE = 0.03

# How much older than the newest one a request's arrival may be when its budget is
# checked (a latency fault in between); older ones are checked against what is left.
REORDER_MAX = 5.0

# early_after_429 counts every request inside a Retry-After, including those already in
# flight (or sent by another thread before the 429 reached the client's shared cool-down);
# ignored_retry_after only those that arrived more than this after the last 429: a client
# had time to know.
REACTION_GRACE = 0.1


class Window:
    """A moving window of accepted requests: at most `limit` in any `period` seconds,
    counted at their arrival. Requests are admitted in the order the pipeline reaches
    its budget check (after a latency fault, which may reorder them), so a hit may be
    older than ones already counted: it is inserted in order, and it fits when every
    window holding it keeps under `limit`."""

    def __init__(self, limit: float, period: float, kind: str) -> None:
        self.limit = max(1, int(limit))
        self.span = period * (1 - WINDOW_GRACE)
        self.kind = kind
        self.hits: list[float] = []  # arrival times, sorted

    def _expire(self, now: float) -> None:
        # Kept a span longer than needed: a request that arrived earlier may still be
        # checked (a latency fault of up to REORDER_MAX) and needs the hits around it.
        edge = now - self.span - REORDER_MAX
        if self.hits and self.hits[0] <= edge:
            del self.hits[:bisect.bisect_right(self.hits, edge)]

    def wait(self, now: float) -> float | None:
        """None if a request that arrived at `now` fits, else the seconds until the
        oldest hit of the fullest window holding it leaves."""
        self._expire(now)
        hits, span = self.hits, self.span
        if len(hits) < self.limit:
            return None
        # Every window (end - span, end] holding `now` ends at `now` or at a later hit.
        first = bisect.bisect_right(hits, now)
        last = bisect.bisect_left(hits, now + span)
        for end in [now, *hits[first:last]]:
            low = bisect.bisect_right(hits, end - span)
            if bisect.bisect_right(hits, end) - low + 1 > self.limit:
                return max(0.001, hits[low] + span - now)
        return None

    def record(self, now: float) -> None:
        bisect.insort(self.hits, now)

    def remaining(self, now: float) -> int:
        self._expire(now)
        inside = bisect.bisect_right(self.hits, now) - bisect.bisect_right(
            self.hits, now - self.span)
        return max(0, self.limit - inside)

    def reset_at(self, now: float) -> float:
        """Monotonic time when the oldest hit of the current window leaves it."""
        low = bisect.bisect_right(self.hits, now - self.span)
        return self.hits[low] + self.span if low < len(self.hits) else now


class Headroom(NamedTuple):
    """The tightest window of a budget, as rate headers report it."""

    limit: int
    remaining: int
    reset_unix: float
    kind: str


class RateBudget:
    """An API's budget: per-second and per-minute windows for every request, and an
    hourly one that only bulk requests use. Only accepted requests use it up."""

    def __init__(self, limits: Limits) -> None:
        self.windows: list[Window] = []
        if limits.rps:
            self.windows.append(Window(limits.rps, 1.0, "requests-per-second"))
        if limits.rpm:
            self.windows.append(Window(limits.rpm, 60.0, "requests-per-minute"))
        self.bulk = Window(limits.bulk_per_hour, 3600.0, "bulk-per-hour") \
            if limits.bulk_per_hour else None

    def admit(self, now: float, bulk: bool) -> float | None:
        """None when the request fits every window that applies (it is then counted in
        each), else the seconds until a slot frees (and nothing is counted)."""
        windows = [*self.windows, self.bulk] if bulk and self.bulk else self.windows
        for window in windows:
            wait = window.wait(now)
            if wait is not None:
                return wait
        for window in windows:
            window.record(now)
        return None

    def tightest(self, now: float) -> Headroom | None:
        """The per-request window with the fewest slots left (None without a budget)."""
        if not self.windows:
            return None
        window = min(self.windows, key=lambda w: w.remaining(now))
        reset_unix = time.time() + (window.reset_at(now) - now)
        return Headroom(window.limit, window.remaining(now), reset_unix, window.kind)


class RetryAfters:
    """The Retry-After each identity was given, and the requests that came during one."""

    def __init__(self) -> None:
        # identity -> (time of the last 429 sent, end of its Retry-After)
        self.until: dict[str, tuple[float, float]] = {}
        self.early = 0  # arrived while a Retry-After was running
        self.ignored = 0  # ...and more than REACTION_GRACE after the 429

    def arrived(self, identity: str, now: float) -> None:
        given = self.until.get(identity)
        if given is None:
            return
        sent, end = given
        if now < end:
            self.early += 1
            if now > sent + REACTION_GRACE:
                self.ignored += 1
        else:
            del self.until[identity]

    def tell(self, identity: str, now: float, wait: float) -> int:
        """Remember a 429 sent now; the whole seconds its Retry-After names."""
        seconds = max(1, math.ceil(wait))
        self.until[identity] = (now, now + seconds)
        return seconds

    def clear(self) -> None:
        self.until.clear()
        self.early = self.ignored = 0
