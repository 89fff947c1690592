"""Each high-water mark of a scan comes from its own GIS list, and moves only past what
was handed to the broker (a walk step with a stand-in GIS client; real Redis)."""

from __future__ import annotations

import time
from typing import Any

from worker.clients.gis import Cursor, Listing
from worker.gis_sync import run_state, state, walk
from worker.gis_sync.run_state import GIS
from worker.settings import Settings

SCOPE = state.Scope(1340, "ws-test")

LC = 1340
OWN = [{"id": "1", "updated_at": "2026-01-01T00:00:00Z", "person": {"home_lc": {"id": "1340"}}}]
INCOMING = [{"id": "2", "updated_at": "2026-01-05T00:00:00Z",
             "person": {"home_lc": {"id": "77"}}},
            {"id": "1", "updated_at": "2026-01-01T00:00:00Z",  # also in OWN
             "person": {"home_lc": {"id": "1340"}}}]


class Lists:
    """Each GIS list in one page, as the fleet's client pages them."""

    def __init__(self) -> None:
        self.calls = 0

    def page(self, listing: Listing, filters: dict[str, Any], cursor: Cursor
             ) -> tuple[list[dict[str, Any]], Cursor | None]:
        self.calls += 1
        if "home_committee" in filters:
            return [], None
        return (OWN if "person_home_lc" in filters else INCOMING), None


def walk_all(run_id: str, settings: Settings) -> dict[str, list[str]]:
    handed: dict[str, list[str]] = {}

    def launch(_run: str, part: str, people: list[dict], applications: list[dict]) -> None:
        handed[part] = [str(r["id"]) for r in people + applications]

    for stream in walk.streams(settings):
        walk.step(run_id, stream, Lists(), settings, launch, time.monotonic() + 60)
    return handed


def test_each_list_moves_its_own_mark_and_incoming_skips_the_lcs_own_people(redis_client):
    settings = Settings(gis_home_lc_id=LC, gis_sync_incoming=True)
    run_state.start_run("r1", "scan", SCOPE)
    run_state.open_walks("r1", dict.fromkeys(walk.streams(settings)), moves_marks=True,
                         holds_lock=False)
    handed = walk_all("r1", settings)
    # The LC's own person's application came through `applications` only.
    assert handed == {"applications:0": ["1"], "incoming:0": ["2"]}
    assert state.marks(SCOPE) == {"applications": "2026-01-01T00:00:00Z",
                             "incoming": "2026-01-05T00:00:00Z"}
    assert GIS.progress("r1")["walks_open"] == 0


def test_a_dry_run_or_backfill_walk_moves_no_mark(redis_client):
    settings = Settings(gis_home_lc_id=LC, gis_sync_incoming=True)
    run_state.start_run("r2", "backfill", SCOPE)
    run_state.open_walks("r2", dict.fromkeys(walk.streams(settings)), moves_marks=False,
                         holds_lock=False)
    walk_all("r2", settings)
    assert state.marks(SCOPE) == {}


class ChangingGis:
    """A GIS list served the way GIS pages it (updated_at ascending, `last_interaction`
    lower bound, page/per_page), whose records can change between two page reads."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def query(self, text: str, variables: dict[str, Any]) -> dict[str, Any]:
        lower = (variables["filters"].get("last_interaction") or {}).get("from") or ""
        rows = sorted((r for r in self.rows if r["updated_at"] >= lower),
                      key=lambda r: (r["updated_at"], r["id"]))
        size, page = variables["per_page"], variables["page"]
        return {"allPeople": {"data": rows[(page - 1) * size:page * size]}}


def test_a_record_that_changes_at_a_page_boundary_is_read_again(monkeypatch):
    from worker.clients.gis import PEOPLE, GisClient

    monkeypatch.setenv("GIS_ACCESS_TOKEN", "t")
    from worker.settings import get_settings

    get_settings.cache_clear()
    client = GisClient(get_settings())
    client.page_size = 2
    gis = ChangingGis([{"id": "1", "updated_at": "2026-01-01T00:00:00Z"},
                       {"id": "2", "updated_at": "2026-01-02T00:00:00Z"},
                       {"id": "3", "updated_at": "2026-01-03T00:00:00Z"}])
    client.query = gis.query  # type: ignore[method-assign]
    first, cursor = client.page(PEOPLE, {}, Cursor())
    assert [r["id"] for r in first] == ["1", "2"]
    gis.rows[1] = {"id": "2", "updated_at": "2026-01-04T00:00:00Z"}  # 2 changes meanwhile
    rest = []
    while cursor is not None:
        rows, cursor = client.page(PEOPLE, {}, cursor)
        rest += rows
    # The boundary's old version is not read twice; its new one is read.
    assert [(r["id"], r["updated_at"][:10]) for r in rest] == [("3", "2026-01-03"),
                                                               ("2", "2026-01-04")]
