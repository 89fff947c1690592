"""TLS to Redis as an operator meets it: `syncfleet check` against a Redis that speaks only
TLS and wants a client certificate (the `tls_redis` fixture: certificates made at test
time), with the right CA, a wrong one and no client certificate; TLS files without
rediss://; Sentinel over TLS through a failover. A GIS cold start over TLS:
tests/gis/test_tls.py."""

from __future__ import annotations

import sys

import pytest

from tests.support import ROOT, wait_for
from tests.support.cli import syncfleet, syncfleet_json
from tests.support.tools import require_tls_redis
from worker import store
from worker.settings import get_settings

sys.path.insert(0, str(ROOT / "scripts"))
import redis_tls
from redis_sentinel import SentinelSet

# Out of the quick lane (make test-fast): real programs and real timeouts, seconds each.
pytestmark = pytest.mark.slow


def redis_check(**env: str) -> tuple[int, dict]:
    code, report = syncfleet_json("check", **env)
    return code, next(c for c in report["checks"] if c["name"] == "redis")


def test_check_tells_a_wrong_ca_and_a_missing_client_certificate_apart(
        tls_redis, tmp_path, monkeypatch):
    assert redis_check()[1]["status"] == "ok"

    other = redis_tls.other_authority(tmp_path / "other")
    code, check = redis_check(REDIS_TLS_CA_FILE=str(other))
    assert code == 1 and check["status"] == "failed"
    assert "certificate verify failed" in check["detail"]

    monkeypatch.delenv("REDIS_TLS_CERT_FILE")
    monkeypatch.delenv("REDIS_TLS_KEY_FILE")
    code, check = redis_check()
    assert code == 1 and check["status"] == "failed"  # the server wants a certificate


def test_tls_files_without_rediss_are_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", __file__)
    done = syncfleet("runs")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "REDIS_TLS_CA_FILE is set but REDIS_URL is not rediss://" in done.stderr


@pytest.mark.slow
def test_sentinels_over_tls_name_the_master_and_the_fleet_follows_a_failover(
        tmp_path, monkeypatch, other_fleet):
    """rediss:// with REDIS_SENTINELS: the sentinels, the master and the replica speak only
    TLS (replication too), with client certificates; a task's round trip (broker and
    result backend) works before and after the master dies."""
    require_tls_redis()
    certs = redis_tls.make_certificates(tmp_path / "certs")
    with SentinelSet(tmp_path / "sentinel", password="pw-tls-4", certs=certs) as redis_set:
        for name, value in redis_set.env().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        worker = other_fleet.worker("tls-sentinel-1")
        assert other_fleet.app.send_task("gis.runs").get(timeout=60) == []
        store.client().set("sf:tls-probe", "before")

        old_master = redis_set.kill_master()
        redis_set.wait_promoted(old_master)
        wait_for(lambda: other_fleet.revive() or store.client().get("sf:tls-probe"),
                 "the fleet's client on the new master", 60)
        answer = wait_for(lambda: other_fleet.revive() or _round_trip(other_fleet.app),
                          "a task's round trip through the new master", 120)
        assert answer == {"runs": []}
        assert store.client().connection_pool.master_address[1] != old_master
        assert worker.died() is None and not other_fleet.restarts, other_fleet.restarts


def _round_trip(app) -> dict | None:
    try:
        return {"runs": app.send_task("gis.runs").get(timeout=10)}
    except Exception:  # the worker still reconnecting: ask again
        return None
