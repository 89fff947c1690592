"""Every alert rule of ops/prometheus/alerts.yml, for real: the fleet is driven into the
rule's situation (the exporter stopped, Redis stopped, no worker, no successful scan, a
wrong key, failing records, a 429 storm, a backlog), the exporter is scraped as
Prometheus scrapes it, and the rule's expression, evaluated over those scrapes
(tests/support/promql.py), is true; in the healthy fleet it is false."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from tests.support import ROOT, wait_for
from tests.support.exporter import Exporter, exporter, free_port
from tests.support.gis import scan
from tests.support.promql import Scrape, firing
from worker import health, heartbeat
from worker.exporter import METRIC_NAMES

start = __import__("redis_server").start  # scripts/, put on the path by tests.support.exporter

RULES = {rule["alert"]: rule for group in yaml.safe_load(
    (ROOT / "ops" / "prometheus" / "alerts.yml").read_text())["groups"]
    for rule in group["rules"]}
TESTED = {"SyncfleetExporterDown", "SyncfleetRedisDown", "SyncfleetNoWorker",
          "SyncfleetGisSyncStale", "SyncfleetRunHalted", "SyncfleetFailedRecordsTooMany",
          "SyncfleetFailedRecordsGrowing", "SyncfleetRateLimitStorm", "SyncfleetQueueBacklog"}


def fires(alert: str, now: Scrape, before: Scrape | None = None) -> dict:
    return firing(RULES[alert]["expr"], now, before)


def test_every_rule_is_tested_and_names_only_served_series():
    assert set(RULES) == TESTED
    for rule in RULES.values():
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_rules_bounds_are_those_of_syncfleet_health():
    # The same bound, served by the exporter from the same code, and no extra wait: the
    # alert fires when `syncfleet health` turns unhealthy.
    assert "syncfleet_gis_stale_after_seconds" in RULES["SyncfleetGisSyncStale"]["expr"]
    assert "syncfleet_gis_failed_records_limit" in RULES["SyncfleetFailedRecordsTooMany"]["expr"]
    for alert in ("SyncfleetGisSyncStale", "SyncfleetRunHalted",
                  "SyncfleetFailedRecordsTooMany"):
        assert "for" not in RULES[alert], alert
    assert health.STALE_SCANS == 3
    # A dead worker counts as dead after ALIVE_FOR; the rule waits a little beyond it.
    assert RULES["SyncfleetNoWorker"]["for"] == "2m" and heartbeat.ALIVE_FOR <= 120


def test_exporter_down(redis_url, tmp_path):
    running = Exporter(tmp_path)
    running.wait_answering()
    try:
        assert fires("SyncfleetExporterDown", running.scrape()) == {}
    finally:
        running.process.stop()
    assert fires("SyncfleetExporterDown", running.scrape())  # nothing answers: up == 0


def test_redis_down_from_the_start_then_up_then_down_again(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with exporter(tmp_path, REDIS_URL=url) as running:  # starts without Redis
        scraped = running.scrape()
        assert scraped.series[("up", frozenset({"job": "syncfleet",
                                                "instance": "syncfleet-host:9808"}.items()))]
        assert fires("SyncfleetRedisDown", scraped)
        assert scraped.names() == {"up", "syncfleet_redis_up"}  # the rest is absent
        server = start(port, str(tmp_path), persist=False)
        try:
            assert fires("SyncfleetRedisDown", running.scrape()) == {}  # recovered by itself
            assert "syncfleet_queue_depth" in running.scrape().names()
        finally:
            server.terminate()
            server.wait(10)
        for _ in range(3):
            assert running.get().status_code == 200
            assert fires("SyncfleetRedisDown", running.scrape())
    log = running.process.log()
    assert "Traceback" not in log
    assert log.count("Redis unreachable") == 2  # one line per outage, not per scrape
    assert log.count("Redis is back") == 1


def test_no_worker(worker_process, tmp_path):
    with exporter(tmp_path) as running:
        wait_for(lambda: fires("SyncfleetNoWorker", running.scrape()), "no worker", 90)
        worker_process(name="alive")
        wait_for(lambda: not fires("SyncfleetNoWorker", running.scrape()),
                 "the live worker to count", 60)


def test_a_fleet_that_never_scanned_is_stale_after_the_same_bound(
        fleet, gis_world, monkeypatch, tmp_path):
    monkeypatch.setenv("GIS_SCAN_INTERVAL", "2")  # stale after 3 x 2 s
    with exporter(tmp_path) as running:
        stale = wait_for(lambda: fires("SyncfleetGisSyncStale", running.scrape()),
                         "the stale rule without any success", 60)
        assert [dict(labels)["lc"] for labels in stale] == ["1340"]
        assert "syncfleet_gis_last_success_timestamp_seconds" not in running.scrape().names()
        scan(fleet)
        assert fires("SyncfleetGisSyncStale", running.scrape()) == {}
        wait_for(lambda: fires("SyncfleetGisSyncStale", running.scrape()),
                 "the stale rule after the last success", 60)


def test_a_run_halted_by_a_wrong_key(fleet, gis_world, monkeypatch, tmp_path):
    good_key = os.environ["CUSTOMERIO_API_KEY"]
    with exporter(tmp_path) as running:
        monkeypatch.setenv("CUSTOMERIO_API_KEY", "wrong-key")
        assert scan(fleet)["status"] == "halted"
        halted = fires("SyncfleetRunHalted", running.scrape())
        assert [dict(labels)["sync"] for labels in halted] == ["gis"]
        monkeypatch.setenv("CUSTOMERIO_API_KEY", good_key)
        assert scan(fleet)["status"] != "halted"
        assert fires("SyncfleetRunHalted", running.scrape()) == {}


def test_failed_records_too_many_and_growing(fleet, gis_world, tmp_path):
    with exporter(tmp_path, HEALTH_MAX_FAILED="0") as running:
        before = running.scrape()
        assert fires("SyncfleetFailedRecordsTooMany", before) == {}
        scan(fleet)  # the world holds records customer.io cannot take
        after = running.scrape()
        assert fires("SyncfleetFailedRecordsTooMany", after)
        assert fires("SyncfleetFailedRecordsGrowing", after, before)
        assert fires("SyncfleetFailedRecordsGrowing", running.scrape(), after) == {}
    with exporter(tmp_path) as running:  # HEALTH_MAX_FAILED as shipped: 1000
        assert fires("SyncfleetFailedRecordsTooMany", running.scrape()) == {}


def test_a_429_storm(fleet, gis_world, tmp_path):
    admin = gis_world.admin
    with exporter(tmp_path) as running:
        admin.faults("customerio", burst_429=60, retry_after=1)
        result = fleet.send_task("gis.scan")

        def limited(scrape: Scrape) -> float:
            return sum(v for (name, _), v in scrape.series.items()
                       if name == "syncfleet_rate_limited_total")

        def scrape_once(at_least: float) -> Scrape | None:
            scraped = running.scrape()
            return scraped if limited(scraped) >= at_least else None

        before = wait_for(lambda: scrape_once(1), "the first 429", 60)
        now = wait_for(lambda: scrape_once(limited(before) + 20), "twenty more 429s", 90)
        storm = fires("SyncfleetRateLimitStorm", now, before)
        assert [dict(labels)["api"] for labels in storm] == ["customerio"], storm
        assert result.get(timeout=60)["status"] == "started"
        admin.clear_faults("customerio")
        quiet = running.scrape()
        time.sleep(2)  # a rate needs two scrapes some time apart
        assert fires("SyncfleetRateLimitStorm", running.scrape(), quiet) == {}


def test_a_backlog(worker_process, fleet_app, redis_client, tmp_path):
    try:
        with exporter(tmp_path) as running:
            assert fires("SyncfleetQueueBacklog", running.scrape()) == {}
            with fleet_app.producer_or_acquire() as producer:
                for _ in range(5001):  # no worker takes them
                    fleet_app.send_task("gis.runs", producer=producer)
            backlog = fires("SyncfleetQueueBacklog", running.scrape())
            assert [dict(labels)["queue"] for labels in backlog] == ["gis"]
    finally:
        redis_client.delete("gis")


@pytest.mark.parametrize("alert", sorted(TESTED))
def test_each_rule_names_only_series_the_exporter_serves(alert):
    import re

    used = set(re.findall(r"syncfleet_[a-z_]+", RULES[alert]["expr"]))
    assert used <= METRIC_NAMES, used - METRIC_NAMES
