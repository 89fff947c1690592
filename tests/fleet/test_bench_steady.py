"""The steady-state benchmark's arithmetic (bench/steady_metrics.py) and the sandbox's
report of what an advance edited: no processes, no timing."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bench.fleet import beat_command, sandbox_command
from bench.steady_metrics import (
    Change,
    KeySeen,
    beyond_refresh,
    changes_of,
    describe,
    expects_event,
    family,
    footprint,
    latencies,
    percentile,
)
from sandbox.worlds.gis import World


def test_percentile_is_nearest_rank_and_a_missing_arrival_is_infinitely_late() -> None:
    values = [float(v) for v in range(1, 21)]  # 1 .. 20
    assert percentile(values, 50) == 10
    assert percentile(values, 95) == 19
    assert percentile([*values[:19], None], 95) == 19
    assert percentile([*values[:18], None, None], 95) == math.inf
    assert percentile([3.0], 95) == 3
    assert math.isnan(percentile([], 50))


def test_footprint_is_size_times_lifetime_over_the_time_measured() -> None:
    started, ended = 1000.0, 1100.0  # 100 s measured
    keys = [
        KeySeen("celery-task-meta-1f0e4a8c-4b8e-4c43-9c4f-2b5d9a7e0c11", 1010, 1000,
                ttl_at_end=86400 - 90),  # a day's TTL: lifetime 86,400 s
        KeySeen("sf:lock:gis-scan:1340:ws", 1020, 200, gone_at=1030),  # 10 s
        KeySeen("sf:gis:run:01JABCDEFGHJKMNPQRSTVWXYZ0:notes", 1050, 300,
                ttl_at_end=-1),  # no TTL: its 50 s so far, and growth
    ]
    fp = footprint(keys, started, ended)
    assert fp.bytes == pytest.approx((1000 * 86400 + 200 * 10 + 300 * 50) / 100)
    assert (fp.growth_keys, fp.growth_bytes) == (1, 300)
    assert list(fp.by_family) == ["celery-task-meta-*", "sf:gis:run:*:notes",
                                  "sf:lock:gis-scan:*:ws"]
    assert fp.by_family["celery-task-meta-*"].bytes == pytest.approx(1000 * 864)


def test_a_key_family_hides_ids() -> None:
    assert family("sf:gis:sent:1340:site") == "sf:gis:sent:*:site"
    assert family("_kombu.binding.gis") == "_kombu.binding.gis"


def test_which_moves_and_edits_customerio_must_see() -> None:
    assert expects_event("applied", "accepted") and expects_event("accepted", "realized")
    assert expects_event("approved", "withdrawn")
    assert not expects_event("approved", "accepted")  # backward
    assert not expects_event("approved", "approval_broken")  # off the ladder
    assert not expects_event("approval_broken", "approved")  # from off the ladder: unknown
    advance = {"edits": [
        {"id": "1", "home_lc": "1340", "field": "status", "from": "a", "to": "b"},
        {"id": "2", "home_lc": "99", "field": "nps_score", "from": 3, "to": 4},
        {"id": "3", "home_lc": "1340", "field": "status", "from": "a", "to": "a"}],
        "moves": [{"id": "8", "from": "applied", "to": "accepted"},
                  {"id": "9", "from": "approved", "to": "accepted"}]}
    found, silent = changes_of(advance, 50.0, "1340")
    assert found == [Change("person", "1", 50.0, "status"),
                     Change("incoming person", "2", 50.0, "nps_score"),
                     Change("application", "8", 50.0)]
    assert silent == 2


def test_a_change_arrives_with_the_first_accepted_request_that_carries_it() -> None:
    changes = [Change("person", "1", 100.0, "status"), Change("application", "8", 100.0),
               Change("incoming person", "2", 100.0, "nps_score")]
    batch = {"batch": [
        {"type": "person", "identifiers": {"id": "1"}, "action": "identify",
         "attributes": {"status": "b"}},
        {"type": "person", "identifiers": {"id": "5"}, "action": "event", "name": "x",
         "attributes": {"application_id": "8"}}]}
    recorded = [
        {"path": "/customerio/api/v2/batch", "status": 200, "ts": 90.0, "body": batch},
        {"path": "/customerio/api/v2/batch", "status": 429, "ts": 103.0, "body": batch},
        {"path": "/customerio/api/v2/batch", "status": 207, "ts": 107.0, "body": batch},
        {"path": "/customerio/api/v1/customers/2", "status": 200, "ts": 104.0,
         "body": {"last_name": "X"}},  # another attribute: not this change
    ]
    assert latencies(changes, recorded) == [7.0, 7.0, None]
    recorded.append({"path": "/customerio/api/v1/customers/2", "status": 200, "ts": 130.0,
                     "body": {"nps_score": 4}})
    recorded.append({"path": "/customerio/api/v1/customers/5/events", "status": 200,
                     "ts": 105.0, "body": {"name": "x", "data": {"application_id": "8"}}})
    assert latencies(changes, recorded) == [7.0, 5.0, 30.0]


def test_an_advance_says_what_each_edit_changed() -> None:
    world = World(1, 40, 120, datetime.now(UTC))
    result = world.advance(0.05, 0.5, seed=3)
    assert len(result["edits"]) == len(result["people_edited"]) == 20
    for edit in result["edits"]:
        person = world.find_person(edit["id"])
        assert getattr(person, edit["field"]) == edit["to"]
        assert edit["home_lc"] == str(person.home_lc.id)


def test_the_benchmark_runs_the_procfile_commands() -> None:
    assert beat_command("/tmp/b")[2:] == ["celery", "-A", "worker", "beat", "--schedule",
                                          "/tmp/b"]
    command = sandbox_command(8123)
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--people") + 1] == "500"


def incoming_explained(open_applications: dict, failed: dict | None = None) -> dict:
    """`gis explain person --json` of an incoming applicant whose status was edited."""
    return {"kind": "person", "accepted": {"known": True, "at": "2026-12-06T10:52:29Z"},
            "failed": failed, "differs": ["status"],
            "incoming": {"open_applications": open_applications,
                         "refreshed": bool(open_applications), "refresh_every_s": 900,
                         "last_refresh_at": None}}


def test_an_edit_the_refresh_does_not_read_by_design_is_told_apart() -> None:
    edit = Change("incoming person", "3003045", 0.0, "status")
    ended = incoming_explained({})
    assert beyond_refresh(edit, ended)
    assert describe(edit, ended) == (
        "incoming person 3003045 (status): accepted 2026-12-06T10:52:29Z; not failed; "
        "differs now: status; incoming refresh: no, open applications none")
    # Not by design: the person is refreshed, failed, or the edit was sent meanwhile.
    assert not beyond_refresh(edit, incoming_explained({"1340": ["8000001"]}))
    assert not beyond_refresh(edit, incoming_explained(
        {}, {"list": "failed", "reason": "customer.io answered 400", "attempts": 2}))
    assert not beyond_refresh(Change("incoming person", "3003045", 0.0, "nps_score"), ended)
    assert not beyond_refresh(Change("person", "3003045", 0.0, "status"), ended)
    assert not beyond_refresh(edit, None)
