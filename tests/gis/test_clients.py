"""The clients and the sync functions against the sandbox over HTTP (no Celery needed):
customer.io refusals (400 and 207 per item), GraphQL errors, GIS records read by id."""

from __future__ import annotations

import pytest

from tests.support.clock import ago, iso
from tests.support.gis import scope, workspace
from worker.clients.customerio import CustomerIo, event_item, identify_item
from worker.clients.gis import APPLICATIONS_BY_ID, PEOPLE_BY_ID, GisClient, GisQueryError
from worker.gis_sync import failed as failed_list
from worker.gis_sync import planning, run_state, state, sync
from worker.gis_sync.ladder import event_id
from worker.settings import get_settings

REFUSED = "103"  # customer.io answers 400 to this person (a sandbox knob)


def person(pid: str) -> dict:
    return {"id": pid, "email": f"p{pid[:10]}@example.org", "first_name": "Ann",
            "created_at": iso(ago(days=300)), "updated_at": iso(ago(days=299))}


def application(aid: str, pid: str) -> dict:
    # Applied an hour before the run: well inside the cold-start window on any day, so
    # its event is sent (or refused), never dropped as too old.
    applied = iso(ago(hours=1))
    return {"id": aid, "status": "applied", "created_at": applied,
            "updated_at": applied, "person": person(pid),
            "opportunity": {"id": "5", "programme": {"id": "7", "short_name": "GV",
                                                     "short_name_display": "GV"}}}


def test_batch_maps_207_item_errors_back_to_the_items(sandbox_env):
    cio = CustomerIo(get_settings())
    event = {"id": event_id("1", "GVapplied", 1767225600), "name": "GVapplied",
             "timestamp": 1767225600, "data": {"application_id": "1"}}
    items = [identify_item("1", {"first_name": "Ann"}),
             identify_item("2", {"bad": {"nested": "object"}}),
             event_item("1", event),
             identify_item("3", {"first_name": "Bo"})]
    errors = cio.batch(items)
    assert [e.index for e in errors] == [1]
    assert errors[0].reason
    profiles = sandbox_env.admin.customerio_profiles()["profiles"]
    assert set(profiles) == {"1", "3"}
    assert sandbox_env.admin.customerio_events()["events"]["1"][0]["id"] == event["id"]


def test_customerio_refusal_is_recorded_and_the_rest_syncs(sandbox_env):
    # One request per record: the sandbox answers 400 to the refused person's identify
    # and events. (The 207 per-item path is covered above.)
    sandbox_env.admin.customerio_refuse([REFUSED])
    job = planning.Job(get_settings(), run_id="refusals", use_batch=False)
    run_state.start_run("refusals", "test", scope())
    people = [person("101"), person(REFUSED), person("102")]
    apps = [application("201", "101"), application("202", REFUSED)]
    counts = sync.sync_records(people, apps, job)
    assert counts["people_updated"] == 2 and counts["events_sent"] == 1
    assert counts.get("events_skipped", 0) == 0  # nothing dropped as outside the window
    profiles = sandbox_env.admin.customerio_profiles()["profiles"]
    assert set(profiles) == {"101", "102"}
    events = sandbox_env.admin.customerio_events()["events"]
    assert list(events) == ["101"] and events["101"][0]["name"] == "GVapplied"
    failed = failed_list.failing(workspace())
    assert set(failed) == {f"person:{REFUSED}", "application:202"}
    assert "refused" in failed[f"person:{REFUSED}"]["reason"]
    # Kept for a retry by id only (the record is read again from GIS then), due after a
    # scan interval, one attempt counted.
    entry = failed["application:202"]
    assert set(entry) == {"reason", "first_at", "last_at", "attempts", "next_at"}
    assert entry["attempts"] == 1 and entry["next_at"] > entry["last_at"]
    # Remembered only what customer.io accepted.
    assert state.steps(workspace(), ["201", "202"]) == {"201": 1, "202": None}
    assert state.sent(workspace(), [REFUSED])[REFUSED] is None


def test_a_backfills_failures_are_listed_in_its_run_and_not_on_the_scans_failed_list(
        sandbox_env):
    # A backfill is a re-send asked for by hand: what it could not send is in its summary,
    # and spends none of a record's attempts on the failed list (that would make it dead
    # for the scans). A scan's failures go on the list.
    from worker.gis_sync.planning import BACKFILL
    from worker.gis_sync.run_state import GIS

    sandbox_env.admin.customerio_refuse([REFUSED])
    run_state.start_run("backfill-1", "backfill", scope(), mode=BACKFILL)
    job = planning.Job(get_settings(), run_id="backfill-1", mode=BACKFILL)
    counts = sync.sync_records([person("101"), person(REFUSED)], [], job)
    assert counts["people_failed"] == 1 and counts["people_updated"] == 1
    gave_up = sync.give_up([person("105")], [], "gave up after retries: 503", job)
    assert gave_up["people_failed"] == 1
    assert failed_list.sizes(workspace()) == {"failed": 0, "dead": 0}
    summary = GIS.finish_if_complete("backfill-1")
    assert summary["status"] == "finished_with_errors" and summary["people_failed"] == 2
    assert {(e["id"], e["reason"].split(":")[0]) for e in summary["errors"]} == {
        (REFUSED, "customer.io refused identify"), ("105", "gave up after retries")}

    run_state.start_run("scan-1", "scan", scope())
    sync.give_up([person("105")], [], "gave up after retries: 503",
                 planning.Job(get_settings(), run_id="scan-1"))
    assert set(failed_list.failing(workspace())) == {"person:105"}


def test_graphql_errors_raise_a_clear_error(sandbox_env, monkeypatch):
    monkeypatch.setenv("GIS_PAGE_SIZE", "500")
    client = GisClient(get_settings())
    client.page_size = 501  # the API caps per_page at 500
    with pytest.raises(GisQueryError, match="per_page"):
        list(client.people(1340))


def test_a_run_whose_chord_never_finished_gets_an_incomplete_summary(redis_client):
    # The broker busy with other work (a queued message), so the recovery cannot tell a
    # lost message from one still waiting: after STALE_AFTER the run is closed.
    from worker import recovery, run_history
    from worker.gis_sync.run_state import GIS

    run_state.start_run("lost-run", "scan", state.Scope(1340, "ws-test"))
    GIS.count("lost-run", {"people_seen": 7})
    GIS.launch("lost-run", {"people:0": ["person:1"]})
    assert GIS.idle(60) == []
    redis_client.hset("unacked", "test-held", "{}")  # a message a worker holds
    try:
        redis_client.zadd(GIS.open_index(), {"lost-run": 1})  # idle long ago
        assert recovery.look_after() == []
    finally:
        redis_client.hdel("unacked", "test-held")
    summary = run_history.recent(1, job="gis")[0]
    assert (summary["run_id"], summary["status"], summary["people_seen"]) == (
        "lost-run", "incomplete", 7)
    assert GIS.idle(0) == []


def test_a_429_from_the_token_endpoint_is_rate_limited_not_a_bad_credential(
        sandbox_env, monkeypatch):
    # The sandbox's GIS answers 401 (expired token); the auth service, a tiny real HTTP
    # server here, is busy. That is "retry later", never "check GIS_REFRESH_TOKEN".
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from worker.http import RateLimited

    class Busy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(429)
            self.send_header("Retry-After", "7")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GIS_AUTH_URL", f"http://127.0.0.1:{server.server_port}/token")
        get_settings.cache_clear()
        sandbox_env.admin.gis_expire_token()
        with pytest.raises(RateLimited) as caught:
            GisClient(get_settings()).person("1")
        assert caught.value.retry_after == 7.0
    finally:
        server.shutdown()
        server.server_close()


def test_a_batch_request_refused_as_a_whole_refuses_its_items(sandbox_env):
    # Before: the ClientError failed the sync task at once and its records were lost;
    # now each item is refused, as a per-record send would be, and kept for retry.
    sandbox_env.admin.faults("customerio", error_rate=1.0, error_statuses=[400])
    job = planning.Job(get_settings(), run_id="refused-batch", use_batch=True)
    run_state.start_run("refused-batch", "test", scope())
    counts = sync.sync_records([person("301"), person("302")], [application("401", "301")],
                               job)
    assert counts["people_failed"] == 2 and counts.get("people_updated", 0) == 0
    failed = failed_list.failing(workspace())
    assert {"person:301", "person:302", "application:401"} <= set(failed)
    assert "400" in failed["person:301"]["reason"]
    assert failed["person:301"]["attempts"] == 1


def test_records_read_by_id_in_one_call_per_kind_a_gone_one_answering_none(sandbox_env):
    # The retries' read: aliased person(id) / getApplication(id) fields in one query each,
    # one answer per id in order, None where GIS has no such record (a null alias).
    admin = sandbox_env.admin
    app = admin.world_applications()[0]
    client = GisClient(get_settings())
    admin.clear_requests()
    apps = client.by_id(APPLICATIONS_BY_ID, [app["id"], "999999902", app["id"]])
    people = client.by_id(PEOPLE_BY_ID, ["999999901", app["person_id"]])
    assert [a and a["id"] for a in apps] == [app["id"], None, app["id"]]
    assert apps[0] == client.application(app["id"])  # the single read's fields, same answer
    assert apps[0]["person"]["id"] == app["person_id"]
    assert [p and p["id"] for p in people] == [None, app["person_id"]]
    assert people[1] == client.person(app["person_id"])
    calls = admin.requests(api="gis")
    assert [c["body"]["query"].split("(")[0] for c in calls[:2]] == [
        "query ApplicationsById", "query PeopleById"]
    assert [c["status"] for c in calls[:2]] == [200, 200]
    assert client.by_id(APPLICATIONS_BY_ID, []) == []  # no ids: no call
