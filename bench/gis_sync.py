"""Benchmark of the GIS -> customer.io job against the sandbox, with real workers.

    .venv/bin/python bench/gis_sync.py [--people 5000 --applications 15000
                                        --workers 2 --concurrency 8 --only 1a,2]

Starts a private Redis, `python -m sandbox` (its own process, so it does not share the
workers' CPU accounting) and `celery -A worker worker` processes, then measures:
1. initial sync (cold start), zero latency: records/s end to end, worker RSS, Redis
   memory; once through customer.io's v2 batch, once one request per record;
2. the same, one request per record, under a 100 req/s customer.io budget (sandbox limit
   100 rps, CUSTOMERIO_MAX_RPS=100) and 50 ms latency: share of the budget used;
3. a steady-state scan with 1% of records changed: GIS and customer.io calls, beside the
   original connector's approach (one page per 25 people + one applications request per
   person, every run), computed from the same world.
Figures are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from redis_server import PrivateRedis, free_port  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


class Admin:
    def __init__(self, url: str) -> None:
        self.url = url + "/admin"

    def do(self, method: str, path: str, **kw: Any) -> Any:
        r = requests.request(method, self.url + path, timeout=120, **kw)
        r.raise_for_status()
        return r.json()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.redis = PrivateRedis().__enter__()
        port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{port}"
        self.sandbox = subprocess.Popen(
            [PY, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port), "--seed", "1",
             "--people", str(args.people), "--applications", str(args.applications),
             "--profiles", "10"], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.admin = Admin(self.sandbox_url)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.admin.do("GET", "/stats")
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        from sandbox.credentials import env_for

        self.env = {**os.environ, **env_for(self.sandbox_url), "REDIS_URL": self.redis.url,
                    "SYNCFLEET_ENV_FILE": os.devnull, "LOG_LEVEL": "WARNING"}
        self.workers: list[subprocess.Popen] = []

    # -- fleet -----------------------------------------------------------------------
    def start_workers(self, extra: dict[str, str]) -> None:
        env = {**self.env, **extra}
        for i in range(self.args.workers):
            self.workers.append(subprocess.Popen(
                [PY, "-m", "celery", "-A", "worker", "worker", "-n", f"bench{i}@%h",
                 "--pool", "threads", "-c", str(self.args.concurrency), "-Q", "gis",
                 "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip",
                 "--without-mingle"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        time.sleep(4)

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.workers = []

    def app(self, extra: dict[str, str]):
        os.environ.update({k: v for k, v in {**self.env, **extra}.items()
                           if k.startswith(("GIS_", "CUSTOMERIO_", "REDIS_", "SYNCFLEET_"))})
        from worker.settings import get_settings

        get_settings.cache_clear()
        from worker.app import app

        return app

    def flush(self) -> None:
        import redis

        r = redis.Redis.from_url(self.redis.url)
        r.flushdb()

    def redis_memory(self) -> dict[str, float]:
        import redis

        r = redis.Redis.from_url(self.redis.url)
        info = r.info("memory")
        sent = r.memory_usage("sf:gis:sent") or 0
        steps = r.memory_usage("sf:gis:steps") or 0
        def usage(pattern: str) -> float:
            return sum(r.memory_usage(k) or 0 for k in r.scan_iter(pattern, count=1000)) / 2**20

        return {"used_mb": info["used_memory"] / 2**20, "sent_mb": sent / 2**20,
                "results_mb": usage("celery-task-meta-*"), "fleet_mb": usage("sf:*"),
                "steps_mb": steps / 2**20, "people": r.hlen("sf:gis:sent"),
                "apps": r.hlen("sf:gis:steps")}

    def run_scan(self, app, timeout: float = 900) -> tuple[dict[str, Any], float]:
        from worker.gis_sync import state

        t0 = time.monotonic()
        started = app.send_task("gis.scan").get(timeout=timeout)
        assert started["status"] == "started", started
        while time.monotonic() - t0 < timeout:
            for run in state.runs(5):
                if run["run"] == started["run"]:
                    return run, time.monotonic() - t0
            time.sleep(0.2)
        raise TimeoutError("no run summary")

    # -- scenarios -------------------------------------------------------------------
    def initial(self, label: str, extra: dict[str, str], faults: dict[str, Any] | None = None,
                limit_rps: int | None = None) -> dict[str, Any]:
        self.stop_workers()
        self.flush()
        self.admin.do("POST", "/reset", json={})
        if faults:
            self.admin.do("POST", "/faults", json={"api": "customerio", **faults})
        if limit_rps:
            self.admin.do("POST", "/limits", json={"api": "customerio", "rps": limit_rps})
        base_mem = self.redis_memory()["used_mb"]
        self.start_workers(extra)
        app = self.app(extra)
        load = os.getloadavg()[0]
        run, seconds = self.run_scan(app)
        stats = self.admin.do("GET", "/stats")
        calls = self.admin.do("GET", "/requests", params={"api": "customerio"})["requests"]
        ts = [c["ts"] for c in calls]
        span = (max(ts) - min(ts)) if len(ts) > 1 else 0.0
        records = run.get("people_seen", 0) + run.get("applications_seen", 0)
        mem = self.redis_memory()
        result = {
            "label": label, "seconds": seconds, "records": records,
            "records_per_s": records / seconds, "cio_calls": sum(
                stats["requests"].get("customerio", {}).values()),
            "gis_calls": run.get("gis_calls"), "events": run.get("events_sent", 0),
            "people_updated": run.get("people_updated", 0),
            "worker_rss_mb": sum(rss_mb(w.pid) for w in self.workers),
            "redis_used_mb": mem["used_mb"], "redis_delta_mb": mem["used_mb"] - base_mem,
            "sent_hash_mb": mem["sent_mb"], "steps_hash_mb": mem["steps_mb"],
            "celery_results_mb": mem["results_mb"], "sf_keys_mb": mem["fleet_mb"],
            "cio_span_s": span, "over_budget": stats["over_budget"].get("customerio", 0),
            "schema_rejected": stats["rejected"].get("customerio", {}).get("schema", 0),
            "load_before": load,
        }
        ts.sort()
        result["max_in_1s_window"] = max(
            (sum(1 for u in ts[i:i + 400] if u < t + 1.0) for i, t in enumerate(ts)), default=0)
        if limit_rps:
            result["budget_share_run"] = result["cio_calls"] / (seconds * limit_rps)
            result["budget_share_sending"] = (len(calls) / (span * limit_rps)) if span else 0
        return result

    def steady(self, extra: dict[str, str]) -> dict[str, Any]:
        """After an initial sync: 1% of applications and people change, then one scan."""
        app = self.app(extra)
        people = self.admin.do("GET", "/world/people")["people"]
        apps = self.admin.do("GET", "/world/applications")["applications"]
        moved = self.admin.do("POST", "/advance", json={"share": 0.01, "people_share": 0.01,
                                                         "seed": 7})
        self.admin.do("DELETE", "/requests")
        run, seconds = self.run_scan(app)
        stats = self.admin.do("GET", "/stats")
        home = [a for a in apps if a["person_home_lc"] == "1340"]
        home_people = {a["person_id"] for a in home}
        people_lc = sum(1 for p in people if p["home_lc"]["id"] == "1340")
        return {
            "changed_apps": len(moved["applications_moved"]),
            "changed_people": len(moved["people_edited"]),
            "gis_calls": sum(stats["requests"].get("gis", {}).values()),
            "cio_calls": sum(stats["requests"].get("customerio", {}).values()),
            "events": run.get("events_sent", 0), "seconds": seconds,
            "people_read": run.get("people_seen", 0),
            "apps_read": run.get("applications_seen", 0),
            "original_gis_calls": -(-people_lc // 25) + people_lc,
            "original_note": f"{people_lc} people -> {-(-people_lc // 25)} pages of 25 + "
                             f"{people_lc} application requests ({len(home_people)} with "
                             "applications)",
        }

    def close(self) -> None:
        self.stop_workers()
        self.sandbox.terminate()
        self.sandbox.wait(20)
        self.redis.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--applications", type=int, default=15000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--only", default="", help="comma list of 1a,steady,1b,2,2b")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {"1a", "steady", "1b", "2", "2b"}
    bench = Bench(args)
    results, steady = [], None
    try:
        batch = {"CUSTOMERIO_USE_BATCH": "true", "GIS_MAX_RPS": "50"}
        single = {"CUSTOMERIO_USE_BATCH": "false", "GIS_MAX_RPS": "50"}
        if only & {"1a", "steady"}:
            results.append(bench.initial("1a initial sync, v2 batch, no latency", batch))
        if "steady" in only:
            steady = bench.steady(batch)
        if "1b" in only:
            results.append(bench.initial(
                "1b initial sync, one request per record, no latency", single))
        budget = {"CUSTOMERIO_MAX_RPS": "100"}
        if "2" in only:
            results.append(bench.initial(
                "2 one request per record, 100 rps budget, 50 ms latency",
                {**single, **budget}, faults={"latency_ms": 50}, limit_rps=100))
        if "2b" in only:
            results.append(bench.initial(
                "2b v2 batch, 100 rps budget, 50 ms latency", {**batch, **budget},
                faults={"latency_ms": 50}, limit_rps=100))
    finally:
        bench.close()
    keys = ["seconds", "records", "records_per_s", "cio_calls", "gis_calls", "events",
            "people_updated", "worker_rss_mb", "redis_used_mb", "redis_delta_mb",
            "sent_hash_mb", "steps_hash_mb", "celery_results_mb", "sf_keys_mb", "cio_span_s",
            "budget_share_run",
            "budget_share_sending", "max_in_1s_window", "over_budget", "schema_rejected",
            "load_before"]
    print("| Scenario | " + " | ".join(r["label"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for key in keys:
        cells = []
        for r in results:
            value = r.get(key, "")
            cells.append(f"{value:.2f}" if isinstance(value, float) else str(value))
        print(f"| {key} | " + " | ".join(cells) + " |")
    if steady:
        print()
        print("Steady state (1% changed):", steady)


if __name__ == "__main__":
    main()
