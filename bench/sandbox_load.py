"""Load benchmark of the sandbox: simple requests per second on loopback, faults off.

Starts `python -m sandbox` as its own process (one uvicorn process, as shipped), then
drives it from several client processes, each with one keep-alive connection sending
requests back to back (http.client: lighter than requests, so the clients steal less
CPU from the server on a small machine). Prints requests/s and latency per scenario, and
the server's CPU share, hence requests/s per fully used server core (the clients run on
the same 2 cores, so the measured req/s is a lower bound).

    .venv/bin/python bench/sandbox_load.py [--seconds 5] [--clients 3]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import credentials  # noqa: E402

CIO_AUTH = "Basic " + base64.b64encode(
    f"{credentials.CUSTOMERIO_SITE_ID}:{credentials.CUSTOMERIO_API_KEY}".encode()).decode()
IDENTIFY_BODY = {"email": "person@example.org", "created_at": 1700000000, "first_name": "Ann",
                 "last_name": "Silva", "status": "applied", "interviewed": True,
                 "nps_score": 8, "home_lc": "Sandbox LC"}
GIS_QUERY = {"query": "query($id: ID!) { person(id: $id) { id email updated_at } }",
             "variables": {"id": "3000007"}}
GIS_PAGE = {"query": "{ allPeople(per_page: 10, filters: {home_committee: 1340}) "
                     "{ data { id updated_at } paging { total_items } } }"}


def scenario(name: str) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path template with {i}, headers, body) of one scenario."""
    json_headers = {"Content-Type": "application/json"}
    if name == "customerio-identify":
        return ("PUT", "/customerio/api/v1/customers/{i}",
                {**json_headers, "Authorization": CIO_AUTH}, json.dumps(IDENTIFY_BODY).encode())
    if name == "gis-person":
        return ("POST", "/gis/graphql",
                {**json_headers, "Authorization": credentials.GIS_ACCESS_TOKEN},
                json.dumps(GIS_QUERY).encode())
    if name == "gis-page":
        return ("POST", "/gis/graphql",
                {**json_headers, "Authorization": credentials.GIS_ACCESS_TOKEN},
                json.dumps(GIS_PAGE).encode())
    raise ValueError(name)


def client(port: int, name: str, seconds: float, worker: int, out: Any) -> None:
    method, path, headers, body = scenario(name)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    i = worker * 1_000_000
    while (start := time.perf_counter()) < deadline:
        conn.request(method, path.format(i=i), body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        errors += response.status >= 300
        i += 1
    conn.close()
    out.put((len(latencies), errors, latencies[::10]))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(port: int, name: str, seconds: float, clients: int, server_pid: int) -> dict[str, Any]:
    out: mp.Queue = mp.Queue()
    cpu_before = cpu_seconds(server_pid)
    procs = [mp.Process(target=client, args=(port, name, seconds, w, out))
             for w in range(clients)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - cpu_before
    total = sum(r[0] for r in results)
    sample = sorted(x for r in results for x in r[2])
    return {"scenario": name, "requests": total, "errors": sum(r[1] for r in results),
            "rps": total / max(elapsed, seconds),
            # What one fully used core would serve: robust to clients and neighbours
            # competing for the same CPUs.
            "per_core": total / server_cpu if server_cpu else float("nan"),
            "server_cpu": server_cpu / max(elapsed, seconds),
            "p50_ms": 1000 * statistics.median(sample),
            "p99_ms": 1000 * sample[int(len(sample) * 0.99)]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/admin/stats")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the sandbox did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--scenarios", default="customerio-identify,gis-person,gis-page")
    args = parser.parse_args()
    from datetime import UTC, datetime

    from sandbox.worlds.gis import World

    started = time.perf_counter()
    World(1, 5000, 15000, datetime.now(UTC))
    print(f"GIS world of 5,000 people + 15,000 applications generated in "
          f"{time.perf_counter() - started:.2f} s")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--people", "5000",
         "--applications", "15000", "--profiles", "2000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_ready(port)
        print(f"sandbox pid {server.pid} on port {port}; {args.clients} client processes, "
              f"{args.seconds:.0f} s per scenario, {os.cpu_count()} CPUs")
        for name in args.scenarios.split(","):
            r = run(port, name, args.seconds, args.clients, server.pid)
            print(f"{r['scenario']:<20} {r['rps']:6.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
                  f"p99 {r['p99_ms']:.2f} ms  server CPU {r['server_cpu']:.0%}  "
                  f"=> {r['per_core']:.0f} req/s per server core  "
                  f"({r['requests']} requests, {r['errors']} non-2xx)")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
