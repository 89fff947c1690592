"""What an autoscaler counts (docs/scaling.md): messages waiting in the queues, held by
workers (delivered, not acknowledged) and parked, served by the exporter. A message is
taken for real here, through kombu, and not acknowledged."""

from __future__ import annotations

import time

from worker import exporter


def gauges() -> dict[str, float]:
    return {sample.name: sample.value for family in exporter.fleet_gauges(time.time())
            for sample in family.samples if not sample.labels}


def test_a_message_a_worker_took_and_has_not_acknowledged_counts_as_held(fleet_app,
                                                                          redis_client):
    before = gauges()["syncfleet_held_messages"]
    with fleet_app.connection_for_write() as connection:
        probe = connection.SimpleQueue("held-probe")
        try:
            probe.put({"probe": 1})
            message = probe.get(timeout=10)  # delivered, not acknowledged: kombu holds it
            assert gauges()["syncfleet_held_messages"] == before + 1
            message.ack()
            assert gauges()["syncfleet_held_messages"] == before
        finally:
            probe.clear()
            probe.close()
    redis_client.delete("held-probe", "_kombu.binding.held-probe")
