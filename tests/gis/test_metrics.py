"""The Prometheus exporter for real: `syncfleet metrics` as a process, scraped after a
GIS scan on the shipped worker; its counters equal what the sandbox recorded."""

from __future__ import annotations

import json
import re
from collections import Counter

import requests

from tests.support import ROOT
from tests.support.exporter import LOGIN, exporter, total
from tests.support.gis import scan, workspace
from worker.exporter import METRIC_NAMES
from worker.gis_sync import failed
from worker.metrics import TASK_BUCKETS


def test_a_scrape_after_a_scan_shows_what_the_sandbox_recorded(fleet, gis_world, tmp_path):
    with exporter(tmp_path) as running:
        assert requests.get(running.url, auth=(LOGIN[0], "wrong"), timeout=5).status_code == 401
        run = scan(fleet)
        samples = running.samples()

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
    assert total(samples, "syncfleet_records_total", sync="gis", kind="person",
                 outcome="synced") == sum(admin.customerio_profiles()["identifies"].values())
    assert total(samples, "syncfleet_records_total", sync="gis", kind="application",
                 outcome="failed") == run["applications_failed"]
    assert total(samples, "syncfleet_records_total", sync="gis", kind="application",
                 outcome="skipped") == run.get("moves_unmapped", 0) + run.get("moves_backward", 0)
    assert total(samples, "syncfleet_gis_failed_records", state="retrying") == \
        failed.sizes(workspace())["failed"]
    assert total(samples, "syncfleet_runs_total", sync="gis") == 1
    assert total(samples, "syncfleet_gis_last_success_timestamp_seconds") > 0
    assert ("syncfleet_queue_depth", (("queue", "gis"),)) in samples
    # Every delivery of the run's tasks was timed, in a histogram: none ran past the hard
    # time limit (the 20 s bucket holds them all), counts and sums add up.
    for task in ("gis.scan", "gis.walk", "gis.part_done"):
        count = total(samples, "syncfleet_task_seconds_count", task=task)
        assert count >= 1, task
        assert total(samples, "syncfleet_task_seconds_bucket", task=task, le="+Inf") == count
        assert total(samples, "syncfleet_task_seconds_bucket", task=task, le="20.0") == count
        assert 0 < total(samples, "syncfleet_task_seconds_sum", task=task) < 20 * count
    assert len({ls for n, ls in samples if n == "syncfleet_task_seconds_bucket"
                and dict(ls)["task"] == "gis.walk"}) == len(TASK_BUCKETS) + 1
    # Prometheus owns `job` and `instance`: no series of ours uses them.
    assert not any({"job", "instance"} & {k for k, _ in labels} for _, labels in samples)
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
    # ... and none selects or groups by a `job` of ours (Prometheus's own, the scrape job).
    legends = [t.get("legendFormat", "") for panel in dashboard["panels"]
               for t in panel["targets"]]
    assert not any("{{job}}" in legend for legend in legends)
    assert not any(re.search(r"by \([^)]*\bjob\b", expr) for expr in exprs)
