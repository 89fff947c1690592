"""Segment Profile API: the profile id walk and each profile's traits and external ids.

Every request goes through `worker.http.Api` with the fleet-wide budget of the space
(`SEGMENT_MAX_RPS`, shared by every worker). Cursors are followed to the end: traits are
never truncated (the original tool read 15 and stopped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from requests.adapters import HTTPAdapter

from worker.http import Api, ApiError
from worker.ratelimit import PacedBudget, per_second
from worker.settings import Settings, get_settings

LIST_LIMIT = 100  # ids per page of the profile list
EXTERNAL_IDS_LIMIT = 100
MAX_PAGES = 10_000  # a cursor that never ends is a bug on one side: stop, loudly


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
        # Paced RATE_LIMIT_MARGIN under SEGMENT_MAX_RPS (worker.ratelimit.PacedBudget):
        # room for arrival jitter, so Segment's own window never sees a burst at its edge.
        budget = PacedBudget("segment", per_second(settings.segment_max_rps),
                             key=f"segment:{space}", margin=settings.rate_limit_margin)
        self.api = Api("segment", settings.segment_profiles_url,
                       credentials=("SEGMENT_ACCESS_TOKEN", "SEGMENT_SPACE_ID"), budget=budget)
        self.api.session.auth = (token, "")
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

    def check(self) -> None:
        """One cheap read-only call (a page of one profile id): AuthError on a wrong
        token, ClientError (404) on a wrong space."""
        self._get(self.base, {"limit": 1})

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
