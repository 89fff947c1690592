"""Benchmark of the GIS -> customer.io job: a cold start at several world sizes, on the
shipped worker, against the sandbox.

    .venv/bin/python bench/gis_sync.py [--sizes 5000x15000,50000x150000,200000x600000]
        [--workers 1] [--no-steady] [--latency-ms 0]

For each size: a private Redis (emptied), `python -m sandbox` with that world in its own
process (keeping only the last 1,000 requests' bodies, so its memory does not grow with
the run), and `--workers` worker processes running the Procfile's worker command as it
ships (prefork, 4 processes each; default 1 worker = one compose worker container). Then
one `gis.scan` (a cold start: every person identified, transitions of the last 72 h
sent, through customer.io's batch API) is timed from the send to its run summary.
After the first size, a steady-state scan with 1 % of the world changed.

Printed per size, as a Markdown table:
- end to end seconds and records/s (records = people + applications read and synced);
- customer.io and GIS requests, and the span between the first and last customer.io
  request (the sandbox's own clock);
- longest_task_s: the upper bound of the histogram bucket that holds the slowest task
  delivery (every delivery is timed by the task base, `syncfleet_task_seconds`), and
  which task;
- peak_rss_mb_per_worker_process: the largest VmHWM (peak resident memory over the
  process's life) of the worker's processes, pool children included;
- Redis: used_memory after the run, and the job's state (`sf:gis:*` minus run records)
  per tracked record (a person or an application remembered);
- the sandbox: seconds until it answered (world built), its RSS after the run.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from redis_server import PrivateRedis, free_port  # noqa: E402

from bench.fleet import peak_rss_mb_per_process, status_kb, worker_command  # noqa: E402
from worker import store  # noqa: E402

PY = sys.executable
SANDBOX_RECORDED = 1000


class Sandbox:
    def __init__(self, people: int, applications: int, latency_ms: int) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [PY, "-m", "sandbox", "--port", str(port), "--seed", "1", "--people", str(people),
             "--applications", str(applications), "--profiles", "10",
             "--max-recorded", str(SANDBOX_RECORDED),
             "--customerio-latency-ms", str(latency_ms)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit("the sandbox did not start")
            time.sleep(0.2)
        self.ready_s = time.monotonic() - started

    def _answers(self) -> bool:
        try:
            return requests.get(self.url + "/admin/stats", timeout=2).ok
        except requests.RequestException:
            return False

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.url + "/admin" + path, timeout=300, **kwargs)
        response.raise_for_status()
        return response.json()

    def rss_mb(self) -> float:
        return status_kb(self.proc.pid, "VmRSS") / 1024

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Fleet:
    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.procs = [subprocess.Popen(worker_command(f"bench{i}"), cwd=ROOT,
                                       env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
                      for i in range(workers)]
        from worker.app import app

        self.app = app
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5) or []) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not answer ping")

    def peak_rss_mb(self) -> float:
        return peak_rss_mb_per_process([proc.pid for proc in self.procs])

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def scan(app: Any, timeout: float = 3600) -> tuple[dict[str, Any], float]:
    from worker.gis_sync.run_state import GIS

    started_at = time.monotonic()
    started = app.send_task("gis.scan").get(timeout=120)
    assert started["status"] == "started", started
    while time.monotonic() - started_at < timeout:
        summary = GIS.summary(started["run_id"])
        if summary:
            return summary, time.monotonic() - started_at
        time.sleep(0.2)
    raise SystemExit(f"no summary for run {started['run_id']} after {timeout} s")


def state_bytes(r: redis.Redis) -> tuple[int, int]:
    """The job's remembered state in bytes (run records excluded), and the records it
    tracks (people and applications)."""
    size, tracked = 0, 0
    for key in r.scan_iter("sf:gis:*", count=1000):
        if b":run:" in key or key.endswith(b":runs:open"):
            continue
        size += r.memory_usage(key) or 0
        if key.endswith((b":sent", b":steps")):
            tracked += r.hlen(key)
    return size, tracked


def cold_start(redis_url: str, people: int, applications: int, args: argparse.Namespace
               ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    r = store.connect(redis_url, decode_responses=False)
    r.flushdb()
    sandbox = Sandbox(people, applications, args.latency_ms)
    from sandbox.credentials import env_for

    env = {**os.environ, **env_for(sandbox.url), "REDIS_URL": redis_url,
           "SYNCFLEET_ENV_FILE": os.devnull, "LOG_LEVEL": "WARNING"}
    os.environ.update({k: v for k, v in env.items() if k.isupper()})
    from worker.settings import get_settings

    get_settings.cache_clear()
    fleet = Fleet(env, args.workers)
    steady = None
    try:
        load = os.getloadavg()[0]
        used_before = r.info("memory")["used_memory"]
        summary, seconds = scan(fleet.app)
        stats = sandbox.admin("GET", "/stats")
        from worker import metrics

        longest = max(((task, min(float(le) for le, n in timed["buckets"].items()
                                  if n == timed["count"]))
                       for task, timed in metrics.task_seconds().items()), key=lambda kv: kv[1])
        state, tracked = state_bytes(r)
        records = summary.get("people_seen", 0) + summary.get("applications_seen", 0)
        first, last = stats["first_at"]["customerio"], stats["last_at"]["customerio"]
        result = {
            "world": f"{people:,} / {applications:,}",
            "status": summary["status"],
            "seconds": seconds, "records": records, "records_per_s": records / seconds,
            "people_identified": summary.get("people_updated", 0),
            "events_sent": summary.get("events_sent", 0),
            "customerio_requests": sum(stats["requests"].get("customerio", {}).values()),
            "gis_requests": sum(stats["requests"].get("gis", {}).values()),
            "customerio_span_s": (last - first) if first and last else 0.0,
            "longest_task_s": longest[1], "longest_task": longest[0],
            "peak_rss_mb_per_worker_process": fleet.peak_rss_mb(),
            "redis_used_mb": r.info("memory")["used_memory"] / 2**20,
            "redis_growth_mb": (r.info("memory")["used_memory"] - used_before) / 2**20,
            "state_bytes_per_tracked_record": state / max(tracked, 1),
            "tracked_records": tracked,
            "schema_rejected": stats["rejected"].get("customerio", {}).get("schema", 0),
            "sandbox_ready_s": sandbox.ready_s, "sandbox_rss_mb": sandbox.rss_mb(),
            "load_before": load,
        }
        if args.steady:
            steady = steady_state(sandbox, fleet)
    finally:
        fleet.stop()
        sandbox.stop()
    return result, steady


def steady_state(sandbox: Sandbox, fleet: Fleet) -> dict[str, Any]:
    """1 % of applications move and 1 % of people change; one scan."""
    moved = sandbox.admin("POST", "/advance", json={"share": 0.01, "people_share": 0.01,
                                                    "seed": 7})
    sandbox.admin("DELETE", "/requests")
    summary, seconds = scan(fleet.app)
    stats = sandbox.admin("GET", "/stats")
    return {"applications_moved": len(moved["applications_moved"]),
            "people_edited": len(moved["people_edited"]),
            "gis_requests": sum(stats["requests"].get("gis", {}).values()),
            "customerio_requests": sum(stats["requests"].get("customerio", {}).values()),
            "events_sent": summary.get("events_sent", 0),
            "people_read": summary.get("people_seen", 0),
            "applications_read": summary.get("applications_seen", 0),
            "seconds": round(seconds, 2)}


def table(results: list[dict[str, Any]]) -> str:
    keys = [k for k in results[0] if k != "world"]
    lines = ["| world (people / applications) | " + " | ".join(r["world"] for r in results)
             + " |", "|---|" + "---|" * len(results)]
    for key in keys:
        cells = [f"{r[key]:,.1f}" if isinstance(r[key], float) else
                 f"{r[key]:,}" if isinstance(r[key], int) else str(r[key]) for r in results]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000x15000,50000x150000,200000x600000")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=0,
                        help="customer.io latency fault for every request")
    parser.add_argument("--no-steady", dest="steady", action="store_false")
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")]
    results = []
    with PrivateRedis() as server:
        for i, (people, applications) in enumerate(sizes):
            args_i = argparse.Namespace(**{**vars(args), "steady": args.steady and i == 0})
            result, steady = cold_start(server.url, people, applications, args_i)
            results.append(result)
            print(table([result]), flush=True)
            if steady:
                print("\nsteady state (1 % changed):", steady, "\n", flush=True)
    print("\n" + table(results))


if __name__ == "__main__":
    main()
