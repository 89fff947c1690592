"""The Prometheus exporter for real: `syncfleet metrics` as a process, scraped after a
GIS scan on the shipped worker; its counters equal what the sandbox recorded."""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, wait_for
from tests.support.gis import scan, workspace
from tests.support.processes import Process
from worker.exporter import METRIC_NAMES
from worker.gis_sync import failed

LOGIN = ("prometheus", "scrape-pw-8c1d")
sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port  # noqa: E402


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(url, auth=LOGIN, timeout=10)
    assert response.status_code == 200, response.text
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def test_a_scrape_after_a_scan_shows_what_the_sandbox_recorded(fleet, gis_world, tmp_path):
    port = free_port()
    env = {**os.environ, "METRICS_BASIC_AUTH": ":".join(LOGIN)}
    exporter = Process("exporter", [sys.executable, "-m", "worker", "metrics", "--host",
                                    "127.0.0.1", "--port", str(port)], env, logs=tmp_path)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        def answers() -> bool:
            try:
                return requests.get(url, timeout=2).status_code == 401  # the login first
            except requests.ConnectionError:
                return False

        wait_for(answers, "the exporter", 30, alive=[exporter])
        assert requests.get(url, auth=(LOGIN[0], "wrong"), timeout=5).status_code == 401
        run = scan(fleet)
        samples = scrape(url)
    finally:
        exporter.stop()

    admin = gis_world.admin
    recorded = Counter(r["status"] for r in admin.requests(api="customerio"))
    for status, n in recorded.items():
        assert total(samples, "syncfleet_http_requests_total", api="customerio",
                     status=str(status)) == n
    gis_calls = len(admin.requests(api="gis"))
    assert total(samples, "syncfleet_http_requests_total", api="gis") == gis_calls
    events = admin.customerio_events()
    received = sum(len(e) for e in events["events"].values()) + events["duplicates"]
    assert total(samples, "syncfleet_events_total") == received == run["events_sent"]
    assert total(samples, "syncfleet_records_total", job="gis", kind="person",
                 outcome="synced") == sum(admin.customerio_profiles()["identifies"].values())
    assert total(samples, "syncfleet_records_total", job="gis", kind="application",
                 outcome="failed") == run["applications_failed"]
    assert total(samples, "syncfleet_records_total", job="gis", kind="application",
                 outcome="skipped") == run.get("moves_unmapped", 0) + run.get("moves_backward", 0)
    assert total(samples, "syncfleet_gis_failed_records", state="retrying") == \
        failed.sizes(workspace())["failed"]
    assert total(samples, "syncfleet_runs_total", job="gis") == 1
    assert total(samples, "syncfleet_gis_last_success_timestamp_seconds") > 0
    assert ("syncfleet_queue_depth", (("queue", "gis"),)) in samples
    # Every delivery of the run's tasks was timed; none ran past the hard time limit.
    for task in ("gis.scan", "gis.walk", "gis.part_done"):
        assert total(samples, "syncfleet_task_runs_total", task=task) >= 1, task
        longest = total(samples, "syncfleet_task_longest_seconds", task=task)
        assert 0 < longest < 20, (task, longest)
        assert total(samples, "syncfleet_task_seconds_total", task=task) >= longest
    served = {name.removesuffix("_created") for name, _ in samples}
    assert served <= METRIC_NAMES | {n.removesuffix("_total") for n in METRIC_NAMES}


def test_the_alert_rules_and_the_dashboard_use_only_metrics_the_exporter_serves():
    import yaml

    rules = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert {rule["alert"] for group in rules["groups"] for rule in group["rules"]} >= {
        "SyncfleetGisSyncStale", "SyncfleetRunHalted", "SyncfleetFailedRecordsGrowing",
        "SyncfleetRateLimitStorm"}
    dashboard = json.loads((ROOT / "ops" / "grafana" / "syncfleet-dashboard.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"syncfleet_[a-z_]+", expr)}
    assert used and used <= METRIC_NAMES, used - METRIC_NAMES
