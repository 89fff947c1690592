"""Every alert rule of ops/prometheus/alerts.yml, checked by the real Prometheus.

A Prometheus server (Debian's, tests/support/prometheus.py) scrapes the exporter as
ops/prometheus/prometheus.example.yml says (only faster) and evaluates the rules. The
fleet is driven into each rule's situation for real (the exporter stopped, Redis stopped,
no worker, a fleet that never scanned, a wrong key, failing records, a 429 storm, a
backlog) and the server is asked whether the rule's expression holds (and that it does
not on the healthy fleet); a rule without `for:` must be firing there. What a test cannot
wait for (`for:` durations, hour-long windows) is checked by `promtool test rules` on
series built from what the server scraped: the same labels and values, sampled at the
example's scrape interval and held as long as the rule needs."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.support import wait_for
from tests.support.exporter import LOGIN, Exporter, exporter, free_port
from tests.support.gis import scan
from tests.support.prometheus import (
    ALERTS,
    RULES,
    Prometheus,
    RuleTest,
    alert_labels,
    shipped_job,
)
from tests.support.tools import require
from worker import health, heartbeat
from worker.exporter import METRIC_NAMES
from worker.gis_sync import pause, state
from worker.settings import get_settings

# Out of the quick lane (make test-fast): real programs and real timeouts, seconds each.
pytestmark = pytest.mark.slow

start = __import__("redis_server").start  # scripts/, put on the path by tests.support.exporter

TESTED = {"SyncfleetExporterDown", "SyncfleetRedisDown", "SyncfleetNoWorker",
          "SyncfleetGisSyncStale", "SyncfleetRunHalted", "SyncfleetFailedRecordsTooMany",
          "SyncfleetFailedRecordsGrowing", "SyncfleetRateLimitStorm", "SyncfleetQueueBacklog"}
INTERVAL = shipped_job()["scrape_interval"]  # promtool's series are sampled as shipped
STEP = int(INTERVAL.rstrip("s"))


@pytest.fixture(scope="module")
def _prometheus(tmp_path_factory) -> Iterator[Prometheus]:
    """One server for the module; every test's exporter listens on its target's port."""
    exporter_port = free_port()
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{exporter_port}",
                        LOGIN[1], free_port())
    server.exporter_port = exporter_port  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def prometheus(_prometheus: Prometheus) -> Prometheus:
    """The server, with nothing of an earlier test's scrapes."""
    _prometheus.forget()
    return _prometheus


def scraped_exporter(prometheus: Prometheus, logs, **env: str
                     ) -> AbstractContextManager[Exporter]:
    return exporter(logs, prometheus.exporter_port, **env)  # type: ignore[attr-defined]


def alert(prometheus: Prometheus, name: str, state: str, timeout: float = 60
          ) -> list[dict[str, Any]]:
    """Wait until the server holds rule `name`'s alerts in `state` (pending, firing)."""
    return wait_for(lambda: [a for a in prometheus.alerts(name) if a["state"] == state],
                    f"{name} {state}", timeout, alive=[prometheus.process])


def healthy(prometheus: Prometheus, *names: str) -> None:
    prometheus.scraped()
    for name in names:
        assert prometheus.fires(name) == [], name
        assert prometheus.alerts(name) == [], name


def values(prometheus: Prometheus, metric: str) -> dict[frozenset, tuple[dict, float]]:
    """The last scraped value of each series of `metric`, by its labels."""
    return {frozenset(r["metric"].items()): (r["metric"], float(r["value"][1]))
            for r in prometheus.query(metric)}


def seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def holds_for(tmp_path, name: str, before: dict, during: dict,
              firing: list[dict[str, Any]]) -> None:
    """promtool: the series as scraped healthy (`before`), then as scraped in the rule's
    situation (`during`) from minute 2 on, held. The rule fires once that has lasted its
    `for:` (a minute later at most: one evaluation), not a minute before, with the labels
    and annotations the real server gave it."""
    wait = seconds(RULES[name]["for"])
    test = RuleTest(tmp_path, INTERVAL)
    steps_before, steps_during = 120 // STEP, (wait + 300) // STEP
    for key, (labels, value) in during.items():
        healthy_value = before.get(key, (labels, value))[1]
        test.add_series(labels, [healthy_value] * steps_before + [value] * steps_during)
    test.expect(f"{(120 + wait) // 60 - 1}m", name, [])
    test.expect(f"{(120 + wait) // 60 + 1}m", name, [a["labels"] for a in firing],
                firing[0]["annotations"])
    test.run()


def test_promtool_checks_the_rules():
    done = subprocess.run([require("promtool"), "check", "rules", str(ALERTS)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"SUCCESS: {len(TESTED)} rules found" in done.stdout, \
        done.stdout + done.stderr


def test_every_rule_is_tested_and_described():
    assert set(RULES) == TESTED
    for rule in RULES.values():
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_example_scrape_job_is_the_one_the_rules_name():
    job = shipped_job()
    assert job["job_name"] == "syncfleet" and "honor_labels" not in job  # false: ours win
    assert job["basic_auth"]["username"] == LOGIN[0] and "password_file" in job["basic_auth"]
    for name in ("SyncfleetExporterDown",):
        assert 'job="syncfleet"' in RULES[name]["expr"]


def test_the_rules_bounds_are_those_of_syncfleet_health():
    # The same bound, served by the exporter from the same code, and no extra wait: the
    # alert fires when `syncfleet health` turns unhealthy.
    assert "syncfleet_gis_stale_after_seconds" in RULES["SyncfleetGisSyncStale"]["expr"]
    assert "syncfleet_gis_failed_records_limit" in RULES["SyncfleetFailedRecordsTooMany"]["expr"]
    for name in ("SyncfleetGisSyncStale", "SyncfleetRunHalted",
                 "SyncfleetFailedRecordsTooMany"):
        assert "for" not in RULES[name], name
    assert health.STALE_SCANS == 3
    # A dead worker counts as dead after ALIVE_FOR; the rule waits a little beyond it.
    assert RULES["SyncfleetNoWorker"]["for"] == "2m" and heartbeat.ALIVE_FOR <= 120


@pytest.mark.parametrize("name", sorted(TESTED))
def test_each_rule_names_only_series_the_exporter_serves(name):
    used = set(re.findall(r"syncfleet_[a-z_]+", RULES[name]["expr"]))
    assert used <= METRIC_NAMES, used - METRIC_NAMES


def test_scraped_series_keep_their_labels(prometheus, fleet, gis_world, tmp_path):
    """honor_labels as shipped (false) renames a scraped `job` or `instance` to
    `exported_…`: the exporter serves neither, so every series keeps its own."""
    scan(fleet)
    with scraped_exporter(prometheus, tmp_path):
        prometheus.scraped()
        series = prometheus.series('{job="syncfleet", __name__=~"syncfleet_.+"}')
    assert {s["__name__"] for s in series} >= {"syncfleet_runs_total", "syncfleet_run_halted"}
    for labels in series:
        assert not [k for k in labels if k.startswith("exported_")], labels
        assert labels["instance"] == prometheus.target
    assert {s["sync"] for s in series if s["__name__"] == "syncfleet_run_halted"} == \
        {"gis", "segment"}


def test_exporter_down(prometheus, redis_url, tmp_path):
    name = "SyncfleetExporterDown"
    with scraped_exporter(prometheus, tmp_path):
        healthy(prometheus, name)
        before = values(prometheus, 'up{job="syncfleet"}')
    assert wait_for(lambda: prometheus.fires(name), "up == 0", 60)  # nothing answers
    pending = alert(prometheus, name, "pending")
    holds_for(tmp_path, name, before, values(prometheus, 'up{job="syncfleet"}'), pending)


def test_redis_down_from_the_start_then_up_then_down_again(prometheus, tmp_path):
    name = "SyncfleetRedisDown"
    port = free_port()
    with scraped_exporter(prometheus, tmp_path,
                          REDIS_URL=f"redis://127.0.0.1:{port}/0") as running:
        assert wait_for(lambda: prometheus.fires(name), "redis_up == 0 from the start", 60)
        served = {r["metric"]["__name__"] for r in
                  prometheus.query(f'{{instance="{prometheus.target}", '
                                   '__name__=~"syncfleet_.+"}')}
        assert served == {"syncfleet_redis_up"}  # the rest is absent
        pending = alert(prometheus, name, "pending")
        during = values(prometheus, "syncfleet_redis_up")
        server = start(port, str(tmp_path), persist=False)
        try:
            healthy(prometheus, name)  # recovered by itself
            assert prometheus.query("syncfleet_queue_depth")
            before = values(prometheus, "syncfleet_redis_up")
        finally:
            server.terminate()
            server.wait(10)
        assert wait_for(lambda: prometheus.fires(name), "redis_up == 0 again", 60)
        # Each of those scrapes was answered (HTTP 200): the exporter is up all along.
        up = prometheus.samples(f'up{{instance="{prometheus.target}"}}', 60)
        assert {v for _, v in up[0]["values"]} == {"1"}, up
    log = running.process.log()
    assert "Traceback" not in log
    assert log.count("Redis unreachable") == 2  # one line per outage, not per scrape
    assert log.count("Redis is back") == 1
    holds_for(tmp_path, name, before, during, pending)


def test_no_worker(prometheus, worker_process, tmp_path):
    name = "SyncfleetNoWorker"
    with scraped_exporter(prometheus, tmp_path):
        firing = wait_for(lambda: prometheus.fires(name), "no live worker", 90)
        assert [r["metric"]["queue"] for r in firing] == ["gis"]
        pending = alert(prometheus, name, "pending")
        during = {**values(prometheus, "syncfleet_workers_alive"),
                  **values(prometheus, "syncfleet_queue_depth")}
        worker_process(name="alive")
        wait_for(lambda: not prometheus.fires(name), "the live worker to count", 60)
        healthy(prometheus, name)
        before = values(prometheus, "syncfleet_workers_alive")
    holds_for(tmp_path, name, before, during, pending)


def test_a_fleet_that_never_scanned_is_stale_after_the_same_bound(
        prometheus, fleet, gis_world, monkeypatch, tmp_path):
    name = "SyncfleetGisSyncStale"
    monkeypatch.setenv("GIS_SCAN_INTERVAL", "2")  # stale after 3 x 2 s
    with scraped_exporter(prometheus, tmp_path):
        (stale,) = alert(prometheus, name, "firing")  # no `for:`: at once
        assert stale["labels"]["lc"] == "1340"
        assert stale["annotations"]["summary"].startswith("No GIS scan of LC 1340 has")
        assert prometheus.query("syncfleet_gis_last_success_timestamp_seconds") == []
        scan(fleet)
        healthy(prometheus, name)
        alert(prometheus, name, "firing")  # stale again, counted from the last success
        assert prometheus.query("syncfleet_gis_last_success_timestamp_seconds")


def test_a_paused_sync_is_not_stale_and_after_its_resume_counts_from_the_resume(
        prometheus, fleet, gis_world, monkeypatch, redis_client, tmp_path):
    name = "SyncfleetGisSyncStale"
    monkeypatch.setenv("GIS_SCAN_INTERVAL", "4")  # stale after 3 x 4 s
    scope = state.Scope(1340, state.workspace(get_settings()))
    redis_client.set(scope.key("last_success"), time.time() - 3600)  # paused for an hour
    pause.pause("ci", "customer.io maintenance")
    with scraped_exporter(prometheus, tmp_path):
        healthy(prometheus, name)  # an hour without a scan, but paused
        (since,) = prometheus.query("syncfleet_gis_seconds_since_success")
        assert float(since["value"][1]) > 3600
        assert [float(r["value"][1]) for r in prometheus.query("syncfleet_gis_paused")] == [1]
        pause.resume()
        healthy(prometheus, name)  # counted from the resume: not stale at once
        assert [float(r["value"][1]) for r in prometheus.query("syncfleet_gis_paused")] == [0]
        alert(prometheus, name, "firing")  # 12 s after the resume without a scan: stale
    # promtool: an hour-old success while paused holds the alert, and only the pause does:
    # the same series with the pause lifted fires at the next evaluation.
    labels = dict(since["metric"])
    target = {k: labels[k] for k in ("job", "instance")}
    test = RuleTest(tmp_path, INTERVAL)
    test.add_series(labels, "4000x20")
    test.add_series({"__name__": "syncfleet_gis_stale_after_seconds", **target}, "12x20")
    test.add_series({"__name__": "syncfleet_gis_paused", **target}, "1x10 0x10")
    test.expect("4m", name, [])
    test.expect("7m", name, [alert_labels(since, name)], {
        "summary": "No GIS scan of LC 1340 has succeeded for 1h 6m 40s",
        "description": RULES[name]["annotations"]["description"]})
    test.run()


def test_a_run_halted_by_a_wrong_key(prometheus, fleet, gis_world, monkeypatch, tmp_path):
    name = "SyncfleetRunHalted"
    good_key = os.environ["CUSTOMERIO_API_KEY"]
    with scraped_exporter(prometheus, tmp_path):
        healthy(prometheus, name)
        monkeypatch.setenv("CUSTOMERIO_API_KEY", "wrong-key")
        assert scan(fleet)["status"] == "halted"
        (halted,) = alert(prometheus, name, "firing")
        assert halted["labels"]["sync"] == "gis"
        assert halted["annotations"]["summary"] == "The last gis run was halted"
        monkeypatch.setenv("CUSTOMERIO_API_KEY", good_key)
        assert scan(fleet)["status"] != "halted"
        healthy(prometheus, name)


def test_failed_records_too_many_and_growing(prometheus, fleet, gis_world, tmp_path):
    too_many, growing = "SyncfleetFailedRecordsTooMany", "SyncfleetFailedRecordsGrowing"
    failed = 'syncfleet_gis_failed_records{state="retrying"}'
    with scraped_exporter(prometheus, tmp_path, HEALTH_MAX_FAILED="0"):
        healthy(prometheus, too_many, growing)
        ((labels, before),) = values(prometheus, failed).values()
        scan(fleet)  # the world holds records customer.io cannot take
        alert(prometheus, too_many, "firing")
        pending = alert(prometheus, growing, "pending")  # delta over the last hour > 0
        ((_, after),) = values(prometheus, failed).values()
    with scraped_exporter(prometheus, tmp_path):  # HEALTH_MAX_FAILED as shipped: 1000
        prometheus.scraped()
        assert prometheus.fires(too_many) == []
    assert after > before
    # promtool: a list growing like this every hour fires after 3 h; one that grew once
    # and then stays does not.
    per_hour = 3600 // STEP
    keeps_growing = RuleTest(tmp_path, INTERVAL, "growing")
    keeps_growing.add_series(labels, f"{before:g}+{(after - before) / per_hour:g}x{5 * per_hour}")
    keeps_growing.expect("2h50m", growing, [])
    keeps_growing.expect("3h10m", growing, [a["labels"] for a in pending])
    keeps_growing.run()
    grew_once = RuleTest(tmp_path, INTERVAL, "grew-once")
    grew_once.add_series(labels, [before] * 4 + [after] * 5 * per_hour)
    for at in ("1h", "3h10m", "4h"):
        grew_once.expect(at, growing, [])
    grew_once.run()


def humanize(value: float) -> str:
    """Prometheus's `humanize` template function, for a value between 1e-3 and 1e6."""
    if abs(value) >= 1000:
        return f"{value / 1000:.4g}k"
    return f"{value:.4g}" if abs(value) >= 1 else f"{value * 1000:.4g}m"


def test_a_429_storm(prometheus, fleet, gis_world, tmp_path):
    name = "SyncfleetRateLimitStorm"
    admin = gis_world.admin
    limited = 'syncfleet_rate_limited_total{api="customerio"}'
    with scraped_exporter(prometheus, tmp_path):
        healthy(prometheus, name)
        admin.faults("customerio", burst_429=60, retry_after=1)
        result = fleet.send_task("gis.scan")
        wait_for(lambda: [r for r in prometheus.query(limited) if float(r["value"][1]) >= 20],
                 "twenty 429s scraped", 90)
        prometheus.scraped()
        (storm,) = prometheus.samples(limited, 120)
        assert result.get(timeout=60)["status"] == "started"
        admin.clear_faults("customerio")
        # A burst of 429s is no storm: over the rule's 10 minutes it stays under 0.5/s.
        assert prometheus.fires(name) == []
    points = [(float(t), float(v)) for t, v in storm["values"]]
    growing = [p for p, q in zip(points, points[1:], strict=False) if q[1] > p[1]]
    (t0, v0), (t1, v1) = growing[0], points[-1]
    per_step = round((v1 - v0) / (t1 - t0) * STEP)  # 429s per shipped scrape interval
    assert per_step / STEP > 0.5, f"the test's burst is too slow to stand for a storm: {points}"
    # promtool: that rate of 429s for 25 min, then none. It fires once the rate over 10
    # min has been above 0.5/s for 10 min (by 20 min at the latest), and stops once the
    # 429s stopped.
    test = RuleTest(tmp_path, INTERVAL)
    labels = dict(storm["metric"])
    storming = 25 * 60 // STEP
    test.add_series(labels, [per_step * i for i in range(storming + 1)]
                    + [per_step * storming] * (30 * 60 // STEP))
    test.expect("9m", name, [])
    rate = per_step * (600 // STEP) / 600
    test.expect("24m", name, [{"api": "customerio", **RULES[name]["labels"]}],
                {"summary": f"customerio answers 429 often ({humanize(rate)}/s)",
                 "description": RULES[name]["annotations"]["description"]})
    test.expect("50m", name, [])
    test.run()


def test_a_backlog(prometheus, worker_process, fleet_app, redis_client, tmp_path):
    name = "SyncfleetQueueBacklog"
    try:
        with scraped_exporter(prometheus, tmp_path):
            healthy(prometheus, name)
            before = values(prometheus, "syncfleet_queue_depth")
            with fleet_app.producer_or_acquire() as producer:
                for _ in range(5001):  # no worker takes them
                    fleet_app.send_task("gis.runs", producer=producer)
            backlog = wait_for(lambda: prometheus.fires(name), "the backlog scraped", 60)
            assert [r["metric"]["queue"] for r in backlog] == ["gis"]
            pending = alert(prometheus, name, "pending")
            assert pending[0]["annotations"]["summary"] == "5001 messages wait in queue gis"
            during = values(prometheus, "syncfleet_queue_depth")
    finally:
        redis_client.delete("gis")
    holds_for(tmp_path, name, before, during, pending)


def test_promtool_rule_tests_can_fail(tmp_path):
    """The promtool check is no rubber stamp: a wrong expectation fails it."""
    test = RuleTest(tmp_path, INTERVAL)
    test.add_series({"__name__": "syncfleet_run_halted", "sync": "gis", "job": "syncfleet",
                     "instance": "h:9808"}, [0] * 10)
    test.expect("3m", "SyncfleetRunHalted", [alert_labels(
        {"metric": {"sync": "gis", "job": "syncfleet", "instance": "h:9808"}},
        "SyncfleetRunHalted")], {"summary": "x", "description": "y"})
    with pytest.raises(AssertionError, match="FAILED"):
        test.run()
