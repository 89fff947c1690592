"""`syncfleet gis explain person|application ID` for real: a scan by the shipped worker,
then each record's explanation compared with what the sandbox's customer.io received."""

from __future__ import annotations

from tests.support.cli import syncfleet, syncfleet_json
from tests.support.gis import Truth, scan
from worker.gis_sync import explain
from worker.settings import get_settings


def events_received(admin) -> dict[str, set[tuple[str, str, int]]]:
    """application id -> {(event id, name, timestamp)} as customer.io recorded them."""
    out: dict[str, set[tuple[str, str, int]]] = {}
    for events in admin.customerio_events()["events"].values():
        for e in events:
            out.setdefault(e["data"]["application_id"], set()).add(
                (e["id"], e["name"], e["timestamp"]))
    return out


def as_set(events: list[dict]) -> set[tuple[str, str, int]]:
    return {(e["id"], e["name"], e["timestamp"]) for e in events}


def test_an_explanation_is_what_customerio_received_and_names_what_differs_now(
        fleet, gis_world, monkeypatch):
    # The cold start sends every history (the world goes two years back): each event the
    # explanation names must have arrived.
    monkeypatch.setenv("COLD_START_EVENT_WINDOW", str(3 * 365 * 86400))
    admin = gis_world.admin
    truth = Truth(admin)
    run = scan(fleet)
    profiles = admin.customerio_profiles()["profiles"]
    received = events_received(admin)

    # Every application: the events its accepted step implies are exactly those
    # customer.io received (ids, names, timestamps).
    settings = get_settings()
    checked = 0
    for aid in truth.apps:
        found = explain.application(aid, settings)
        assert as_set(found["sent"]) == received.get(aid, set()), aid
        assert all(e["certain"] for e in found["sent"])
        if found["sent"]:
            checked += 1
            assert found["last_run"]["run_id"] == run["run_id"]
            assert found["pending"] == []  # nothing moved since the scan
    assert checked > 100

    # One application with events, through the CLI: the same story, exactly.
    aid = max(received, key=lambda a: (len(received[a]), a))
    code, shown = syncfleet_json("gis", "explain", "application", aid)
    assert code == 0, shown
    assert as_set(shown["sent"]) == received[aid]
    assert all(e["certain"] for e in shown["sent"])
    assert shown["accepted"]["known"] and shown["accepted"]["step"] == shown["now"]["step"]
    assert shown["last_run"] == {"run_id": run["run_id"], "kind": "scan",
                                 "status": run["status"], "started_at": run["started_at"],
                                 "finished_at": run["finished_at"], "kept": True}
    assert shown["failed"] is None and shown["person_accepted"] is True

    # Its person: every attribute is what customer.io holds, nothing differs.
    pid = truth.apps[aid]["person_id"]
    code, person = syncfleet_json("gis", "explain", "person", pid)
    assert code == 0 and person["differs"] == [] and person["accepted"]["known"]
    assert person["attributes"] and all(a["accepted"] == "same"
                                        for a in person["attributes"].values())
    assert {n: a["now"] for n, a in person["attributes"].items()} == \
        {n: v for n, v in profiles[pid].items() if n in person["attributes"]}
    assert person["last_run"]["run_id"] == run["run_id"]

    # Edited in GIS: the explanation names what changed (full_name follows last_name),
    # and sends nothing.
    calls = len(admin.requests(api="customerio"))
    admin.edit_person(pid, last_name="Explained-Zed")
    code, edited = syncfleet_json("gis", "explain", "person", pid)
    assert code == 0 and sorted(edited["differs"]) == ["full_name", "last_name"]
    assert edited["attributes"]["last_name"] == {"now": "Explained-Zed", "accepted": "differs"}
    assert len(admin.requests(api="customerio")) == calls
    table = syncfleet("gis", "explain", "person", pid)
    assert table.returncode == 0 and "last_name, full_name" in table.stdout, table.stdout

    # A record the scan could not use: its failed entry and the reason.
    bad = next(a for a in truth.apps.values() if not truth.app_usable(a))
    code, failed = syncfleet_json("gis", "explain", "application", bad["id"])
    assert code == 0 and failed["failed"]["list"] == "failed"
    assert "programme" in failed["failed"]["reason"] and failed["failed"]["attempts"] == 1
    assert failed["accepted"]["known"] is False and failed["sent"] == []


def test_an_id_nobody_knows_is_one_line_and_exit_1(gis_world, redis_client):
    done = syncfleet("gis", "explain", "person", "987654321")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == ("syncfleet: GIS has no person 987654321, and the sync "
                                   "knows nothing of it")
    code, shown = syncfleet_json("gis", "explain", "application", "987654321")
    assert code == 1 and shown["error"]["code"] == "not_found"


def test_a_run_reference_rides_with_the_state_and_older_values_still_read(redis_client):
    from worker.gis_sync import state

    ws, digests = "ws-test", state.digests({"email": "a@b.org", "first_name": "Ann"})
    at = 1_800_000_123
    state.save_sent(ws, {"p1": digests}, state.run_ref("0f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
                                                       at))
    state.save_steps(ws, {"a1": -2}, state.run_ref("backfill-17", at))
    assert state.sent(ws, ["p1"]) == {"p1": digests}
    assert state.accepted(ws, "p1") == (digests, state.Ref(at, "567890ab"))
    assert state.steps(ws, ["a1"]) == {"a1": -2}
    assert state.step_accepted(ws, "a1") == (-2, state.Ref(at, "kfill-17"))
    # Written before references existed (or outside a run): read as they were.
    redis_client.hset(state.ws_key(ws, "sent"), "p2", state.encode(digests))
    redis_client.hset(state.ws_key(ws, "steps"), "a2", "3")
    assert state.accepted(ws, "p2") == (digests, None)
    assert state.step_accepted(ws, "a2") == (3, None)
    state.save_steps(ws, {"a3": 1}, state.run_ref(None, at))
    assert state.step_accepted(ws, "a3") == (1, state.Ref(at, None))
