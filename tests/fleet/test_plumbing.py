"""The fleet's plumbing for real: messages through Redis, a real worker, real results."""

from __future__ import annotations

from celery import chord


def test_task_round_trip_through_redis(fleet_app, fleet_worker):
    result = fleet_app.send_task("tests.add", args=(2, 3))
    assert result.get(timeout=20) == 5
    # The result really lives in the Redis backend, not in this process.
    assert fleet_app.AsyncResult(result.id).state == "SUCCESS"


def test_apply_async_uses_declared_queue(fleet_app, fleet_worker):
    from tests.support.tasks import add

    result = add.apply_async((20, 22), queue="default")
    assert result.get(timeout=20) == 42


def test_chord_through_redis_backend(fleet_app, fleet_worker):
    from tests.support.tasks import add, total

    header = [add.s(i, i) for i in range(10)]
    result = chord(header)(total.s())
    assert result.get(timeout=30) == sum(2 * i for i in range(10))
