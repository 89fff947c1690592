"""Segment -> Voucherify for real: the fleet's worker, Redis, the sandbox over HTTP.

Every assertion is on what the sandbox received (its customers, recording and counters)
or on the run's stored summary, compared with the sandbox's own world."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from tests.support import wait_for
from tests.support.segment import chord_leftovers, no_nulls, run_migration, start_run, wait_summary
from worker.segment_migration import mapping, state

IN_FLIGHT = 0.15  # s: a request sent just before a 429 reached the fleet may arrive after it
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def user_id(profile: dict[str, Any]) -> str | None:
    return next((e["id"] for e in profile["external_ids"] if e["type"] == "user_id"), None)


def valid_birthdate(value: Any) -> str | None:
    try:
        return date.fromisoformat(str(value)[:10]).isoformat() \
            if len(str(value)) == 10 or str(value)[10:11] == "T" else None
    except ValueError:
        return None


def test_migration_sends_every_identified_profile_once_with_the_right_fields(
        seg_env, fleet, monkeypatch, redis_client):
    monkeypatch.setenv("SEGMENT_TRAITS_PAGE_SIZE", "5")  # most profiles: several pages
    admin = seg_env.admin
    world = admin.world_profiles()
    before = set(chord_leftovers(redis_client))  # earlier tests' (a lost slice's chord)
    summary = run_migration(fleet)

    customers = admin.voucherify_customers()["customers"]
    identified = {user_id(p): p for p in world if user_id(p)}
    assert set(customers) == set(identified)
    assert all(c["upserts"] == 1 for c in customers.values())
    for source_id, profile in identified.items():
        traits, sent = profile["traits"], customers[source_id]
        assert sent["system_metadata"] == {"source": "segment"}
        assert no_nulls({k: v for k, v in sent.items() if k != "metadata"})
        email = traits.get("email")
        assert sent.get("email") == (email if email and EMAIL.match(email) else None)
        name = traits.get("name") or " ".join(
            p for p in (traits.get("first_name") or traits.get("firstName"),
                        traits.get("last_name") or traits.get("lastName")) if p) or None
        assert sent.get("name") == name
        assert sent.get("birthdate") == valid_birthdate(traits.get("birthdate"))
        nested = traits.get("address") or {}
        assert sent.get("address", {}).get("city") == (nested.get("city") or traits.get("city"))
        # Traits beyond the first page of the traits cursor (5 per page here) arrived.
        for key, value in traits.items():
            if key.startswith("custom_") and value is not None:
                assert sent["metadata"][key] == value
        # And the whole customer is exactly what the mapping makes of the world's profile.
        expected = mapping.customer(profile["segment_id"], traits, profile["external_ids"])
        assert {k: sent.get(k) for k in expected.customer} == expected.customer
        assert set(sent) - {"id", "created_at", "updated_at", "upserts"} == \
            set(expected.customer)

    assert any(len(p["traits"]) > 10 for p in identified.values())  # the paging was real
    assert summary["status"] == "finished"
    assert summary["profiles_seen"] == len(world)
    assert summary["customers_sent"] == summary["customers_upserted"] == len(identified)
    unidentified = {p["segment_id"] for p in world if not user_id(p)}
    assert unidentified  # the world has some
    assert {s["segment_id"] for s in summary["skipped"]} == unidentified
    assert all(s["reason"] == "no user_id external id" for s in summary["skipped"])
    bad_dates = {p["segment_id"] for p in identified.values()
                 if p["traits"].get("birthdate") and not valid_birthdate(p["traits"]["birthdate"])}
    assert bad_dates
    warned = {w["segment_id"] for w in summary["warnings"] if w["field"] == "birthdate"}
    assert warned == bad_dates
    assert summary["failed"] == [] and summary["slices"] == {"total": 6, "done": 6,
                                                            "failed": []}

    stats = admin.stats()
    assert stats["rejected"]["voucherify"]["schema"] == 0  # everything sent validates
    assert stats["rejected"]["voucherify"]["size"] == 0
    # The calls the summary reports are the calls the sandbox received.
    assert summary["calls"]["segment"] == sum(stats["requests"]["segment"].values())
    assert summary["calls"]["voucherify"] == sum(stats["requests"]["voucherify"].values())

    # The slices went as chords: the run was ended by a chord's body, segment.summarize,
    # and every body forgot the results it read (a body still queued when the summary
    # was written does it a moment later).
    assert summary["written_by"] == "segment.summarize"
    assert wait_for(lambda: not set(chord_leftovers(redis_client)) - before,
                    "the chords' results forgotten", 20)


def test_second_run_updates_never_duplicates(seg_env, fleet):
    first = run_migration(fleet)
    before = seg_env.admin.voucherify_customers()["customers"]
    second = run_migration(fleet)
    after = seg_env.admin.voucherify_customers()["customers"]
    assert second["run_id"] != first["run_id"]
    assert set(after) == set(before)
    assert all(c["upserts"] == 2 for c in after.values())
    for name in ("profiles_seen", "customers_sent", "customers_upserted"):
        assert second[name] == first[name]
    assert second["skipped"] == first["skipped"]
    assert len(second["warnings"]) == len(first["warnings"])


def test_failed_async_actions_are_reported_per_customer_and_resume_redoes_only_them(
        seg_env, fleet):
    admin = seg_env.admin
    admin.faults("voucherify", fail_async_actions=0.5)
    first = run_migration(fleet)
    failed_slices = {s["slice"] for s in first["slices"]["failed"]}
    assert first["status"] == "finished_with_errors"
    assert 0 < len(failed_slices) < 6
    stored = admin.voucherify_customers()["customers"]
    failed_ids = {f["source_id"] for f in first["failed"]}
    assert failed_ids and not failed_ids & set(stored)  # FAILED actions stored nothing
    assert all("FAILED" in f["reason"] and f["segment_id"] for f in first["failed"])
    assert first["customers_upserted"] == len(stored)

    # Resume the same run with the fault gone: only the failed slices are fetched again.
    admin.clear_faults("voucherify")
    admin.clear_requests()
    redo_ids = {sid for n in failed_slices for sid in state.slice_ids(first["run_id"], n)}
    start_run(fleet, run_id=first["run_id"])
    second = wait_for_new_summary(first["run_id"])
    fetched = {r["path"].split("segment_id:")[1].split("/")[0]
               for r in admin.requests(api="segment") if "segment_id:" in r["path"]}
    assert fetched == redo_ids
    assert second["status"] == "finished" and second["attempt"] == 2
    assert second["failed"] == []
    customers = admin.voucherify_customers()["customers"]
    assert failed_ids <= set(customers)
    assert second["customers_upserted"] == len(customers) == second["customers_sent"]
    assert all(c["upserts"] == 1 for c in customers.values())


def wait_for_new_summary(run_id: str) -> dict[str, Any]:
    wait_for(lambda: (state.get_run(run_id) or {}).get("attempt", 1) >= 2, "resume", 20)
    return wait_summary(run_id)


def test_resume_of_a_complete_run_does_nothing(seg_env, fleet):
    first = run_migration(fleet)
    seg_env.admin.clear_requests()
    start_run(fleet, run_id=first["run_id"])
    second = wait_for_new_summary(first["run_id"])
    profile_calls = [r for r in seg_env.admin.requests(api="segment") if "segment_id:" in
                     r["path"]]
    assert profile_calls == []
    assert second["customers_upserted"] == first["customers_upserted"]


def test_wrong_voucherify_key_stops_the_run_naming_the_credential(
        seg_env, fleet, monkeypatch):
    monkeypatch.setenv("VOUCHERIFY_SECRET_KEY", "wrong")
    summary = run_migration(fleet)
    assert summary["status"] == "halted"
    assert "401" in summary["error"] and "VOUCHERIFY_SECRET_KEY" in summary["error"]
    assert "wrong" not in summary["error"]
    stats = seg_env.admin.stats()
    assert sum(stats["requests"]["voucherify"].values()) == 1  # the credential check
    assert stats["requests"]["segment"] == {}  # nothing fetched for nothing
    assert seg_env.admin.voucherify_customers()["customers"] == {}


def test_wrong_segment_token_stops_the_run_naming_the_credential(
        seg_env, fleet, monkeypatch):
    monkeypatch.setenv("SEGMENT_ACCESS_TOKEN", "wrong")
    summary = run_migration(fleet)
    assert summary["status"] == "halted" and "SEGMENT_ACCESS_TOKEN" in summary["error"]
    assert sum(seg_env.admin.stats()["requests"]["segment"].values()) == 1
    assert state.get_run(summary["run_id"])["error"] == summary["error"]


def test_429s_and_5xx_everything_arrives_within_budgets(
        seg_env, fleet, monkeypatch):
    admin = seg_env.admin
    admin.limits("segment", rps=100)
    admin.limits("voucherify", rpm=60)
    # The fleet's budgets sit a little under the services' limits, as an operator sets
    # them: on a CPU-starved machine requests reach the (equally starved) sandbox late and
    # bunched, and a budget of exactly the limit then shows ~1 request over it.
    monkeypatch.setenv("SEGMENT_MAX_RPS", "90")
    monkeypatch.setenv("VOUCHERIFY_MAX_RPM", "54")
    admin.faults("voucherify", burst_429=1, retry_after=2, error_rate=0.15)
    admin.faults("segment", error_rate=0.05, error_statuses=[500, 502, 503], burst_429=3)
    summary = run_migration(fleet, timeout=90)

    world = admin.world_profiles()
    identified = {user_id(p) for p in world if user_id(p)}
    assert set(admin.voucherify_customers()["customers"]) == identified
    assert summary["status"] == "finished" and summary["customers_upserted"] == len(identified)
    stats = admin.stats()
    assert stats["rejected"]["voucherify"]["rate"] >= 1  # the injected 429s happened
    assert stats["rejected"]["segment"]["rate"] >= 3
    assert stats["early_after_429"]["voucherify"] == 0
    assert stats["ignored_retry_after"]["voucherify"] == stats["ignored_retry_after"][
        "segment"] == 0
    assert stats["over_budget"]["segment"] == stats["over_budget"]["voucherify"] == 0
    # Segment: a slice fetches several profiles at once, so requests already on the wire
    # when the first 429 lands arrive inside its window (the sandbox counts them early);
    # what the fleet controls is that none is SENT once a 429 was seen, anywhere in it.
    segment = admin.requests(api="segment")
    for limited in (r for r in segment if r["status"] == 429):
        window = (limited["ts"] + IN_FLIGHT, limited["ts"] + 1.0 - IN_FLIGHT)
        assert not [r for r in segment if window[0] < r["ts"] < window[1]]
    errors = [r for r in admin.requests() if r["status"] and r["status"] >= 500]
    assert errors  # and the 5xx too


def test_dry_run_maps_and_reports_but_sends_nothing(seg_env, fleet,
                                                    monkeypatch):
    monkeypatch.setenv("DRY_RUN", "true")
    summary = run_migration(fleet)
    world = seg_env.admin.world_profiles()
    assert summary["dry_run"] is True
    assert summary["would_send"] == len([p for p in world if user_id(p)])
    assert summary["customers_sent"] == 0 and summary["calls"]["voucherify"] == 0
    assert seg_env.admin.stats()["requests"]["voucherify"] == {}
    assert summary["warnings"]


def test_status_task_reports_progress(seg_env, fleet):
    summary = run_migration(fleet)
    result = fleet.send_task("segment.status", args=(summary["run_id"],))
    wait_for(result.ready, "segment.status", 20)
    progress = result.result
    assert progress["slices_total"] == progress["slices_finished"] == 6
    assert progress["counts"]["upserted"] == summary["customers_upserted"]
    assert progress["summary"]["run_id"] == summary["run_id"]


def test_a_413_halves_the_bulk_and_everything_arrives(seg_env, fleet,
                                                     monkeypatch):
    import requests

    requests.post(f"{seg_env.url}/admin/voucherify/settings", json={"bulk_cap": 30},
                  timeout=10).raise_for_status()
    monkeypatch.setenv("SEGMENT_SLICE_SIZE", "60")
    monkeypatch.setenv("VOUCHERIFY_BULK_SIZE", "60")
    summary = run_migration(fleet)
    world = seg_env.admin.world_profiles()
    assert set(seg_env.admin.voucherify_customers()["customers"]) == \
        {user_id(p) for p in world if user_id(p)}
    assert summary["status"] == "finished" and summary["failed"] == []
    bulks = [r for r in seg_env.admin.requests(api="voucherify", method="POST")]
    assert [r["status"] for r in bulks].count(413) == 2  # one per slice, then halved
    accepted = [r for r in bulks if r["status"] == 202]
    assert all(len(r["body"]) <= 30 for r in accepted)
    assert sum(len(r["body"]) for r in accepted) == summary["customers_sent"]


def test_a_slice_out_of_retries_is_reported_and_the_run_still_ends(
        seg_env, fleet_app, fleet_worker, monkeypatch):
    from worker import retry
    from worker.segment_migration import tasks
    from worker.settings import get_settings

    # Fewer retries, shorter waits: the logic of giving up, on the in-process worker
    # (which shares these objects) rather than the shipped one.
    monkeypatch.setattr(retry, "IN_PLACE", retry.InPlace(attempts=1))
    monkeypatch.setattr(tasks.migrate_slice, "max_retries", 2)
    monkeypatch.setenv("MAX_RETRY_COUNTDOWN", "1")
    get_settings.cache_clear()
    admin = seg_env.admin
    admin.faults("segment", latency_ms=300)  # slices fetch for a while before upserting
    run_id = start_run(fleet_app)
    # Voucherify breaks for good once the plan's credential check has passed.
    wait_for(lambda: state.SEGMENT.progress(run_id)["parts_launched"], "slices handed over",
             20)
    admin.faults("voucherify", error_rate=1.0, error_statuses=[503])
    summary = wait_summary(run_id, timeout=60)

    assert summary["status"] == "finished_with_errors"
    gave_up = [s for s in summary["slices"]["failed"] if "gave up after retries" in s["error"]]
    assert gave_up
    for failed_slice in gave_up:
        ids = set(state.slice_ids(run_id, failed_slice["slice"]))
        reasons = {f["segment_id"]: f["reason"] for f in summary["failed"]
                   if f["segment_id"] in ids}
        assert set(reasons) == ids and all("503" in r for r in reasons.values())
    stored = admin.voucherify_customers()["customers"]
    assert summary["customers_upserted"] == len(stored)
    assert summary["profiles_seen"] == len(admin.world_profiles())

    # Fixed: the resume redoes exactly the slices that gave up.
    admin.clear_faults("voucherify")
    start_run(fleet_app, run_id=run_id)
    second = wait_for_new_summary(run_id)
    assert second["status"] == "finished" and second["failed"] == []
    assert second["customers_upserted"] == len(admin.voucherify_customers()["customers"])


def test_a_run_is_never_resumed_into_another_project(seg_env, fleet, monkeypatch):
    # A run's slices and checkpoints belong to its (Segment space, Voucherify project):
    # resumed under another pair it would skip what the new project never received.
    first = run_migration(fleet)
    seg_env.admin.clear_requests()
    monkeypatch.setenv("VOUCHERIFY_APPLICATION_ID", "another-project")
    result = fleet.send_task("segment.migrate", kwargs={"run_id": first["run_id"]})
    with pytest.raises(ValueError, match="start a new run") as refused:
        result.get(timeout=30)
    assert "another-project" in str(refused.value)
    assert seg_env.admin.requests(api="segment") == []
    assert seg_env.admin.requests(api="voucherify") == []
    assert state.get_summary(first["run_id"]) == first  # the old run is left as it was
