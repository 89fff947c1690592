"""A GIS cold start against a Redis that speaks only TLS and wants a client certificate,
with certificates made at test time (the `tls_redis` fixture, scripts/redis_tls.py): the
broker, the result backend, the fleet's own client and the `limits` windows all go over
it. The settings are a user's: REDIS_URL=rediss://..., REDIS_TLS_CA_FILE,
REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE, REDIS_PASSWORD."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support import wait_for
from tests.support.gis import Truth, assert_clean, received
from worker import store
from worker.gis_sync.run_state import GIS
from worker.ratelimit import Budget, per_minute


@pytest.mark.slow
def test_a_gis_cold_start_runs_over_tls_with_a_client_certificate(
        gis_world, tls_redis, other_fleet):
    admin = gis_world.admin
    truth = Truth(admin)
    worker = other_fleet.worker("tls-1")  # answers ping: the broker over TLS
    run_id = other_fleet.send_task("gis.scan").id
    run = wait_for(lambda: GIS.summary(run_id), f"the summary of run {run_id}", 120,
                   alive=[worker])

    assert run["status"] == "finished_with_errors"  # unusable applications only
    unusable = {a["id"] for a in truth.apps.values() if not truth.app_usable(a)}
    assert {e["id"] for e in run["errors"]} == unusable
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    counts = Counter(e for events in received(admin).values() for e in events)
    assert counts and max(counts.values()) == 1
    assert_clean(admin)
    # Each part reported through its chord (the result backend over TLS).
    assert run["parts"] >= 3 and not run.get("parts_redone")
    # The `limits` windows (budgets per minute and hour) live in this Redis too; the server
    # has no plain port, so each of these calls went over TLS.
    Budget("tls-probe", per_minute(10)).acquire()
    assert list(store.client().scan_iter("sf:limits*tls-probe*"))
