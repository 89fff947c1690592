"""Segment Profile API: the profile id walk and each profile's traits and external ids.

Every request goes through `worker.http.Api` with the fleet-wide budget of the space
(`SEGMENT_MAX_RPS`, shared by every worker). Cursors are followed to the end: traits are
never truncated (the original tool read 15 and stopped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from requests.adapters import HTTPAdapter

from worker import store
from worker.http import Api, ApiError
from worker.ratelimit import Budget, NoBudget, per_second
from worker.settings import Settings, get_settings

LIST_LIMIT = 100  # ids per page of the profile list
EXTERNAL_IDS_LIMIT = 100
MAX_PAGES = 10_000  # a cursor that never ends is a bug on one side: stop, loudly


# Fleet-wide pacing: one request every 1/rate seconds, slots handed out by Redis (its own
# clock, so every host agrees). Why on top of the moving-window Budget: a window lets a
# whole second's budget go out in one burst as soon as slots free up, and requests that
# take their slot together can reach Segment a few ms apart in the wrong order (threads,
# load, network): a burst then overflows Segment's own window at its edge (429 and a
# cool-down for everyone). Evenly spaced requests leave that jitter nowhere to pile up.
PACE_SHARE = 0.98  # of SEGMENT_MAX_RPS: a little room for arrival jitter
PACE_MAX_WAIT = 2.0  # seconds; a longer queue raises NoBudget (the task reschedules)
_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local gap, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
if slot - now > max_wait then return tostring(-(slot - now)) end
redis.call('SET', KEYS[1], tostring(slot + gap), 'PX', 60000)
return tostring(slot - now)
"""


class Pacer:
    """Hands out evenly spaced send times, shared by every worker through Redis."""

    def __init__(self, redis_url: str, name: str, rate: float) -> None:
        self.redis = store.connect(redis_url)
        self.key = store.key("pace", name)
        self.gap = 1.0 / rate
        self.script = self.redis.register_script(_PACE)

    def wait(self, cooling: Callable[[], float] = lambda: 0.0) -> None:
        """Sleep until this request's slot; NoBudget if the queue is too long. A slot that
        falls inside a cool-down (a 429 somewhere) is given up and a new one taken after
        it: requests held back by a cool-down must not all leave at its end."""
        while True:
            pause = cooling()
            if pause > PACE_MAX_WAIT:
                raise NoBudget("segment", pause)
            if pause > 0:
                time.sleep(pause)
            wait = float(self.script(keys=[self.key], args=[self.gap, PACE_MAX_WAIT]))
            if wait < 0:
                raise NoBudget("segment", -wait)
            if wait > 0:
                time.sleep(wait)
            if cooling() <= 0:
                return


class CursorLoop(ApiError):
    """The API kept answering has_more with the same cursor."""


def profile_path(segment_id: str) -> str:
    """`segment_id:{id}`: lowercase type, the value URL-encoded (`+` as %2B)."""
    return "segment_id:" + quote(segment_id, safe="")


class SegmentClient:
    """One Segment space, as the settings name it."""

    def __init__(self, settings: Settings | None = None, pool_size: int = 10) -> None:
        settings = settings or get_settings()
        token = settings.secret("SEGMENT_ACCESS_TOKEN")
        settings.require("SEGMENT_SPACE_ID")
        space = settings.segment_space_id
        budget = Budget("segment", per_second(settings.segment_max_rps), settings.redis_url,
                        key=f"segment:{space}")
        self.api = Api("segment", settings.segment_profiles_url,
                       credentials=("SEGMENT_ACCESS_TOKEN", "SEGMENT_SPACE_ID"), budget=budget)
        self.api.session.auth = (token, "")
        self.pacer = Pacer(settings.redis_url, f"segment:{space}",
                           settings.segment_max_rps * PACE_SHARE)
        # Several threads of one slice share this session: give them enough connections.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(10, pool_size))
        self.api.session.mount("http://", adapter)
        self.api.session.mount("https://", adapter)
        self.base = f"/v1/spaces/{quote(str(space), safe='')}/collections/users/profiles"
        self.traits_limit = settings.segment_traits_page_size

    @property
    def calls(self) -> int:
        return self.api.calls

    def walk_profile_ids(self, start_cursor: str = "0",
                         patience: Callable[[Callable[[], Any]], Any] | None = None,
                         ) -> Iterator[tuple[list[str], str | None]]:
        """Pages of segment ids with the cursor of the NEXT page (None after the last),
        so a caller can checkpoint after each page and resume from there. `patience`
        wraps each page's call (e.g. short in-place retries)."""
        cursor: str | None = start_cursor
        patience = patience or (lambda call: call())
        while cursor is not None:
            params = {"limit": LIST_LIMIT, "next": cursor}
            body = patience(lambda p=params: self._get(self.base, p))
            ids = [row["segment_id"] for row in body.get("data") or [] if row.get("segment_id")]
            following = _next_cursor(body)
            if following == cursor:
                raise CursorLoop("segment", f"profile list cursor {cursor!r} repeats")
            cursor = following
            yield ids, cursor

    def traits(self, segment_id: str) -> dict[str, Any]:
        """Every trait of a profile, across all pages of the traits cursor."""
        merged: dict[str, Any] = {}
        for body in self._pages(f"{self.base}/{profile_path(segment_id)}/traits",
                                self.traits_limit):
            merged.update(body.get("traits") or {})
        return merged

    def external_ids(self, segment_id: str) -> list[dict[str, Any]]:
        """Every external id of a profile, across all pages."""
        rows: list[dict[str, Any]] = []
        for body in self._pages(f"{self.base}/{profile_path(segment_id)}/external_ids",
                                EXTERNAL_IDS_LIMIT):
            rows.extend(body.get("data") or [])
        return rows

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        self.pacer.wait(self.api.budget.cooling_for if self.api.budget else lambda: 0.0)
        return self.api.json("GET", path, params=params)

    def _pages(self, path: str, limit: int) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body = self._get(path, params)
            yield body
            cursor = _next_cursor(body)
            if cursor is None:
                return
            if cursor in seen:
                raise CursorLoop("segment", f"cursor {cursor!r} repeats on {path}")
            seen.add(cursor)
            params = {"limit": limit, "next": cursor}
        raise CursorLoop("segment", f"more than {MAX_PAGES} pages on {path}")


def _next_cursor(body: dict[str, Any]) -> str | None:
    """The opaque `next` while `has_more`, else None."""
    cursor = body.get("cursor") or {}
    following = cursor.get("next")
    if cursor.get("has_more") and following not in (None, ""):
        return str(following)
    return None
