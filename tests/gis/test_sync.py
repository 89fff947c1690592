"""GIS -> customer.io end to end: real worker, real Redis, the sandbox over HTTP."""

from __future__ import annotations

from ulid import ULID

from tests.support.gis import (
    WINDOW,
    Truth,
    assert_clean,
    dob_ok,
    dropped_fields,
    email_ok,
    flat,
    now,
    received,
    scan,
    scope,
    unix,
    wait_run,
    workspace,
)
from tests.support.logs import assert_every_line_parses
from worker import run_history, store
from worker.gis_sync import failed, run_state, state

MARGIN = 300  # seconds around the cold-start window edge that may fall either way


def test_initial_sync_identifies_everyone_and_sends_only_recent_transitions(
        fleet, gis_world):
    admin = gis_world.admin
    truth = Truth(admin)
    run = scan(fleet)
    assert run["cold_start"] is True

    # Everyone is identified, a person with a bad field too: the field is dropped (and
    # named in the summary), the rest of the person is sent.
    profiles = admin.customerio_profiles()["profiles"]
    assert set(profiles) == truth.valid_people()
    for pid in truth.valid_people():
        person, profile = truth.people[pid], profiles[pid]
        assert profile.get("email") == (person["email"] if email_ok(person) else None)
        assert profile.get("birthday") == (person["dob"] if dob_ok(person) else None)
        assert profile["created_at"] == unix(person["created_at"])
        assert profile["first_name"] == person["first_name"]
        assert profile["home_lc"] == person["home_lc"]["name"]
        assert None not in profile.values()
    dropped = {(pid, name) for pid in truth.valid_people()
               for name in dropped_fields(truth.people[pid])}
    assert dropped  # the world has people with a bad email or date of birth
    assert {(w["id"], w["field"]) for w in run["warnings"] if w["kind"] == "person"} == dropped
    assert run["fields_dropped"] >= len(dropped)
    # Only unusable records are errors: here applications without a known programme.
    unusable = {a["id"] for a in truth.apps.values() if not truth.app_usable(a)}
    assert {e["id"] for e in run["errors"]} == unusable
    assert all("programme" in e["reason"] for e in run["errors"])
    assert run.get("people_failed", 0) == 0

    sent = flat(received(admin))
    edge = now() - WINDOW
    history = flat(truth.all_events())
    surely = {e for e in history if e[2] >= edge + MARGIN}
    maybe = {e for e in history if e[2] >= edge - MARGIN}
    assert surely and surely <= sent <= maybe
    assert run["events_sent"] == len(sent)
    assert admin.customerio_events()["duplicates"] == 0
    assert_clean(admin)
    # Every line the shipped worker wrote during the run is one logfmt record.
    records = assert_every_line_parses(fleet.log(), "logfmt")
    assert any(r.get("task") == "gis.walk" and r.get("task_id") for r in records)


def test_backfill_sends_every_history_in_order_and_repeats_the_same_ids(
        fleet, gis_world):
    admin = gis_world.admin
    truth = Truth(admin)
    started = fleet.send_task("gis.backfill", kwargs={}).get(timeout=30)
    first = wait_run(started["run_id"])
    assert first["kind"] == "backfill"

    expected = truth.all_events()
    got = received(admin)
    assert set(got) == set(expected)
    for pid, events in expected.items():
        # Per application, in order, with the history's names and timestamps.
        for aid in {e[0] for e in events}:
            assert [e for e in got[pid] if e[0] == aid] == [e for e in events if e[0] == aid]
    raw = admin.customerio_events()["events"]
    ids = {e["id"] for evs in raw.values() for e in evs}
    assert all(ULID.from_str(i).milliseconds == e["timestamp"] * 1000
               for evs in raw.values() for e in evs for i in [e["id"]])

    again = fleet.send_task("gis.backfill", kwargs={"since": None}).get(timeout=30)
    wait_run(again["run_id"])
    after = admin.customerio_events()
    assert {e["id"] for evs in after["events"].values() for e in evs} == ids
    assert after["duplicates"] == len(ids)  # every repeat carried an id already received
    assert_clean(admin)


def test_second_scan_without_changes_sends_nothing_and_reads_only_changes(
        fleet, gis_world):
    admin = gis_world.admin
    scan(fleet)
    marks = state.marks(scope())
    admin.clear_requests()
    run = scan(fleet)
    assert run["cold_start"] is False
    assert admin.requests(api="customerio") == []
    assert run.get("people_updated", 0) == 0 and run.get("events_sent", 0) == 0
    gis_calls = admin.requests(api="gis")
    # One cheap read that checks the token, then one page per list: people,
    # applications, incoming. A handful of calls when nothing changed.
    assert len(gis_calls) == 4 == run["gis_calls"]
    check, *walks = gis_calls
    assert check["body"]["variables"]["per_page"] == 1
    overlap = 600
    for call in walks:
        filters = call["body"]["variables"]["filters"]
        lower = unix(filters["last_interaction"]["from"])
        assert lower in {unix(m) - overlap for m in marks.values()}
        assert call["status"] == 200
    # Only the records changed within the overlap window came back; the records that
    # failed last time wait their turn (a scan interval) before they are read again.
    truth = Truth(admin)
    assert run.get("people_failed", 0) == 0
    assert run["people_seen"] < len(truth.valid_people()) / 2
    unusable = {a["id"] for a in truth.apps.values() if not truth.app_usable(a)}
    assert {f"application:{aid}" for aid in unusable} == set(failed.failing(workspace()))
    assert_clean(admin)


def test_advancing_the_world_sends_exactly_the_new_transitions(
        fleet, gis_world):
    admin = gis_world.admin
    scan(fleet)
    before_truth = flat(Truth(admin).all_events())
    before = received(admin)
    identifies = admin.customerio_profiles()["identifies"]
    moved = admin.advance(share=0.15, people_share=0.1, seed=11)
    truth = Truth(admin)
    run = scan(fleet)

    edge = now() - WINDOW
    expected = {e for e in flat(truth.all_events()) - before_truth if e[2] >= edge}
    new = flat(received(admin)) - flat(before)
    assert expected and new == expected
    assert admin.customerio_events()["duplicates"] == 0
    assert run["events_sent"] == len(expected)
    kinds = {k for k in run if k.startswith("moves_")}
    assert "moves_forward" in kinds and ("moves_backward" in kinds or "moves_withdrawn" in kinds)

    # Edited people: their profiles match GIS now; nobody else was identified again.
    # (People of other LCs are read through their applications: their edits arrive
    # with their next application change.)
    profiles = admin.customerio_profiles()
    edited = set(moved["people_edited"]) & truth.valid_people()
    home_edited = {pid for pid in edited if truth.people[pid]["home_lc"]["id"] == "1340"}
    again = {pid for pid, n in profiles["identifies"].items() if n > identifies.get(pid, 0)}
    assert again and again <= edited
    for pid in home_edited | again:
        person, profile = truth.people[pid], profiles["profiles"][pid]
        assert (profile.get("last_name"), profile.get("status"), profile.get("interviewed"),
                profile.get("nps_score")) == (person["last_name"], person["status"],
                                              person["interviewed"], person["nps_score"])
    assert_clean(admin)


def test_overlapping_scans_one_runs_the_other_is_skipped(fleet, gis_world):
    gis_world.admin.faults("gis", latency_ms=400)
    first = fleet.send_task("gis.scan")
    second = fleet.send_task("gis.scan")
    results = [first.get(timeout=60), second.get(timeout=60)]
    assert sorted(r["status"] for r in results) == ["skipped", "started"]
    run = next(r for r in results if r["status"] == "started")
    wait_run(run["run_id"])
    assert run_state.scan_lock_holder(scope()) is None  # released when its walks ended


def test_redis_state_lost_between_scans_sends_no_flood(
        fleet, gis_world, redis_client):
    from tests.support import clear_fleet_state

    admin = gis_world.admin
    scan(fleet)
    first = admin.customerio_events()
    ids = {e["id"] for evs in first["events"].values() for e in evs}
    clear_fleet_state(redis_client)  # every sf:* key gone: looks like a first run
    run = scan(fleet)
    assert run["cold_start"] is True
    after = admin.customerio_events()
    assert {e["id"] for evs in after["events"].values() for e in evs} == ids
    assert after["duplicates"] <= len(ids)  # only the recent window, under the same ids
    assert_clean(admin)


def test_429_and_5xx_are_retried_until_everything_arrives(fleet, gis_world):
    admin = gis_world.admin
    truth = Truth(admin)
    admin.faults("customerio", burst_429=3, retry_after=1, error_rate=0.15,
                 error_statuses=[500, 503])
    admin.faults("gis", error_rate=0.15, error_statuses=[502])
    run = scan(fleet, timeout=120)
    profiles = admin.customerio_profiles()["profiles"]
    assert set(profiles) == truth.valid_people()
    edge = now() - WINDOW
    history = flat(truth.all_events())
    surely = {e for e in history if e[2] >= edge + MARGIN}
    assert surely <= flat(received(admin))
    stats = admin.stats()
    assert stats["rejected"]["customerio"]["schema"] == 0
    assert stats["over_budget"]["customerio"] == 0
    calls = admin.requests(api="customerio")
    statuses = [r["status"] for r in calls]
    assert statuses.count(429) == 3 and any(s >= 500 for s in statuses)
    # Nothing sent inside a Retry-After window once the 429 had time to reach the
    # fleet (0.1 s). The sandbox's own early_after_429 also counts requests that were
    # already in flight when it answered 429: at most the worker's 4 threads - 1.
    limited = [r["ts"] for r in calls if r["status"] == 429]
    early = [r for r in calls if any(t + 0.1 < r["ts"] < t + 1.0 for t in limited)]
    assert early == []
    assert stats["early_after_429"]["customerio"] <= 3
    assert stats["ignored_retry_after"]["customerio"] == 0  # the sandbox's own > 100 ms
    unusable = {a["id"] for a in truth.apps.values() if not truth.app_usable(a)}
    assert run["applications_failed"] == len(unusable)  # retries counted nothing twice


def test_gis_401_stops_the_scan_with_the_credential_named_and_no_retries(
        fleet, gis_world, monkeypatch):
    from worker.settings import get_settings

    monkeypatch.setenv("GIS_ACCESS_TOKEN", "not-the-token")
    monkeypatch.delenv("GIS_REFRESH_TOKEN", raising=False)
    get_settings.cache_clear()
    result = fleet.send_task("gis.scan")
    try:
        result.get(timeout=30)
        raise AssertionError("the scan should have failed")
    except Exception as exc:  # the worker's AuthError, re-raised here
        assert "GIS_ACCESS_TOKEN" in str(exc)
    # FAILURE is final: a retry would have left it RETRY with a message waiting.
    assert result.state == "FAILURE"
    assert store.client().llen("gis") == 0
    assert len(gis_world.admin.requests(api="gis")) == 1
    assert gis_world.admin.requests(api="customerio") == []
    halted = run_history.recent(1, job="gis")[0]
    assert halted["status"] == "halted" and "GIS_ACCESS_TOKEN" in halted["error"]


def test_expired_gis_token_is_refreshed_once(fleet, gis_world):
    admin = gis_world.admin
    admin.gis_expire_token()
    scan(fleet)
    refreshes = [r for r in admin.requests(api="gis") if r["path"].endswith("/oauth/token")]
    assert len(refreshes) == 1
    assert admin.customerio_profiles()["profiles"]


def test_customerio_401_halts_the_run_without_a_retry_storm(
        fleet, gis_world, monkeypatch):
    from worker.settings import get_settings

    monkeypatch.setenv("CUSTOMERIO_API_KEY", "wrong-key")
    get_settings.cache_clear()
    run = scan(fleet)
    assert run["status"] == "halted" and "CUSTOMERIO_API_KEY" in run["error"]
    calls = gis_world.admin.requests(api="customerio")
    assert 1 <= len(calls) <= 4 and all(c["status"] == 401 for c in calls)  # <= concurrency


def test_a_halted_runs_records_are_synced_by_the_next_scan_once_the_key_is_fixed(
        fleet, gis_world, monkeypatch):
    # The halted run puts the marks back where they were when it ends: what it read but
    # could not send is read again by the next scan (here a cold start again: nothing of
    # the first one reached customer.io, so no baseline was set either).
    from worker.settings import get_settings

    truth = Truth(gis_world.admin)
    monkeypatch.setenv("CUSTOMERIO_API_KEY", "wrong-key")
    get_settings.cache_clear()
    halted = scan(fleet)
    assert halted["status"] == "halted" and "CUSTOMERIO_API_KEY" in halted["error"]
    assert state.marks(scope()) == {} and not state.has_baseline(scope())
    assert failed.failing(workspace()) == {}  # not the records' fault: none parked
    monkeypatch.setenv("CUSTOMERIO_API_KEY", gis_world.env()["CUSTOMERIO_API_KEY"])
    get_settings.cache_clear()
    run = scan(fleet)
    assert run["status"] != "halted" and run["cold_start"] is True
    profiles = gis_world.admin.customerio_profiles()["profiles"]
    assert set(profiles) == truth.valid_people()
    assert state.has_baseline(scope()) and set(state.marks(scope())) == {
        "people", "applications", "incoming"}


def test_dry_run_sends_nothing_and_writes_no_state(
        fleet, gis_world, monkeypatch):
    from worker.settings import get_settings

    monkeypatch.setenv("DRY_RUN", "true")
    get_settings.cache_clear()
    run = scan(fleet)
    assert run["dry_run"] is True and run["events_sent"] > 0  # what would have been sent
    assert gis_world.admin.requests(api="customerio") == []
    assert not state.has_baseline(scope()) and not state.marks(scope())
    ws = workspace()
    assert not store.client().exists(state.ws_key(ws, "sent"), state.ws_key(ws, "steps"))
    # Only that the scans go on is remembered: a dry-run fleet can be healthy too.
    assert state.last_success(scope()) is not None
