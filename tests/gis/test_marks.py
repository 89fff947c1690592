"""Each high-water mark of a scan comes from its own GIS query (pure: GIS is a stand-in)."""

from __future__ import annotations

from typing import Any

from worker.gis_sync.changes import read_changes
from worker.settings import Settings


class Lists:
    """What each GIS list query returns; the fleet's client walks pages the same way."""

    calls = 3

    def __init__(self, own: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> None:
        self.own, self.incoming = own, incoming

    def people(self, home_committee: int, since: str | None = None) -> list[dict[str, Any]]:
        return []

    def applications(self, since: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        return self.own if "person_home_lc" in filters else self.incoming


def test_an_incoming_application_does_not_move_the_home_lc_mark():
    own = [{"id": "1", "updated_at": "2026-01-01T00:00:00Z"}]
    incoming = [{"id": "2", "updated_at": "2026-01-05T00:00:00Z"},
                {"id": "1", "updated_at": "2026-01-01T00:00:00Z"}]
    settings = Settings(gis_home_lc_id=1340, gis_sync_incoming=True)
    changes = read_changes(Lists(own, incoming), settings, None)
    assert [a["id"] for a in changes.applications] == ["1", "2"]
    assert changes.marks == {"applications": "2026-01-01T00:00:00Z",
                             "incoming": "2026-01-05T00:00:00Z"}
