"""Is the fleet working? The verdict of `syncfleet health`, as named checks; and the
liveness checks compose runs (`--beat`, `--worker NODE`), which look at one process only,
so that an orchestrator restarts only what a restart fixes.

The fleet's verdict (`verdict`) is unhealthy when:

    redis               Redis cannot be reached
    workers             no live worker consuming a queue (worker/heartbeat.py: none
                        seen for ALIVE_FOR s)
    gis_run, segment_run    the job's latest run was halted (a 401: a credential is
                        wrong or revoked)
    gis_failed_records  more than HEALTH_MAX_FAILED GIS records are failing
    gis_scan_fresh      (one per LC, GIS configured) no scan has succeeded for more than
                        STALE_SCANS x GIS_SCAN_INTERVAL, counted from the fleet's first
                        start while none has: the bound of the exporter's
                        `syncfleet_gis_stale_after_seconds` and of the alert; after
                        a pause, counted from its end when later
    gis_paused          (instead of gis_scan_fresh, always ok) the GIS schedule is paused
                        by an operator (`syncfleet gis pause`): who, since when, why

Each check reads Redis only: the verdict never waits behind queued work.

`beat_verdict` (compose's check of beat, run in beat's working directory): beat saved its
schedule file in the last BEAT_SCHEDULE_MAX_AGE seconds. Beat saves it every 180 s
(PersistentScheduler.sync_every), checked after each sleep of at most 300 s
(beat_max_loop_interval). `worker_verdict` (compose's check of a worker): the worker
answers a ping; while Redis itself is unreachable it passes, since restarting the worker
would not bring Redis back.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from worker import heartbeat, run_history, runs, store
from worker.gis_sync import failed as gis_failed
from worker.gis_sync import pause as gis_pause
from worker.gis_sync import state as gis_state
from worker.gis_sync.run_state import GIS
from worker.segment_migration.state import SEGMENT
from worker.settings import Settings

STALE_SCANS = 3  # no success for this many intervals means the sync has stopped
BEAT_SCHEDULE = "celerybeat-schedule*"  # beat's file, in its working directory
BEAT_SCHEDULE_MAX_AGE = 600
PING_TIMEOUT = 10.0


@dataclass
class Check:
    name: str  # a machine name: redis, workers, gis_run, ...
    ok: bool
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, **self.extra}


@dataclass
class Verdict:
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def reason(self) -> str:
        failing = [c.detail for c in self.checks if not c.ok]
        if failing:
            return "; ".join(failing)
        return "ok: " + ", ".join(c.detail for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "reason": self.reason,
                "checks": [c.as_dict() for c in self.checks]}


def stale_after(settings: Settings) -> int:
    return STALE_SCANS * settings.gis_scan_interval


def verdict(settings: Settings, now: float | None = None) -> Verdict:
    now = time.time() if now is None else now
    try:
        store.client().ping()
    except redis.RedisError as exc:
        return Verdict([Check("redis", False, f"Redis unreachable at "
                              f"{store.target().describe()}: {exc}")])
    checks = [Check("redis", True, "Redis reachable"), _workers(now), *_halted_runs(),
              _failed_records(settings)]
    if settings.gis_access_token and settings.gis_home_lc_id:
        checks += _gis_freshness(settings, now)
    return Verdict(checks)


def _workers(now: float) -> Check:
    live = [node for node, queues in heartbeat.alive(now).items() if queues]
    if not live:
        return Check("workers", False, f"no live worker (none seen in the last "
                     f"{heartbeat.ALIVE_FOR:.0f}s): start one (`docker compose up -d "
                     "worker`)")
    return Check("workers", True, f"{len(live)} live worker{'s' * (len(live) != 1)}",
                 {"count": len(live)})


def _halted_runs() -> list[Check]:
    out = []
    for job in (GIS.job, SEGMENT.job):
        latest = run_history.recent(1, job=job)
        name = f"{job}_run"
        if latest and latest[0].get("status") == runs.HALTED:
            out.append(Check(name, False, f"the last {job} run ({latest[0]['run_id']}) was "
                             f"halted: {latest[0].get('error') or 'no reason recorded'}"))
        else:
            shown = latest[0].get("status") if latest else "none yet"
            out.append(Check(name, True, f"last {job} run {shown}"))
    return out


def _failed_records(settings: Settings) -> Check:
    failing = gis_failed.sizes(gis_state.workspace(settings))["failed"]
    limit = settings.health_max_failed
    if failing > limit:
        return Check("gis_failed_records", False, f"{failing} GIS records are failing (more "
                     f"than HEALTH_MAX_FAILED = {limit}): see `syncfleet gis failed`",
                     {"count": failing})
    return Check("gis_failed_records", True, f"failed records {failing}", {"count": failing})


def _gis_freshness(settings: Settings, now: float) -> list[Check]:
    """Each LC's last successful scan (or, before any, the fleet's first start; or the
    end of a pause, when later) is recent enough; a paused schedule is one ok check."""
    paused = gis_pause.paused()
    if paused is not None:
        return [Check("gis_paused", True, gis_pause.describe(paused) + " (`syncfleet gis "
                      "resume` resumes it)", {"by": paused["by"], "since": paused["since"],
                                               "reason": paused["reason"]})]
    limit = stale_after(settings)
    checks = []
    for scope in gis_state.scopes(settings):
        age, counted = gis_state.seconds_since_success(scope, now)
        extra = {"lc": scope.lc, "seconds": round(age, 1), "stale_after": limit}
        detail, stale = _freshness_lines(scope.lc, age, counted, limit)
        checks.append(Check("gis_scan_fresh", age <= limit, detail if age <= limit else stale,
                            extra))
    return checks


def _freshness_lines(lc: int, age: float, counted: str, limit: int) -> tuple[str, str]:
    """(the detail when fresh, the detail when stale)."""
    bound = f"more than {STALE_SCANS} x GIS_SCAN_INTERVAL = {limit}s"
    if counted == gis_state.SUCCESS:
        return (f"last GIS scan of LC {lc} {age:.0f}s ago",
                f"the last successful GIS scan of LC {lc} finished {age:.0f}s ago, {bound}: "
                "is beat running?")
    if counted == gis_state.RESUME:
        return (f"GIS sync resumed {age:.0f}s ago; no scan of LC {lc} has finished since",
                f"no GIS scan of LC {lc} has finished in the {age:.0f}s since the GIS sync "
                f"was resumed, {bound}: is beat running? see `syncfleet gis runs`")
    return (f"no GIS scan of LC {lc} has finished yet ({age:.0f}s since start)",
            f"no GIS scan of LC {lc} has finished in the {age:.0f}s since the fleet started, "
            f"{bound}: see `syncfleet gis runs` (beat sends one every GIS_SCAN_INTERVAL)")


def beat_verdict(now: float | None = None) -> Verdict:
    now = time.time() if now is None else now
    saved = [os.path.getmtime(f) for f in glob.glob(BEAT_SCHEDULE)]
    if not saved:
        return Verdict([Check("beat", False, f"no beat schedule file ({BEAT_SCHEDULE}) in "
                              f"{os.getcwd()}: is this beat's working directory, and has "
                              "beat started?")])
    age = now - max(saved)
    if age > BEAT_SCHEDULE_MAX_AGE:
        return Verdict([Check("beat", False, f"beat has not saved its schedule for {age:.0f}s "
                              f"(more than {BEAT_SCHEDULE_MAX_AGE}s): beat is stuck or "
                              "stopped", {"seconds": round(age)})])
    return Verdict([Check("beat", True, f"beat schedule saved {age:.0f}s ago",
                          {"seconds": round(age)})])


def worker_verdict(node: str, answers: Callable[[str, float], bool]) -> Verdict:
    """`answers(node, timeout)`: whether the worker answered a ping (the caller pings:
    this module stays free of Celery)."""
    try:
        store.client().ping()
    except redis.RedisError as exc:
        return Verdict([Check("worker", True, f"not pinged: Redis unreachable ({exc}); "
                              "restarting the worker would not fix that")])
    if answers(node, PING_TIMEOUT):
        return Verdict([Check("worker", True, f"{node} answers ping")])
    return Verdict([Check("worker", False, f"{node} did not answer a ping within "
                          f"{PING_TIMEOUT:.0f}s: stuck, or cut off from Redis")])
