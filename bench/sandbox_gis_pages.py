"""What a GIS page costs the sandbox as its world grows (issue 13).

For each size, starts `python -m sandbox` (its own process, as shipped), measures the
time until it answers (world build included) and its RSS, then walks the three lists a
GIS scan reads, over HTTP, exactly as the fleet's client does (`worker/clients/gis.py`:
its query texts and sorts, `per_page` 500, oldest change first, the lower bound on
`last_interaction.from` moved to the last `updated_at` of each full page):
people of the home LC, applications of its people, applications to its opportunities.
Prints build time, RSS (and bytes per record above an empty sandbox), mean / p95
milliseconds per page as the client sees them, and the sandbox process's CPU time per
page (robust to other load on the machine), per size.

    .venv/bin/python bench/sandbox_gis_pages.py [--sizes 5000x15000,50000x150000,200000x600000]
        [--profiles N] [--max-pages N]

`--profiles` sets the Segment world's size (default: as many profiles as people; the
CLI's own default is 20,000). `--max-pages` stops each walk after N pages (for slow
builds); by default every page is read. Asserts nothing; one client connection, faults
and budgets off.
"""

from __future__ import annotations

import argparse
import http.client
import json
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
from worker.clients.gis import (  # noqa: E402
    APPLICATIONS_QUERY,
    APPLICATIONS_SORT,
    PEOPLE_QUERY,
    PEOPLE_SORT,
)

PER_PAGE = 500
HOME = credentials.GIS_HOME_LC_ID
WALKS = (("people", PEOPLE_QUERY, "allPeople", PEOPLE_SORT, {"home_committee": HOME}),
         ("outgoing", APPLICATIONS_QUERY, "allOpportunityApplication", APPLICATIONS_SORT,
          {"person_home_lc": HOME}),
         ("incoming", APPLICATIONS_QUERY, "allOpportunityApplication", APPLICATIONS_SORT,
          {"opportunity_home_lc": HOME}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Sandbox:
    """`python -m sandbox` with a world of the given size, and one keep-alive connection."""

    def __init__(self, people: int, applications: int, profiles: int) -> None:
        self.port = free_port()
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", str(self.port), "--seed", "1",
             "--people", str(people), "--applications", str(applications),
             "--profiles", str(profiles), "--segment-rps", "0", "--voucherify-rpm", "0"],
            cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.conn = self._wait_ready()
        self.ready_s = time.perf_counter() - started
        self.rss = rss_bytes(self.proc.pid)

    def _wait_ready(self, timeout: float = 600) -> http.client.HTTPConnection:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the sandbox exited")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
                conn.request("GET", "/admin/stats")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return conn
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the sandbox did not start")

    def query(self, text: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables})
        self.conn.request("POST", "/gis/graphql", body=body, headers={
            "Content-Type": "application/json", "Authorization": credentials.GIS_ACCESS_TOKEN})
        response = self.conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200 or answer.get("errors"):
            raise RuntimeError(f"{response.status}: {str(answer)[:300]}")
        return answer["data"]

    def stop(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(30)


def walk(sandbox: Sandbox, text: str, root: str, sort: str, filters: dict[str, Any],
         max_pages: int | None) -> tuple[list[float], int]:
    """The client's walk (worker/clients/gis.py `_walk`); seconds per page, records read."""
    timings: list[float] = []
    seen: set[str] = set()
    lower, page = None, 1
    while max_pages is None or len(timings) < max_pages:
        window = dict(filters)
        if lower:
            window["last_interaction"] = {"from": lower}
        variables = {"page": page, "per_page": PER_PAGE, "sort": sort, "filters": window}
        started = time.perf_counter()
        rows = [r for r in sandbox.query(text, variables)[root]["data"] if r]
        timings.append(time.perf_counter() - started)
        seen.update(str(r["id"]) for r in rows)
        if len(rows) < PER_PAGE:
            break
        last = rows[-1]["updated_at"]
        if last and last != lower:
            lower, page = last, 1
        else:
            page += 1
    return timings, len(seen)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def measure(people: int, applications: int, profiles: int, empty_rss: int,
            max_pages: int | None) -> None:
    sandbox = Sandbox(people, applications, profiles)
    try:
        records = people + applications + profiles
        per_record = (sandbox.rss - empty_rss) / records
        print(f"\n## {people:,} people, {applications:,} applications, {profiles:,} profiles")
        print(f"ready in {sandbox.ready_s:.1f} s; RSS {sandbox.rss / 2**20:.0f} MB "
              f"({per_record:.0f} bytes per record above an empty sandbox)")
        every: list[float] = []
        cpu_total = 0.0
        for name, text, root, sort, filters in WALKS:
            cpu = cpu_seconds(sandbox.proc.pid)
            timings, read = walk(sandbox, text, root, sort, filters, max_pages)
            cpu = cpu_seconds(sandbox.proc.pid) - cpu
            every += timings
            cpu_total += cpu
            print(f"  {name:<9} {len(timings):5d} pages, {read:7d} records: "
                  f"mean {1000 * statistics.mean(timings):6.1f} ms, "
                  f"p95 {1000 * p95(timings):6.1f} ms per page; "
                  f"sandbox CPU {1000 * cpu / len(timings):6.1f} ms a page")
        print(f"  all       {len(every):5d} pages: mean {1000 * statistics.mean(every):6.1f} ms,"
              f" p95 {1000 * p95(every):6.1f} ms per page; sandbox CPU "
              f"{1000 * cpu_total / len(every):.1f} ms a page; "
              f"RSS after the walks {rss_bytes(sandbox.proc.pid) / 2**20:.0f} MB")
    finally:
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000x15000,50000x150000,200000x600000",
                        help="people x applications, comma separated")
    parser.add_argument("--profiles", type=int, default=None,
                        help="Segment profiles per world (default: as many as people)")
    parser.add_argument("--max-pages", type=int, default=None,
                        help="stop each walk after this many pages")
    args = parser.parse_args()
    empty = Sandbox(0, 0, 0)
    empty_rss = empty.rss
    empty.stop()
    print(f"{os.cpu_count()} CPUs; an empty sandbox: RSS {empty_rss / 2**20:.0f} MB")
    for size in args.sizes.split(","):
        people, applications = (int(n) for n in size.split("x"))
        profiles = people if args.profiles is None else args.profiles
        measure(people, applications, profiles, empty_rss, args.max_pages)


if __name__ == "__main__":
    main()
