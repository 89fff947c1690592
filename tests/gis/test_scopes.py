"""GIS state belongs to its (LC, customer.io workspace): a fleet pointed at a new
workspace starts there from nothing, and one fleet syncs several LCs."""

from __future__ import annotations

from sandbox import credentials
from tests.support.gis import (
    WINDOW,
    Truth,
    assert_clean,
    email_ok,
    flat,
    now,
    received,
    scan,
    scope,
    unix,
    wait_run,
)
from worker.gis_sync import run_state, state
from worker.settings import get_settings

SECOND_SITE = "sandbox-site-2"
# Two LCs of the sandbox world besides its home LC: Lisboa and Accra. Their people apply to
# LC 1340's opportunities; 1340's people apply to theirs.
LISBOA, ACCRA = "2001", "2101"


def test_a_fleet_pointed_at_a_new_workspace_sends_everyone_there_from_scratch(
        fleet, gis_world, monkeypatch):
    admin = gis_world.admin
    truth = Truth(admin)
    first = scan(fleet)
    assert first["cold_start"] is True
    old = scope()
    assert state.has_baseline(old)

    monkeypatch.setenv("CUSTOMERIO_SITE_ID", SECOND_SITE)
    monkeypatch.setenv("CUSTOMERIO_API_KEY", credentials.CUSTOMERIO_WORKSPACES[SECOND_SITE])
    get_settings.cache_clear()
    assert scope() != old and scope().lc == old.lc
    run = scan(fleet)
    assert run["cold_start"] is True  # a new workspace: nothing of it is known yet

    # Every person's first identify (email, created_at) arrives in the new workspace.
    profiles = admin.customerio_profiles(SECOND_SITE)["profiles"]
    assert set(profiles) == truth.valid_people()
    for pid in truth.valid_people():
        person, profile = truth.people[pid], profiles[pid]
        assert profile["created_at"] == unix(person["created_at"])
        assert profile.get("email") == (person["email"] if email_ok(person) else None)
    # Its events too: the same recent transitions the first workspace got.
    recent = {e for e in flat(truth.all_events()) if e[2] >= now() - WINDOW + 300}
    assert recent and recent <= flat(received(admin, SECOND_SITE))
    assert flat(received(admin, SECOND_SITE)) == flat(received(admin))
    assert_clean(admin)
    # The old workspace's state is still there, readable until it expires.
    assert state.has_baseline(old) and state.marks(old)


def test_two_lcs_in_one_fleet_sync_the_people_of_both(fleet, gis_world, monkeypatch):
    admin = gis_world.admin
    both = Truth(admin, (LISBOA, ACCRA))
    lisboa, accra = Truth(admin, (LISBOA,)), Truth(admin, (ACCRA,))
    # Each LC brings people the other does not: one LC's scan alone would miss some.
    assert lisboa.valid_people() - accra.valid_people()
    assert accra.valid_people() - lisboa.valid_people()
    assert both.valid_people() == lisboa.valid_people() | accra.valid_people()

    monkeypatch.setenv("GIS_HOME_LC_ID", f"{LISBOA},{ACCRA}")
    get_settings.cache_clear()
    started = fleet.send_task("gis.scan").get(timeout=60)
    assert started["status"] == "started"
    assert [r["lc"] for r in started["runs"]] == [int(LISBOA), int(ACCRA)]
    summaries = [wait_run(r["run_id"]) for r in started["runs"]]
    assert all(s["cold_start"] is True for s in summaries)

    profiles = admin.customerio_profiles()["profiles"]
    assert set(profiles) == both.valid_people()
    sent = flat(received(admin))
    recent = {e for e in flat(both.all_events()) if e[2] >= now() - WINDOW + 300}
    assert recent <= sent and admin.customerio_events()["duplicates"] == 0
    assert_clean(admin)
    # Each LC has its own marks and runs.
    scopes = state.scopes(get_settings())
    assert [s.lc for s in scopes] == [int(LISBOA), int(ACCRA)]
    for s, run in zip(scopes, summaries, strict=True):
        assert state.has_baseline(s) and state.marks(s)
        assert run_state.scope_of(run) == s
