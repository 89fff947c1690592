"""Steady-state benchmark of the GIS -> customer.io job: the fleet as shipped, beat scanning
every `--interval` seconds, against a sandbox world that keeps changing, with light faults.

    .venv/bin/python bench/steady_state.py [--interval 300] [--minutes N] [--change-every 5]

What runs (each as shipped, from the Procfile = docker-compose.yml): a private Redis (with
the shipped REDIS_MAXMEMORY), the sandbox with the Procfile's world (seed 1, 500 people,
1,500 applications) and customer.io answering 2 % 429 and 3 % 5xx, one worker (prefork, 4
processes: one compose worker container) and beat with GIS_SCAN_INTERVAL = --interval.

Phases: beat's first scan (the cold start, not measured); then the Redis watch starts;
a scan with nothing changed (its GIS calls: the cost of a quiet scan); then for
--minutes, every --change-every seconds, one application moves and one person is edited
(`POST /admin/advance`: 15 % of people belong to other LCs and apply to the LC's
opportunities, the incoming applicants); then until a scan that started after the last
change has ended (its changes had their chance to arrive).

Printed: change-to-arrival latency (p50, p95; from the change in the sandbox's GIS to the
first accepted customer.io request carrying it, from the sandbox's recording; a change
that never arrives counts as infinitely late), per kind of change; GIS and customer.io
calls per scan; Redis's footprint at equilibrium (bench/steady_metrics.py, `footprint`);
worker RSS (parent + pool) after the quiet scan and at the end; PASS/MISS per target.
Takes about 1.5 min + 2 intervals + --minutes (+ --settle). Settings in the environment
reach the fleet (e.g. GIS_INCOMING_PEOPLE_REFRESH=120); .env does not.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from redis_server import PrivateRedis, free_port  # noqa: E402

from bench.fleet import beat_command, rss_mb, sandbox_command, worker_command  # noqa: E402
from bench.keywatch import KeyWatch  # noqa: E402
from bench.steady_metrics import (  # noqa: E402
    Change,
    beyond_refresh,
    changes_of,
    describe,
    footprint,
    latencies,
    percentile,
)
from sandbox.credentials import GIS_HOME_LC_ID, env_for  # noqa: E402

FAULTS = ["--customerio-error-rate", "0.05",  # 2 % 429 and 3 % 5xx: a fifth each
          "--customerio-error-statuses", "429,429,500,502,503"]
KINDS = ("person", "incoming person", "application")


def shipped_maxmemory() -> int:
    """REDIS_MAXMEMORY's default in docker-compose.yml, in bytes."""
    text = (ROOT / "docker-compose.yml").read_text()
    number, unit = re.search(r"REDIS_MAXMEMORY:-(\d+)(\w*)", text).groups()  # type: ignore
    return int(number) * {"": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30}[unit.lower()]


class Sandbox:
    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.command = sandbox_command(port) + FAULTS
        self.proc = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(self._answers, 120, "the sandbox did not start")

    def _answers(self) -> bool:
        try:
            return requests.get(self.url + "/admin/stats", timeout=2).ok
        except requests.RequestException:
            return False

    def size(self, flag: str) -> int:
        return int(self.command[self.command.index(flag) + 1])

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.url + "/admin" + path, timeout=120, **kwargs)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def wait_for(condition: Any, seconds: float, failure: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(failure)
        time.sleep(0.5)
    return found


def scans(r: Any) -> list[tuple[str, float]]:
    """(run id, start time) of every GIS run so far, oldest first."""
    from worker import store

    return [(name.decode().partition(":")[2], score) for name, score in
            r.zrange(store.key("runs"), 0, -1, withscores=True) if name.startswith(b"gis:")]


def ended_scan(r: Any, after: float) -> dict[str, Any] | None:
    """The summary of the first scan started after `after`, once it has one."""
    from worker.gis_sync.run_state import GIS

    later = [run_id for run_id, started in scans(r) if started > after]
    return GIS.summary(later[0]) if later else None


def per_scan(starts: list[float], requests_: list[dict[str, Any]]) -> list[int]:
    """Requests per scan: each scan owns those from 1 s before its start (its token check
    comes before its run record) to 1 s before the next one's."""
    bounds = [s - 1 for s in starts] + [math.inf]
    return [sum(1 for q in requests_ if bounds[i] <= q["ts"] < bounds[i + 1])
            for i in range(len(starts))]


def change_world(sandbox: Sandbox, minutes: float, every: float) -> tuple[list[Change], int]:
    """One application moved and one person edited every `every` seconds."""
    share = 1 / sandbox.size("--applications")
    people_share = 1 / sandbox.size("--people")
    changes, silent = [], 0
    end = time.time() + minutes * 60
    while time.time() < end:
        at = time.time()
        advance = sandbox.admin("POST", "/advance", json={"share": share,
                                                          "people_share": people_share})
        found, quiet = changes_of(advance, at, str(GIS_HOME_LC_ID))
        changes += found
        silent += quiet
        time.sleep(max(0.0, at + every - time.time()))
    return changes, silent


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                           "load_start": os.getloadavg(), "cores": os.cpu_count()}
    with PrivateRedis(port=free_port()) as server, tempfile.TemporaryDirectory() as tmp:
        import redis

        r = redis.Redis.from_url(server.url)
        out["maxmemory"] = shipped_maxmemory()
        r.config_set("maxmemory", out["maxmemory"])
        sandbox = Sandbox()
        env = {**os.environ, **env_for(sandbox.url), "REDIS_URL": server.url,
               "SYNCFLEET_ENV_FILE": os.devnull, "LOG_LEVEL": "WARNING",
               "GIS_SCAN_INTERVAL": str(args.interval)}
        os.environ.update({k: v for k, v in env.items() if k.isupper()})
        from worker.settings import get_settings

        get_settings.cache_clear()
        procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
                 for command in (worker_command("steady"), beat_command(f"{tmp}/beat"))]
        try:
            return measure(args, r, sandbox, procs[0].pid, out)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            sandbox.stop()


def measure(args: argparse.Namespace, r: Any, sandbox: Sandbox, worker_pid: int,
            out: dict[str, Any]) -> dict[str, Any]:
    timeout = 3 * args.interval + 600
    wait_for(lambda: ended_scan(r, 0), timeout, "the cold start never ended")
    watch = KeyWatch(r)
    wait_for(lambda: ended_scan(r, watch.started), timeout, "no quiet scan")
    quiet_start = [s for _, s in scans(r) if s > watch.started][0]
    out["rss_start_mb"] = rss_mb([worker_pid])
    changes, out["silent_changes"] = change_world(sandbox, args.minutes, args.change_every)
    last = max((c.at for c in changes), default=time.time())
    wait_for(lambda: ended_scan(r, last), timeout, "no scan after the last change")
    time.sleep(args.settle)  # a slower path (a periodic refresh) gets its chance too
    out["rss_end_mb"] = rss_mb([worker_pid])
    keys, started, ended, out["baseline_bytes_end"] = watch.stop()
    out["baseline_bytes_start"] = watch.baseline_bytes_start
    out["footprint"] = footprint(keys, started, ended)
    out["measured_s"] = ended - started
    recorded = sandbox.admin("GET", "/requests")["requests"]
    cio = [q for q in recorded if q["api"] == "customerio"]
    out["changes"] = list(zip(changes, latencies(changes, cio), strict=True))
    out["missing"] = [(c, explained(c)) for c, v in out["changes"] if v is None]
    starts = [s for _, s in scans(r) if s >= quiet_start]
    out["gis_per_scan"] = per_scan(starts, [q for q in recorded if q["api"] == "gis"])
    out["cio_per_scan"] = per_scan(starts, cio)
    out["cio_faults"] = sum(1 for q in cio if q["status"] in (429, 500, 502, 503))
    out["cio_calls"] = len([q for q in cio if q["ts"] >= starts[0] - 1])
    out["load_end"] = os.getloadavg()
    out["ended"] = ended
    return out


def explained(change: Change) -> dict[str, Any] | None:
    """`syncfleet gis explain` of a change's record (while the fleet's Redis is still
    there to ask)."""
    from worker.gis_sync import explain
    from worker.settings import get_settings

    read = explain.application if change.kind == "application" else explain.person
    return read(change.id, get_settings())


def seconds(value: float) -> str:
    return "never" if math.isinf(value) else "n/a" if math.isnan(value) else f"{value:.1f} s"


def report(args: argparse.Namespace, out: dict[str, Any]) -> list[str]:
    lines = [f"steady state, GIS_SCAN_INTERVAL={args.interval}s, world changing for "
             f"{args.minutes} min (every {args.change_every}s), {out['date']}, "
             f"{out['cores']} cores, load {out['load_start'][0]:.2f} -> "
             f"{out['load_end'][0]:.2f}", "", "change-to-arrival latency:"]
    beyond = {c for c, found in out["missing"] if beyond_refresh(c, found)}
    changes = out["changes"]
    for kind in (*KINDS, "all"):
        values = [v for c, v in changes if kind in ("all", c.kind)]
        lines.append(f"  {kind:16} n={len(values):3}  p50 {seconds(percentile(values, 50))}"
                     f"  p95 {seconds(percentile(values, 95))}"
                     f"  never arrived {sum(v is None for v in values)}")
    missing = [c for c, v in changes if v is None]
    if missing:
        lines.append(f"  (the latest change that never arrived was made "
                     f"{out['ended'] - max(c.at for c in missing):.0f} s before the end; "
                     "never arrived: " + ", ".join(f"{c.kind} {c.id} {c.attribute or ''}"
                                                   for c in missing[:10]) + ")")
    lines += [f"    why: {describe(c, found)}" for c, found in out["missing"]]
    if beyond:
        lines.append(f"  ({len(beyond)} incoming edit(s) of people with no open application "
                     "to the LC, whom the refresh does not read by design, are left out of "
                     "the verdicts below)")
    lines.append(f"  (changes customer.io must not see, left out: {out['silent_changes']})")
    gis, cio = out["gis_per_scan"], out["cio_per_scan"]
    busy = gis[1:] or [0]
    lines += ["", f"scans measured: {len(gis)} (the first with nothing changed)",
              f"  GIS calls per scan: {gis}  (quiet scan {gis[0]}, mean of the others "
              f"{sum(busy) / len(busy):.1f})",
              f"  customer.io calls per scan: {cio}  ({out['cio_faults']} of "
              f"{out['cio_calls']} answered with an injected fault)"]
    fp, budget = out["footprint"], out["maxmemory"] / 10
    lines += ["", f"Redis footprint of new keys at equilibrium: {fp.bytes / 2**20:.2f} MB "
              f"(10 % of REDIS_MAXMEMORY: {budget / 2**20:.1f} MB), measured over "
              f"{out['measured_s']:.0f} s",
              f"  growth (made during the run, no TTL, still there): {fp.growth_keys} keys, "
              f"{fp.growth_bytes / 1024:.1f} KB",
              f"  keys there before the run: {out['baseline_bytes_start'] / 1024:.1f} KB -> "
              f"{out['baseline_bytes_end'] / 1024:.1f} KB", "  largest families:"]
    lines += [f"    {name:44} {f.keys:5} keys of {f.size / f.keys / 1024:6.1f} KB "
              f"-> {f.bytes / 2**20:7.2f} MB" for name, f in list(fp.by_family.items())[:8]]
    lines += ["", f"worker RSS (parent + pool): {out['rss_start_mb']:.1f} MB after the quiet "
              f"scan -> {out['rss_end_mb']:.1f} MB at the end", ""]
    verdicts = []
    for kind in (*KINDS, "all"):  # per kind: a few changes that never arrive stand out
        p95 = percentile([v for c, v in changes if kind in ("all", c.kind)
                          and c not in beyond], 95)
        bound = args.incoming_bound if kind == "incoming person" else args.interval + 10
        if not math.isnan(p95):  # no change of this kind: nothing to judge
            verdicts.append((f"p95 latency ({kind}) {seconds(p95)} <= {bound:.0f} s",
                             p95 <= bound))
    verdicts += [
        (f"quiet scan {gis[0]} GIS calls <= 4", gis[0] <= 4),
        (f"footprint {fp.bytes / 2**20:.2f} MB <= 10 % of REDIS_MAXMEMORY"
         + ("" if args.interval <= 60 else " (the target is for 60 s scans)"),
         fp.bytes <= budget),
        ("worker memory flat (end <= start + 10 %)",
         out["rss_end_mb"] <= 1.1 * out["rss_start_mb"]),
    ]
    lines += [f"{'PASS' if ok else 'MISS'}  {what}" for what, ok in verdicts]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=int, default=300, help="GIS_SCAN_INTERVAL, s")
    parser.add_argument("--minutes", type=float,
                        help="how long the world changes (default: 3.2 intervals, at least 6)")
    parser.add_argument("--change-every", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="after the scan that follows the last change, wait this long "
                             "before reading what customer.io received")
    parser.add_argument("--incoming-bound", type=float, metavar="SECONDS",
                        help="the p95 target for incoming applicants' edits (default: "
                             "interval + 10 s, as for the rest)")
    args = parser.parse_args()
    if args.incoming_bound is None:
        args.incoming_bound = args.interval + 10.0
    if args.minutes is None:
        args.minutes = max(6.0, round(3.2 * args.interval / 60, 1))
    print("\n".join(report(args, run(args))), flush=True)


if __name__ == "__main__":
    main()
