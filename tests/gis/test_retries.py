"""A scan's `retries` walk: the failed records due for a retry are read again from GIS by
id, a page of 100 of one kind per GIS call (aliased `person(id)` / `getApplication(id)`
fields), and synced. Real worker, real Redis, the sandbox over HTTP."""

from __future__ import annotations

import math
from typing import Any

from tests.support import wait_for
from tests.support.gis import Truth, assert_cold_start_arrived, scan, workspace
from worker.clients.gis import BY_ID_PAGE
from worker.gis_sync import failed
from worker.gis_sync.start import RETRIES_PER_SCAN
from worker.settings import get_settings

# More than a page of each kind fails, and one scan retries them all (RETRIES_PER_SCAN).
WORLD = {"seed": 3, "people": 130, "applications": 260}
GONE = {"person": "999999901", "application": "999999902"}  # ids GIS never had


def by_id_calls(admin, operation: str) -> list[dict[str, Any]]:
    return [c for c in admin.requests(api="gis")
            if f"query {operation}(" in (c["body"] or {}).get("query", "")]


def ids_read(calls: list[dict[str, Any]]) -> list[str]:
    return [i for c in calls for i in c["body"]["variables"].values()]


def due_by_kind(ws: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"person": set(), "application": set()}
    for kind, record_id in failed.due(ws, 10_000):
        out[kind].add(record_id)
    return out


def test_due_failed_records_are_read_again_a_page_per_kind_and_reach_customerio(
        fleet, gis_world, monkeypatch):
    admin = gis_world.admin
    admin.reset(WORLD)
    # The first retry waits GIS_SCAN_INTERVAL: 1 s here, so the test need not wait 300.
    monkeypatch.setenv("GIS_SCAN_INTERVAL", "1")
    get_settings.cache_clear()
    truth = Truth(admin)
    # customer.io refuses everyone in scope: the cold start's people and applications
    # all land on the failed list.
    admin.customerio_refuse(sorted(truth.in_scope_people()))
    first = scan(fleet)
    assert first["cold_start"] is True and admin.customerio_profiles()["profiles"] == {}
    ws = workspace()
    # And a record of each kind GIS no longer has (deleted since it failed).
    failed.record(ws, [{"kind": kind, "id": rid, "reason": "customer.io refused: 400"}
                       for kind, rid in GONE.items()], failed.policy(get_settings()))
    listed = failed.failing(ws)
    admin.customerio_refuse([])  # customer.io accepts them again
    wait_for(lambda: len(failed.due(ws, 10_000)) == len(listed), "every failed record due",
             30)
    due = due_by_kind(ws)
    assert len(due["person"]) > BY_ID_PAGE and len(due["application"]) > BY_ID_PAGE, due
    assert sum(map(len, due.values())) <= RETRIES_PER_SCAN

    admin.clear_requests()
    run = scan(fleet)
    assert run["cold_start"] is False
    # The retries cost one GIS call per page of 100 ids of one kind, not one per record:
    # on top of a quiet scan's 4 (the token check and a page of each list).
    people_calls = by_id_calls(admin, "PeopleById")
    application_calls = by_id_calls(admin, "ApplicationsById")
    pages = math.ceil(len(due["person"]) / BY_ID_PAGE) + \
        math.ceil(len(due["application"]) / BY_ID_PAGE)
    assert len(people_calls) == math.ceil(len(due["person"]) / BY_ID_PAGE)
    assert len(application_calls) == math.ceil(len(due["application"]) / BY_ID_PAGE)
    assert run["gis_calls"] == 4 + pages == len(admin.requests(api="gis"))
    assert by_id_calls(admin, "Person") == by_id_calls(admin, "Application") == []
    # Each due record read exactly once.
    assert sorted(ids_read(people_calls)) == sorted(due["person"])
    assert sorted(ids_read(application_calls)) == sorted(due["application"])
    assert all(len(c["body"]["variables"]) <= BY_ID_PAGE and c["status"] == 200
               for c in people_calls + application_calls)

    # customer.io accepts again: what it refused has all arrived, as a cold start sends
    # it (everyone identified, every transition of the window, no repeat).
    assert_cold_start_arrived(admin, truth)
    profiles = admin.customerio_profiles()["profiles"]
    assert due["person"] - {GONE["person"]} <= set(profiles)
    # Synced records left the list; those GIS no longer has were dropped, not retried
    # again; only the applications the job cannot use (no known programme) stay, one
    # attempt more.
    left = failed.failing(ws)
    unusable = {aid for aid, a in truth.apps.items() if not truth.app_usable(a)}
    assert set(left) == {f"application:{aid}" for aid in unusable}
    assert all(entry["attempts"] == 2 for entry in left.values())
    for kind, rid in GONE.items():
        assert failed.entry(ws, kind, rid) is None
