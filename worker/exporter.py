"""Prometheus metrics for the fleet as a whole: `syncfleet metrics` serves `/metrics` on
METRICS_PORT, behind the METRICS_BASIC_AUTH login.

Everything is read from Redis at each scrape: the counters every worker adds
(`worker/metrics.py`) and the fleet's state (runs, marks, failed records, queues), so
one exporter sees the whole fleet, wherever its workers run.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from worker import broker, metrics, parking, run_history, runs
from worker.gis_sync import failed as gis_failed
from worker.gis_sync import state as gis_state
from worker.gis_sync.ladder import to_unix
from worker.gis_sync.run_state import GIS
from worker.segment_migration import state as segment_state
from worker.segment_migration.state import SEGMENT
from worker.settings import get_settings

log = logging.getLogger(__name__)

PREFIX = "syncfleet_"
HELP = {
    "records": "Records handled, by job, kind and outcome (synced, unchanged, skipped, failed)",
    "events": "customer.io events sent, by event name",
    "http_requests": "Requests to each external API, by answer (status code, timeout, "
                     "connection)",
    "rate_limited": "429 answers from each external API",
    "budget_waits": "Waits for the fleet's own request budget, per API",
    "runs": "Runs ended, by job and status",
    "task_runs": "Task deliveries run, by task (a retry or a continuation is one more)",
    "task_seconds": "Time spent in task deliveries, by task",
}
# Counted in milliseconds (integers in Redis), served in seconds.
IN_SECONDS = {"task_milliseconds": "task_seconds"}
GAUGES = ("gis_last_success_timestamp_seconds", "gis_scan_lag_seconds",
          "gis_scan_interval_seconds", "gis_failed_records",
          "run_halted", "queue_depth", "parked_tasks", "migration_profiles",
          "task_longest_seconds")
# Every metric the exporter can serve (the alert rules and the dashboard use these).
METRIC_NAMES = frozenset([PREFIX + n + "_total" for n in HELP] + [PREFIX + n for n in GAUGES])


class FleetCollector:
    """Reads the fleet's state from Redis at each scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from counters(metrics.snapshot())
        yield from gis_gauges(time.time())
        yield from fleet_gauges()
        yield from migration_gauges()


def counters(snapshot: dict[tuple[str, tuple[tuple[str, str], ...]], int]
             ) -> Iterator[Metric]:
    families: dict[str, CounterMetricFamily] = {}
    for (name, labels), value in sorted(snapshot.items()):
        if name in IN_SECONDS:
            name, value = IN_SECONDS[name], value / 1000
        family = families.get(name)
        if family is None:
            family = CounterMetricFamily(PREFIX + name, HELP.get(name, name),
                                         labels=[k for k, _ in labels])
            families[name] = family
        family.add_metric([v for _, v in labels], value)
    yield from families.values()


def gis_gauges(now: float) -> Iterator[Metric]:
    scopes = gis_state.scopes(get_settings())
    last = GaugeMetricFamily(PREFIX + "gis_last_success_timestamp_seconds",
                             "When the LC's last GIS scan finished without a halt (Unix s)",
                             labels=["lc"])
    lag = GaugeMetricFamily(PREFIX + "gis_scan_lag_seconds",
                            "Now minus the LC's oldest high-water mark", labels=["lc"])
    for scope in scopes:
        success = gis_state.last_success(scope)
        if success is not None:
            last.add_metric([str(scope.lc)], success)
        marks = [ts for ts in (to_unix(m) for m in gis_state.marks(scope).values()) if ts]
        if marks:
            lag.add_metric([str(scope.lc)], now - min(marks))
    yield last
    yield lag
    yield _gauge("gis_scan_interval_seconds", "GIS_SCAN_INTERVAL: beat starts a scan this often",
                 get_settings().gis_scan_interval)
    sizes = gis_failed.sizes(gis_state.workspace(get_settings()))
    family = GaugeMetricFamily(PREFIX + "gis_failed_records",
                               "GIS records failing (retried) or dead (given up)",
                               labels=["state"])
    family.add_metric(["retrying"], sizes["failed"])
    family.add_metric(["dead"], sizes["dead"])
    yield family
    halted = GaugeMetricFamily(PREFIX + "run_halted",
                               "1 when the job's latest run was halted (a 401)",
                               labels=["job"])
    for job in (GIS.job, SEGMENT.job):
        latest = run_history.recent(1, job=job)
        halted.add_metric([job], float(bool(latest) and latest[0].get("status") == runs.HALTED))
    yield halted


def fleet_gauges() -> Iterator[Metric]:
    depth = GaugeMetricFamily(PREFIX + "queue_depth", "Messages waiting in each queue",
                              labels=["queue"])
    for queue in broker.QUEUES:
        depth.add_metric([queue], broker.depth(queue))
    yield depth
    yield _gauge("parked_tasks", "Tasks parked in Redis for a long wait", parking.waiting())
    longest = GaugeMetricFamily(PREFIX + "task_longest_seconds",
                                "The longest delivery of each task so far", labels=["task"])
    for task, seconds in sorted(metrics.longest_tasks().items()):
        longest.add_metric([task], seconds)
    yield longest


def migration_gauges() -> Iterator[Metric]:
    family = GaugeMetricFamily(PREFIX + "migration_profiles",
                               "Profiles of each running migration so far: listed, fetched, "
                               "confirmed (live, while slices run); upserted, failed, skipped "
                               "(of finished slices)", labels=["run_id", "state"])
    for run in run_history.recent(10, job=SEGMENT.job):
        if run.get("status") != runs.RUNNING:
            continue
        progress = segment_state.progress(run["run_id"]) or {}
        live, counts = progress.get("live") or {}, progress.get("counts") or {}
        figures = {"listed": live.get("profiles_listed", 0),
                   "fetched": live.get("profiles_fetched", 0),
                   "confirmed": live.get("customers_confirmed", 0),
                   **{name: counts.get(name, 0) for name in ("upserted", "failed", "skipped")}}
        for label, value in figures.items():
            family.add_metric([run["run_id"], label], value)
    yield family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


# --- the HTTP side ----------------------------------------------------------------------------

def app(registry: CollectorRegistry, login: str) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: /metrics behind basic auth, nothing else."""
    expected = "Basic " + base64.b64encode(login.encode()).decode()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", ""), expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", 'Basic realm="syncfleet"')])
            return [b"login required\n"]
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return serve


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's parameter name
        log.debug("exporter %s", format % args)


def serve(host: str = "0.0.0.0", port: int | None = None) -> None:
    """Serve /metrics until stopped (requires METRICS_BASIC_AUTH)."""
    settings = get_settings()
    login = settings.secret("METRICS_BASIC_AUTH")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(FleetCollector())
    server: WSGIServer = make_server(host, port or settings.metrics_port,
                                     app(registry, login), handler_class=_QuietHandler)
    log.info("syncfleet metrics on http://%s:%d/metrics", host, server.server_port)
    server.serve_forever()

