"""Failed records end: retried a bounded number of times with growing waits, then parked
as dead with their reason; only kind and id are kept (real Redis)."""

from __future__ import annotations

import json
import time

from worker.gis_sync import failed

POLICY = failed.Policy(interval=300, max_attempts=3, max_age=86400)
WS = "ws-test"


def fail(record_id: str, reason: str = "customer.io refused identify: 400") -> None:
    failed.record(WS, [{"kind": "person", "id": record_id, "reason": reason}], POLICY)


def test_each_failure_waits_longer_then_the_record_is_dead(redis_client):
    fail("7")
    first = failed.failing(WS)["person:7"]
    assert first["attempts"] == 1 and 299 < first["next_at"] - first["last_at"] <= 300
    fail("7")
    second = failed.failing(WS)["person:7"]
    assert second["attempts"] == 2 and 599 < second["next_at"] - second["last_at"] <= 600
    assert second["first_at"] == first["first_at"]
    fail("7", reason="still refused")
    assert "person:7" not in failed.failing(WS)
    assert failed.dead(WS)["person:7"]["attempts"] == 3
    assert failed.dead(WS)["person:7"]["reason"] == "still refused"
    assert failed.due(WS, 10, now=time.time() + 10**6) == []  # the dead are not retried


def test_a_record_failing_for_too_long_is_dead_whatever_its_attempts(redis_client):
    fail("8")
    entry = failed.failing(WS)["person:8"]
    old = {**entry, "first_at": entry["first_at"] - 2 * 86400}
    redis_client.hset(failed._failed(WS), "person:8", json.dumps(old))
    fail("8")
    assert "person:8" in failed.dead(WS) and "person:8" not in failed.failing(WS)


def test_only_kind_and_id_are_kept_and_a_sync_clears_them(redis_client):
    failed.record(WS, [{"kind": "application", "id": "5", "reason": "x",
                    "record": {"id": "5", "email": "ann@example.org"}}], POLICY)
    assert "ann@example.org" not in str(redis_client.hgetall(failed._failed(WS)))
    failed.clear(WS, "application", ["5"])
    assert failed.sizes(WS) == {"failed": 0, "dead": 0}


def test_drop_one_or_all_for_good(redis_client):
    fail("1")
    fail("2")
    for _ in range(3):
        fail("3")
    assert failed.sizes(WS) == {"failed": 2, "dead": 1}
    assert failed.drop(WS, "person:1") and not failed.drop(WS, "person:1")
    assert failed.drop(WS, "3")  # a bare id: either kind, dead ones too
    assert failed.sizes(WS) == {"failed": 1, "dead": 0}
    assert failed.drop_all(WS) == 1 and failed.sizes(WS) == {"failed": 0, "dead": 0}
    assert failed.due(WS, 10) == []


def test_the_longest_waiting_are_due_first(redis_client):
    for record_id in ("a", "b", "c"):
        fail(record_id)
        time.sleep(0.002)  # distinct due times
    later = time.time() + POLICY.interval + 1
    assert [rid for _, rid in failed.due(WS, 2, now=later)] == ["a", "b"]
