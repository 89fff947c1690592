"""Incoming applicants kept current: people of other LCs who applied to the LC's
opportunities are read again by id (GIS_INCOMING_PEOPLE_REFRESH), so an edit of theirs
arrives in customer.io although none of their applications moves. Real worker, real
Redis, the sandbox over HTTP."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from tests.support.cli import syncfleet
from tests.support.gis import LC, scan, scope, unix
from worker.clients.gis import PEOPLE_BY_ID_PAGE
from worker.gis_sync import explain, state
from worker.settings import get_settings

ENDED = {"completed", "finished", "withdrawn", "rejected", "declined"}


def incoming_applicants(admin) -> list[str]:
    """People of other LCs with an open application to one of the LC's opportunities,
    from the sandbox's truth."""
    return sorted({a["person_id"] for a in admin.world_applications()
                   if a["opportunity"]["home_lc"]["id"] == LC and a["person_home_lc"] != LC
                   and a["status"] not in ENDED}, key=int)


def quiet_applicant(admin, applicants: list[str]) -> str:
    """An applicant none of whose applications a scan reads again (each is older than
    the newest incoming change by far more than GIS_SCAN_OVERLAP): only the refresh can
    bring an edit of theirs."""
    apps = [a for a in admin.world_applications()
            if str(a["opportunity"]["home_lc"]["id"]) == LC]
    newest = max(unix(a["updated_at"]) for a in apps)
    recent = {a["person_id"] for a in apps if unix(a["updated_at"]) > newest - 86400}
    return next(p for p in applicants if p not in recent)


def identifies(admin, pid: str) -> list[tuple[float, dict[str, Any]]]:
    """(arrival, attributes) of every identify of `pid` customer.io received."""
    out = []
    for call in admin.requests(api="customerio"):
        body = call["body"] or {}
        if call["method"] == "PUT" and call["path"].endswith(f"/customers/{pid}"):
            out.append((call["ts"], body))
        for item in body.get("batch") or [] if isinstance(body, dict) else []:
            if item.get("action") == "identify" and item["identifiers"].get("id") == pid:
                out.append((call["ts"], item["attributes"]))
    return out


def settle(monkeypatch, refresh: int) -> None:
    monkeypatch.setenv("GIS_INCOMING_PEOPLE_REFRESH", str(refresh))
    get_settings.cache_clear()


def test_an_incoming_applicants_edit_arrives_within_the_documented_delay(
        fleet, gis_world, monkeypatch):
    admin = gis_world.admin
    refresh = 2  # short, to prove the logic: the default is 900 s
    settle(monkeypatch, refresh)
    first = scan(fleet)
    assert first["cold_start"] is True
    applicants = incoming_applicants(admin)
    assert len(applicants) >= 3
    # The sync kept them as it saw their applications: exactly the sandbox's truth.
    assert state.incoming_people(scope()) == applicants
    pid = quiet_applicant(admin, applicants)
    before = next(p for p in admin.world_people() if p["id"] == pid)
    admin.clear_requests()
    edited_at = time.time()
    edited = admin.edit_person(pid, last_name="Refreshed-Lindqvist",
                               nps_score=(before["nps_score"] or 0) + 1 if
                               (before["nps_score"] or 0) < 10 else 0)

    # The test plays beat: scans back to back until the edit has arrived.
    runs: list[dict[str, Any]] = []
    while not identifies(admin, pid):
        assert len(runs) < 20, "the edit never arrived"
        runs.append(scan(fleet))
    arrived, attributes = identifies(admin, pid)[0]
    # Only what changed is sent (the digests of what the workspace accepted).
    assert attributes == {"last_name": "Refreshed-Lindqvist",
                          "full_name": edited["full_name"],
                          "nps_score": edited["nps_score"]}
    profile = admin.customerio_profiles()["profiles"][pid]
    assert profile["last_name"] == "Refreshed-Lindqvist"

    refreshing = runs[-1]
    # The refresh's cost: one GIS call per page of ids on top of the scan's four.
    assert refreshing["gis_calls"] == 4 + math.ceil(len(applicants) / PEOPLE_BY_ID_PAGE)
    pages = [c for c in admin.requests(api="gis")
             if "PeopleById" in (c["body"] or {}).get("query", "")]
    assert len(pages) == math.ceil(len(applicants) / PEOPLE_BY_ID_PAGE)
    assert sorted(pages[0]["body"]["variables"].values(), key=int) == applicants
    # Nobody else was sent again: the others had not changed.
    others = [p for p in applicants if p != pid]
    assert not any(identifies(admin, p) for p in others)
    # Within the documented delay: refresh + scan interval (here the longest gap between
    # two scans the test started) + scan time (the longest scan).
    starts = [datetime.fromisoformat(r["started_at"]).timestamp() for r in [first, *runs]]
    interval = max(b - a for a, b in zip(starts, starts[1:], strict=False))
    scan_time = max(r["duration_s"] for r in [first, *runs])
    assert arrived - edited_at <= refresh + interval + scan_time


def test_a_scan_with_the_refresh_not_due_makes_no_extra_gis_call(
        fleet, gis_world, monkeypatch):
    admin = gis_world.admin
    settle(monkeypatch, 3600)
    scan(fleet)  # a cold start reads every incoming application: the refresh is done
    pid = quiet_applicant(admin, incoming_applicants(admin))
    admin.edit_person(pid, last_name="Not-Yet")
    admin.clear_requests()
    run = scan(fleet)
    assert run["gis_calls"] == 4 == len(admin.requests(api="gis"))
    assert not [c for c in admin.requests(api="gis")
                if "PeopleById" in (c["body"] or {}).get("query", "")]
    assert identifies(admin, pid) == []  # as documented: it waits for the refresh

    # `gis explain person` says why: what differs, and that the refresh will read them.
    found = explain.person(pid, get_settings())
    assert found["differs"] == ["last_name", "full_name"]
    opened = sorted((a["id"] for a in admin.world_applications() if a["person_id"] == pid
                     and str(a["opportunity"]["home_lc"]["id"]) == LC
                     and a["status"] not in ENDED), key=int)
    assert found["incoming"]["open_applications"] == {LC: opened}
    assert found["incoming"]["refreshed"] and found["incoming"]["last_refresh_at"]
    # Once their applications to the LC have all ended (as a scan notes it), the refresh
    # no longer reads them, and the explanation says so.
    gone = pid
    state.note_incoming(scope().workspace, [int(LC)], [
        {**a, "status": "rejected", "person": {"id": a["person_id"],
                                               "home_lc": {"id": a["person_home_lc"]}}}
        for a in admin.world_applications() if a["person_id"] == gone])
    shown = explain.person(gone, get_settings())["incoming"]
    assert shown["open_applications"] == {} and shown["refreshed"] is False
    assert shown["last_refresh_at"] is None  # no LC's refresh reads them now
    done = syncfleet("gis", "explain", "person", gone)
    assert done.returncode == 0 and "no open application to the synced LCs" in done.stdout


def test_the_refresh_is_due_after_its_interval_and_never_when_zero(redis_client):
    # No clock is waited on: the stamps are explicit.
    here = state.Scope(1340, "refresh-test")
    assert state.incoming_refresh_due(here, 900, 1000.0)  # never refreshed: due
    state.set_incoming_refreshed(here, 1000.0)
    assert not state.incoming_refresh_due(here, 900, 1899.0)
    assert state.incoming_refresh_due(here, 900, 1900.0)
    assert not state.incoming_refresh_due(here, 0, 10**9)  # 0 = off
    # Applications that end take their person off the list; one still open keeps them.
    apps = [{"id": i, "status": status, "person": {"id": pid, "home_lc": {"id": 2001}},
             "opportunity": {"home_lc": {"id": 1340}}}
            for i, status, pid in ((1, "applied", 7), (2, "accepted", 7), (3, "approved", 8),
                                   (4, "matched", 9))]
    own = {"id": 5, "status": "applied", "person": {"id": 10, "home_lc": {"id": 1340}},
           "opportunity": {"home_lc": {"id": 1340}}}
    state.note_incoming("refresh-test", [1340], [*apps, own])
    assert state.incoming_people(here) == ["7", "8", "9"]  # not the LC's own person 10
    state.note_incoming("refresh-test", [1340], [
        {**apps[0], "status": "withdrawn"}, {**apps[2], "status": "completed"}])
    assert state.incoming_people(here) == ["7", "9"]
