"""Figures for the Segment and Voucherify simulators (prints them; asserts nothing).

    .venv/bin/python bench/sandbox_segment_voucherify.py [--profiles 20000] [--seconds 3]

- time to generate the Segment profile world (the sandbox's start and /admin/reset cost);
- time to validate one 100-customer bulk body: openapi-core vs the derived validator;
- Segment traits GETs per second and Voucherify bulk round trips (POST + polls until
  DONE) over loopback, one client thread, faults off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import requests
from openapi_core.testing import MockRequest

from sandbox import credentials, specs, voucherify
from sandbox.testing import SandboxServer
from sandbox.worlds.segment import ProfileWorld


def best_of(runs: int, work) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


def customers(n: int) -> list[dict]:
    return [{"source_id": f"u-{i}", "name": "Zoë Nowak", "email": f"z{i}@example.com",
             "phone": "+48 600 100 200", "birthdate": "1990-05-17",
             "address": {"city": "Kraków", "country": "PL"}, "metadata": {"plan": "pro"}}
            for i in range(n)]


def validation_figures() -> None:
    body = customers(100)
    raw = json.dumps(body).encode()
    headers = {"X-App-Id": "a", "X-App-Token": "b"}
    api = specs.openapi(specs.VOUCHERIFY_CUSTOMERS)
    voucherify.bulk_validator()

    def core() -> None:
        api.validate_request(MockRequest("http://sandbox", "post", voucherify.BULK_PATH,
                                         headers=headers, data=raw))

    print(f"validate 100 customers, openapi-core:      {best_of(5, core) * 1000:7.1f} ms")
    derived = best_of(5, lambda: voucherify.bulk_errors(body))
    print(f"validate 100 customers, derived validator: {derived * 1000:7.1f} ms")


def http_figures(profiles: int, seconds: float) -> None:
    with SandboxServer(profiles=profiles, segment_rps=0) as sandbox:
        seg = requests.Session()
        seg.auth = (credentials.SEGMENT_ACCESS_TOKEN, "")
        base = f"{sandbox.url}/segment/v1/spaces/{credentials.SEGMENT_SPACE_ID}" \
               "/collections/users/profiles"
        ids = [p.segment_id for p in sandbox.ctx.data["segment"].profiles]
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            seg.get(f"{base}/segment_id:{ids[done % len(ids)]}/traits", params={"limit": 200})
            done += 1
        print(f"segment traits GETs, one thread:  {done / seconds:7.0f} req/s")

        vf = requests.Session()
        vf.headers.update({"X-App-Id": credentials.VOUCHERIFY_APPLICATION_ID,
                           "X-App-Token": credentials.VOUCHERIFY_SECRET_KEY})
        root = f"{sandbox.url}/voucherify/v1"
        posts = []
        for _ in range(10):
            start = time.perf_counter()
            vf.post(f"{root}/customers/bulk/async", json=customers(100)).raise_for_status()
            posts.append(time.perf_counter() - start)
        print(f"voucherify bulk POST of 100 customers: median "
              f"{statistics.median(posts) * 1000:.1f} ms (incl. schema check)")


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--profiles", type=int, default=20000)
    args.add_argument("--seconds", type=float, default=3)
    opts = args.parse_args()
    took = best_of(3, lambda: ProfileWorld(1, opts.profiles))
    print(f"profile world of {opts.profiles}: {took:.2f} s")
    validation_figures()
    http_figures(opts.profiles, opts.seconds)


if __name__ == "__main__":
    main()
