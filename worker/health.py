"""Is the fleet working? The verdict `syncfleet health` gives (and compose's health check
runs), and the configuration check `syncfleet check` makes at start.

Unhealthy when Redis cannot be reached, when the last successful GIS scan is older than
3 x GIS_SCAN_INTERVAL (GIS configured), when a job's latest run was halted (a 401: a
credential is wrong or revoked), or when more than HEALTH_MAX_FAILED GIS records are
failing. Each check reads Redis only: the verdict never waits behind queued work.

`--beat` (compose's health check of the beat container, run in beat's working directory)
adds beat's own liveness: its schedule file was saved in the last BEAT_SCHEDULE_MAX_AGE
seconds. Beat saves it every 180 s (PersistentScheduler.sync_every), checked after each
sleep of at most 300 s (beat_max_loop_interval).
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field

import redis

from worker import run_history, runs, store
from worker.gis_sync import failed as gis_failed
from worker.gis_sync import state as gis_state
from worker.gis_sync.run_state import GIS
from worker.segment_migration.state import SEGMENT
from worker.settings import Settings

STALE_SCANS = 3  # a scan older than this many intervals means the sync has stopped
BEAT_SCHEDULE = "celerybeat-schedule*"  # beat's file, in its working directory
BEAT_SCHEDULE_MAX_AGE = 600


@dataclass
class Verdict:
    healthy: bool
    reason: str
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"healthy": self.healthy, "reason": self.reason, **self.details}


def verdict(settings: Settings, now: float | None = None, beat: bool = False) -> Verdict:
    now = time.time() if now is None else now
    details: dict[str, object] = {}
    beat_problems = _beat_alive(now, details) if beat else []
    try:
        store.client().ping()
    except redis.RedisError as exc:
        return Verdict(False, "; ".join([f"Redis unreachable at REDIS_URL: {exc}",
                                         *beat_problems]), details)
    problems = beat_problems + _halted_runs() + _failed_records(settings, details)
    if settings.gis_access_token and settings.gis_home_lc_id:
        problems += _gis_freshness(settings, now, details)
    else:
        details["gis"] = "not configured (GIS_ACCESS_TOKEN, GIS_HOME_LC_ID)"
    if problems:
        return Verdict(False, "; ".join(problems), details)
    return Verdict(True, "ok: " + ", ".join(f"{k} {v}" for k, v in details.items()), details)


def _beat_alive(now: float, details: dict[str, object]) -> list[str]:
    saved = [os.path.getmtime(f) for f in glob.glob(BEAT_SCHEDULE)]
    if not saved:
        return [f"no beat schedule file ({BEAT_SCHEDULE}) in {os.getcwd()}: is this "
                "beat's working directory, and has beat started?"]
    age = now - max(saved)
    details["beat schedule saved"] = f"{age:.0f}s ago"
    if age > BEAT_SCHEDULE_MAX_AGE:
        return [f"beat has not saved its schedule for {age:.0f}s (more than "
                f"{BEAT_SCHEDULE_MAX_AGE}s): beat is stuck or stopped"]
    return []


def _halted_runs() -> list[str]:
    out = []
    for job in (GIS.job, SEGMENT.job):
        latest = run_history.recent(1, job=job)
        if latest and latest[0].get("status") == runs.HALTED:
            out.append(f"the last {job} run ({latest[0]['run_id']}) was halted: "
                       f"{latest[0].get('error') or 'no reason recorded'}")
    return out


def _failed_records(settings: Settings, details: dict[str, object]) -> list[str]:
    failing = gis_failed.sizes(gis_state.workspace(settings))["failed"]
    details["failed records"] = failing
    if failing > settings.health_max_failed:
        return [f"{failing} GIS records are failing (more than HEALTH_MAX_FAILED = "
                f"{settings.health_max_failed}): see `syncfleet gis failed`"]
    return []


def _gis_freshness(settings: Settings, now: float, details: dict[str, object]) -> list[str]:
    """Each LC's last successful scan is recent enough."""
    limit = STALE_SCANS * settings.gis_scan_interval
    problems = []
    for scope in gis_state.scopes(settings):
        last = gis_state.last_success(scope)
        if last is None:
            problems.append(f"no GIS scan of LC {scope.lc} has finished yet (beat sends "
                            f"one every GIS_SCAN_INTERVAL = {settings.gis_scan_interval}s)")
            continue
        age = now - last
        details[f"last GIS scan of LC {scope.lc}"] = f"{age:.0f}s ago"
        if age > limit:
            problems.append(f"the last successful GIS scan of LC {scope.lc} finished "
                            f"{age:.0f}s ago, more than {STALE_SCANS} x GIS_SCAN_INTERVAL "
                            f"= {limit}s: is beat running?")
    return problems
