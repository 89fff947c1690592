"""Segment -> Voucherify migration, end to end against the sandbox (prints figures).

    .venv/bin/python bench/segment_migration.py [--profiles 20000]
        [--only fast,bulk,budget,original]

Starts a private Redis, `python -m sandbox` (its own process) with a world of N profiles,
and `celery -A worker worker` processes, then times `segment.migrate` until its summary.

- fast:     no latency, no budgets: profiles/s end to end, worker RSS peak, Redis memory peak
- bulk:     the same with VOUCHERIFY_BULK_SIZE=500 (slices of 1,000; sandbox bulk cap 1,000):
            Voucherify calls per 1,000 profiles beside the default's
- budget:   Segment at 100 req/s (sandbox limit and SEGMENT_MAX_RPS) with 50 ms latency:
            share of the Segment budget used between the first and the last Segment call,
            and the requests over 100 in any 1.0 s of their arrival at the sandbox (the
            published limit, counted strictly: without the sandbox's 3 % window grace);
            Voucherify is served by a second sandbox process, as it is another service
- original: the original tool's approach on the same data (sequential pages, traits and
            external ids per profile, one bulk per 100, no async-action reads): measured
            on the first 2,000 profiles without latency, and computed for 50 ms latency
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
os.environ.pop("REDIS_URL", None)  # always a private Redis

from redis_server import PrivateRedis, free_port  # noqa: E402

from bench.fleet import family, peak_rss_mb_per_process, status_kb, worker_command  # noqa: E402
from sandbox.credentials import env_for  # noqa: E402
from sandbox.testing import SandboxAdmin  # noqa: E402

LOGS = Path(tempfile.gettempdir())


def start_sandbox(port: int, profiles: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port),
            "--seed", "1", "--people", "10", "--applications", "10",
            "--profiles", str(profiles)]
    log = open(LOGS / f"bench-seg-sandbox-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=1).raise_for_status()
            return proc
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("sandbox did not start")


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen:
    """The shipped worker (the Procfile's command: prefork, 4 processes)."""
    log = open(LOGS / f"bench-seg-{name}.log", "w")  # noqa: SIM115
    return subprocess.Popen(worker_command(name), cwd=ROOT, env={**env, "LOG_LEVEL": "WARNING"},
                            stdout=log, stderr=subprocess.STDOUT)


def rss_mb(pids: list[int]) -> float:
    """Resident memory now of these workers and their pool processes, MB."""
    return sum(status_kb(p, "VmRSS") for pid in pids for p in family(pid)) / 1024


def migrate(redis_url: str, url: str, profiles: int, env: dict[str, str],
            workers: int = 1, vurl: str | None = None) -> dict[str, Any]:
    """One run through real worker processes; figures from the summary and the sandbox
    (Voucherify's at `vurl` when it is a sandbox of its own)."""
    from worker import store
    from worker.app import app
    from worker.segment_migration import state
    from worker.segment_migration.start import new_run_id

    r = store.connect(redis_url)
    r.flushall()
    admin = SandboxAdmin(url)
    admin.clear_requests()
    vurl = vurl or url
    vadmin = SandboxAdmin(vurl)
    vadmin.clear_requests()
    requests.get(f"{vurl}/admin/voucherify/customers", timeout=60)
    full_env = {**os.environ, **env_for(url), "REDIS_URL": redis_url, **env,
                "VOUCHERIFY_API_URL": f"{vurl}/voucherify"}
    procs = [start_worker(full_env, f"bench{i}") for i in range(workers)]
    time.sleep(4)  # workers up (no ping: keep the bench simple)
    run_id = new_run_id()
    app.send_task("segment.migrate", kwargs={"run_id": run_id})
    peak_rss, peak_redis, summary = 0.0, 0, None
    try:
        while summary is None:
            time.sleep(0.5)
            peak_rss = max(peak_rss, rss_mb([p.pid for p in procs]))
            peak_redis = max(peak_redis, int(r.info("memory")["used_memory"]))
            summary = state.get_summary(run_id)
        hwm = peak_rss_mb_per_process([p.pid for p in procs])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    stats, vstats = admin.stats(), vadmin.stats()
    seg_times = [q["ts"] for q in admin.requests(api="segment")]
    seg_span = max(seg_times) - min(seg_times)
    customers = vadmin.voucherify_customers()["customers"]
    return {
        "profiles": summary["profiles_seen"], "duration_s": summary["duration_s"],
        "profiles_per_s": summary["profiles_seen"] / summary["duration_s"],
        "upserted": summary["customers_upserted"], "customers_stored": len(customers),
        "skipped": len(summary["skipped"]), "failed": len(summary["failed"]),
        "warnings": len(summary["warnings"]), "status": summary["status"],
        "segment_calls": sum(stats["requests"]["segment"].values()),
        "segment_span_s": seg_span,
        "segment_rps": len(seg_times) / seg_span if seg_span else 0.0,
        "voucherify_calls": sum(vstats["requests"]["voucherify"].values()),
        "voucherify_per_1000": 1000 * sum(vstats["requests"]["voucherify"].values())
        / max(1, summary["profiles_seen"]),
        "over_budget": stats["over_budget"]["segment"],
        "over_100_in_1s": over_limit(seg_times, 100),
        "share_of_100rps": len(seg_times) / seg_span / 100 if seg_span else 0.0,
        "early_after_429": stats["early_after_429"]["segment"],
        "ignored_retry_after": stats.get("ignored_retry_after", {}).get("segment"),
        "rejected": vstats["rejected"]["voucherify"],
        "worker_rss_mb_all_processes": peak_rss, "peak_rss_mb_per_worker_process": hwm,
        "redis_used_mb": peak_redis / 2**20,
    }


def over_limit(times: list[float], limit: int, period: float = 1.0) -> int:
    """Requests that arrived when `limit` others had already arrived in the `period`
    seconds before them (each one over the limit, counted once)."""
    times, over, low = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[low] <= t - period:
            low += 1
        over += i - low >= limit
    return over


def original(url: str, limit: int) -> dict[str, Any]:
    """The original tool's loop, sequential, on the first `limit` profiles."""
    env = env_for(url)
    seg, vou = requests.Session(), requests.Session()
    seg.auth = (env["SEGMENT_ACCESS_TOKEN"], "")
    vou.headers.update({"X-App-Id": env["VOUCHERIFY_APPLICATION_ID"],
                        "X-App-Token": env["VOUCHERIFY_SECRET_KEY"]})
    base = f"{env['SEGMENT_PROFILES_URL']}/v1/spaces/{env['SEGMENT_SPACE_ID']}" \
           "/collections/users/profiles"
    calls = {"segment": 0, "voucherify": 0}
    started, done, cursor = time.perf_counter(), 0, "0"
    while cursor and done < limit:
        page = seg.get(base, params={"limit": 100, "next": cursor}).json()
        calls["segment"] += 1
        batch = []
        for row in page["data"]:
            sid = requests.utils.quote(row["segment_id"], safe="")
            traits = seg.get(f"{base}/segment_id:{sid}/traits", params={"limit": 15}).json()
            ids = seg.get(f"{base}/segment_id:{sid}/external_ids").json()
            calls["segment"] += 2
            user = next((e["id"] for e in ids["data"] if e["type"] == "user_id"), None)
            t = traits["traits"]
            batch.append({"source_id": user or f"null-{row['segment_id']}",  # was null
                          "name": t.get("name"), "email": t.get("email")})
        vou.post(f"{env['VOUCHERIFY_API_URL']}/v1/customers/bulk/async",
                 json=[{k: v for k, v in c.items() if v is not None} for c in batch])
        calls["voucherify"] += 1
        done += len(page["data"])
        cursor = page["cursor"]["next"] if page["cursor"]["has_more"] else ""
    return {"profiles": done, "seconds": time.perf_counter() - started, **calls}


def show(title: str, figures: dict[str, Any]) -> None:
    print(f"\n## {title}")
    for name, value in figures.items():
        print(f"  {name:20} {value:,.2f}" if isinstance(value, float) else
              f"  {name:20} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20000)
    parser.add_argument("--only", default="fast,bulk,budget,original")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    print(f"load average at start: {os.getloadavg()}")
    port = free_port()
    sandbox = start_sandbox(port, args.profiles)
    url = f"http://127.0.0.1:{port}"
    # Voucherify in a process of its own for the budget run: as the real services are, so
    # that its bulk work does not delay when Segment's simulator stamps an arrival.
    vport = free_port()
    vsandbox = start_sandbox(vport, 10)
    vurl = f"http://127.0.0.1:{vport}"
    admin = SandboxAdmin(url)
    try:
        with PrivateRedis() as redis:
            os.environ["REDIS_URL"] = redis.url
            unlimited = {"SEGMENT_MAX_RPS": "100000", "VOUCHERIFY_MAX_RPM": "100000"}
            if "fast" in wanted:
                admin.reset()
                admin.limits("segment", rps=0)
                admin.limits("voucherify", rpm=0)
                show("fast: no latency, no budgets, 2 workers x 4 prefork processes",
                     migrate(redis.url, url, args.profiles, unlimited, workers=2))
            if "bulk" in wanted:
                admin.reset()
                admin.limits("segment", rps=0)
                admin.limits("voucherify", rpm=0)
                requests.post(f"{url}/admin/voucherify/settings", json={"bulk_cap": 1000},
                              timeout=10)
                show("bulk: VOUCHERIFY_BULK_SIZE=500, slices of 1000",
                     migrate(redis.url, url, args.profiles,
                             {**unlimited, "VOUCHERIFY_BULK_SIZE": "500",
                              "SEGMENT_SLICE_SIZE": "1000"}, workers=2))
            if "budget" in wanted:
                admin.reset()
                SandboxAdmin(vurl).reset()
                admin.limits("segment", rps=100)
                admin.faults("segment", latency_ms=50)
                show("budget: Segment 100 req/s + 50 ms latency, 1 worker x 4 prefork processes",
                     migrate(redis.url, url, args.profiles,
                             {"SEGMENT_MAX_RPS": "100", "VOUCHERIFY_MAX_RPM": "2000"}, vurl=vurl))
            if "original" in wanted:
                admin.reset()
                admin.limits("segment", rps=0)
                admin.limits("voucherify", rpm=0)
                measured = original(url, 2000)
                show("original tool, measured (no latency, first 2,000 profiles)", measured)
                per_profile = measured["seconds"] / measured["profiles"]
                calls = args.profiles * 2 + args.profiles / 100 * 2
                show(f"original tool, computed for {args.profiles:,} profiles", {
                    "no_latency_s": per_profile * args.profiles,
                    "calls": calls,
                    "at_50ms_latency_s": per_profile * args.profiles + calls * 0.05,
                    "at_100rps_floor_s": args.profiles * 2.01 / 100,
                })
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        vsandbox.terminate()
        vsandbox.wait(10)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
