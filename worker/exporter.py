"""Prometheus metrics for the fleet as a whole: `syncfleet metrics` serves `/metrics` on
METRICS_PORT, behind the METRICS_BASIC_AUTH login.

Everything is read from Redis at each scrape: the counters every worker adds
(`worker/metrics.py`), the live workers (`worker/heartbeat.py`) and the fleet's state
(runs, marks, failed records, queues), so one exporter sees the whole fleet, wherever its
workers run. With Redis away it still answers every scrape (HTTP 200) with
`syncfleet_redis_up 0` and nothing else, logs one line when Redis goes and one when it is
back, and starts whether Redis is there or not.

No label is called `job` or `instance`: Prometheus owns those (its target's labels), so
the job of a series is its `sync` label (gis, segment).
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from worker import broker, health, heartbeat, metrics, parking, run_history, runs
from worker.gis_sync import failed as gis_failed
from worker.gis_sync import pause as gis_pause
from worker.gis_sync import state as gis_state
from worker.gis_sync.ladder import to_unix
from worker.gis_sync.run_state import GIS
from worker.segment_migration import state as segment_state
from worker.segment_migration.state import SEGMENT
from worker.settings import get_settings

log = logging.getLogger(__name__)

PREFIX = "syncfleet_"
HELP = {
    "records": "Records handled, by sync, kind and outcome (synced, unchanged, skipped, "
               "failed)",
    "events": "customer.io events sent, by event name",
    "http_requests": "Requests to each external API, by answer (status code, timeout, "
                     "connection)",
    "rate_limited": "429 answers from each external API",
    "budget_waits": "Waits for the fleet's own request budget, per API",
    "runs": "Runs ended, by sync and status",
    "task_failures": "Task deliveries that ended in an error, by task",
    "task_retries": "Task deliveries retried, by task and reason (error, budget, continue)",
}
LABELS = {"job": "sync"}  # stored name -> served name (Prometheus owns `job`)
HISTOGRAMS = ("task_seconds",)
GAUGES = ("redis_up", "workers_alive", "gis_last_success_timestamp_seconds",
          "gis_seconds_since_success", "gis_stale_after_seconds", "gis_scan_lag_seconds",
          "gis_scan_interval_seconds", "gis_paused", "gis_failed_records",
          "gis_failed_records_limit", "run_halted", "queue_depth", "held_messages",
          "parked_tasks", "migrations_running", "migration_profiles")
# Every series name the exporter can serve (the alert rules and the dashboard use these).
METRIC_NAMES = frozenset(
    [PREFIX + n + "_total" for n in HELP] + [PREFIX + n for n in GAUGES]
    + [PREFIX + n + suffix for n in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")])


class FleetCollector:
    """Reads the fleet's state from Redis at each scrape; `syncfleet_redis_up` says
    whether it could."""

    def __init__(self) -> None:
        self.redis_down: str | None = None  # the error while Redis is away

    def describe(self) -> list[Metric]:
        return []  # registering must not read Redis (it may not be there yet)

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(fleet_metrics(time.time()))
        except redis.RedisError as exc:
            if self.redis_down is None:
                log.warning("exporter: Redis unreachable, serving syncfleet_redis_up 0 "
                            "until it is back: %s", exc)
            self.redis_down = str(exc)
            yield _gauge("redis_up", "1 when the exporter could read Redis", 0)
            return
        if self.redis_down is not None:
            log.info("exporter: Redis is back")
            self.redis_down = None
        yield _gauge("redis_up", "1 when the exporter could read Redis", 1)
        yield from families


def fleet_metrics(now: float) -> Iterator[Metric]:
    yield from counters(metrics.snapshot())
    yield task_histogram()
    yield from gis_gauges(now)
    yield from fleet_gauges(now)
    yield from migration_gauges()


def counters(snapshot: dict[tuple[str, tuple[tuple[str, str], ...]], int]
             ) -> Iterator[Metric]:
    families: dict[str, CounterMetricFamily] = {}
    for (name, labels), value in sorted(snapshot.items()):
        if name not in HELP:
            continue  # a counter this version no longer serves
        family = families.get(name)
        if family is None:
            family = CounterMetricFamily(PREFIX + name, HELP[name],
                                         labels=[LABELS.get(k, k) for k, _ in labels])
            families[name] = family
        family.add_metric([v for _, v in labels], value)
    yield from families.values()


def task_histogram() -> Metric:
    family = HistogramMetricFamily(PREFIX + "task_seconds", "Time of task deliveries, by "
                                   "task (a retry or a continuation is one more)",
                                   labels=["task"])
    for task, timed in metrics.task_seconds().items():
        family.add_metric([task], list(timed["buckets"].items()), timed["sum"])
    return family


def gis_gauges(now: float) -> Iterator[Metric]:
    settings = get_settings()
    last = GaugeMetricFamily(PREFIX + "gis_last_success_timestamp_seconds",
                             "When the LC's last GIS scan finished without a halt (Unix s)",
                             labels=["lc"])
    since = GaugeMetricFamily(PREFIX + "gis_seconds_since_success",
                              "Seconds since the LC's last successful GIS scan, or since the "
                              "fleet's first start while none has succeeded, or since the "
                              "GIS sync was resumed when that is later", labels=["lc"])
    lag = GaugeMetricFamily(PREFIX + "gis_scan_lag_seconds",
                            "Now minus the LC's oldest high-water mark", labels=["lc"])
    for scope in gis_state.scopes(settings):
        lc = str(scope.lc)
        success = gis_state.last_success(scope)
        if success is not None:
            last.add_metric([lc], success)
        since.add_metric([lc], gis_state.seconds_since_success(scope, now)[0])
        marks = [ts for ts in (to_unix(m) for m in gis_state.marks(scope).values()) if ts]
        if marks:
            lag.add_metric([lc], now - min(marks))
    yield from (last, since, lag)
    yield _gauge("gis_stale_after_seconds", "No successful scan for this long is stale: "
                 "3 x GIS_SCAN_INTERVAL, the bound of `syncfleet health`",
                 health.stale_after(settings))
    yield _gauge("gis_scan_interval_seconds", "GIS_SCAN_INTERVAL: beat starts a scan this often",
                 settings.gis_scan_interval)
    yield _gauge("gis_paused", "1 while an operator has paused the GIS schedule (`syncfleet "
                 "gis pause`): no scan starts, and staleness does not alert",
                 float(gis_pause.paused() is not None))
    sizes = gis_failed.sizes(gis_state.workspace(settings))
    family = GaugeMetricFamily(PREFIX + "gis_failed_records",
                               "GIS records failing (retried) or dead (given up)",
                               labels=["state"])
    family.add_metric(["retrying"], sizes["failed"])
    family.add_metric(["dead"], sizes["dead"])
    yield family
    yield _gauge("gis_failed_records_limit", "HEALTH_MAX_FAILED: more failing records is "
                 "unhealthy", settings.health_max_failed)
    halted = GaugeMetricFamily(PREFIX + "run_halted",
                               "1 when the sync's latest run was halted (a 401)",
                               labels=["sync"])
    for job in (GIS.job, SEGMENT.job):
        latest = run_history.recent(1, job=job)
        halted.add_metric([job], float(bool(latest) and latest[0].get("status") == runs.HALTED))
    yield halted


def fleet_gauges(now: float) -> Iterator[Metric]:
    alive = GaugeMetricFamily(PREFIX + "workers_alive", "Live workers consuming each queue "
                              "(seen in the last minute)", labels=["queue"])
    for queue, count in heartbeat.per_queue(broker.QUEUES, now).items():
        alive.add_metric([queue], count)
    yield alive
    depth = GaugeMetricFamily(PREFIX + "queue_depth", "Messages waiting in each queue",
                              labels=["queue"])
    for queue in broker.QUEUES:
        depth.add_metric([queue], broker.depth(queue))
    yield depth
    # Autoscaling counts these too (docs/scaling.md): the queues miss what workers took.
    yield _gauge("held_messages", "Messages workers hold: delivered, not acknowledged yet "
                 "(running, prefetched, waiting for a countdown)", broker.held())
    yield _gauge("parked_tasks", "Tasks parked in Redis for a long wait", parking.waiting())


def migration_gauges() -> Iterator[Metric]:
    """Running migrations, added up: one series per state whatever the number of runs."""
    running = [run["run_id"] for run in run_history.recent(10, job=SEGMENT.job)
               if run.get("status") == runs.RUNNING]
    figures = dict.fromkeys(("listed", "fetched", "confirmed", "upserted", "failed",
                             "skipped"), 0)
    for run_id in running:
        progress = segment_state.progress(run_id) or {}
        live, counts = progress.get("live") or {}, progress.get("counts") or {}
        figures["listed"] += live.get("profiles_listed", 0)
        figures["fetched"] += live.get("profiles_fetched", 0)
        figures["confirmed"] += live.get("customers_confirmed", 0)
        for name in ("upserted", "failed", "skipped"):
            figures[name] += counts.get(name, 0)
    yield _gauge("migrations_running", "Segment -> Voucherify runs running now", len(running))
    family = GaugeMetricFamily(PREFIX + "migration_profiles",
                               "Profiles of the running migrations so far: listed, fetched, "
                               "confirmed (live, while slices run); upserted, failed, skipped "
                               "(of finished slices)", labels=["state"])
    for label, value in figures.items():
        family.add_metric([label], value)
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
    registry = CollectorRegistry()
    registry.register(FleetCollector())
    server: WSGIServer = make_server(host, port or settings.metrics_port,
                                     app(registry, login), handler_class=_QuietHandler)
    log.info("syncfleet metrics on http://%s:%d/metrics", host, server.server_port)
    server.serve_forever()

