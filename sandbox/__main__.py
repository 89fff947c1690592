"""`python -m sandbox`: serve the four simulated APIs on one port and print how to use them."""

from __future__ import annotations

import argparse
import json
import socket
from dataclasses import fields
from typing import Any

import uvicorn

from sandbox.app import create_app
from sandbox.config import APIS, Faults, SandboxConfig, parse_now
from sandbox.context import Sandbox
from sandbox.credentials import env_for
from sandbox.pauses import keep_collections_short

LIMIT_FLAGS = ("rps", "rpm", "bulk_per_hour")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox",
                                description="Local simulators of GIS, customer.io, Segment "
                                            "and Voucherify on one port.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--people", type=int, default=5000)
    p.add_argument("--applications", type=int, default=15000)
    p.add_argument("--profiles", type=int, default=20000)
    p.add_argument("--now", help="world anchor (ISO-8601); default: start time")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--max-recorded", type=int, default=200_000, metavar="N",
                   help="requests kept in the recording (with their bodies); benchmarks "
                        "keep few, so the sandbox's memory does not grow with the run")
    for api in APIS:
        group = p.add_argument_group(f"{api} budget and faults")
        for kind in LIMIT_FLAGS:
            group.add_argument(f"--{api}-{kind.replace('_', '-')}", type=float,
                               dest=f"limit__{api}__{kind}", metavar="N",
                               help=f"{api} budget ({kind}); 0 = unlimited")
        for f in fields(Faults):
            parse = str if f.name == "error_statuses" else float  # statuses: "502,503"
            group.add_argument(f"--{api}-{f.name.replace('_', '-')}", type=parse,
                               dest=f"fault__{api}__{f.name}", metavar="V")
    return p


def config_from(args: argparse.Namespace) -> SandboxConfig:
    # Modules apply their service's default budget (Segment 100 rps, Voucherify 2,000 rpm)
    # unless a flag sets one; 0 = unlimited.
    limits: dict[str, dict[str, Any]] = {}
    faults: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if value is None or "__" not in dest:
            continue
        what, api, name = dest.split("__")
        if what == "limit":
            limits.setdefault(api, {})[name] = value or None
        elif name == "error_statuses":
            faults.setdefault(api, {})[name] = [int(s) for s in value.split(",")]
        else:
            integral = name in ("burst_429", "retry_after")
            faults.setdefault(api, {})[name] = int(value) if integral else value
    return SandboxConfig(seed=args.seed, people=args.people, applications=args.applications,
                         profiles=args.profiles, now=parse_now(args.now), faults=faults,
                         limits=limits, max_recorded=args.max_recorded)


def banner(url: str, ctx: Sandbox) -> str:
    env, config = env_for(url), ctx.config
    limits = {api: {k: v for k, v in ctx.limits_of(api).items() if v}
              for api in ctx.apis}
    lines = [f"syncfleet sandbox on {url}",
             f"  GIS          {env['GIS_API_URL']}/graphql  (token {env['GIS_ACCESS_TOKEN']})",
             f"  GIS auth     {env['GIS_AUTH_URL']}",
             f"  customer.io  {env['CUSTOMERIO_TRACK_URL']}  (Basic "
             f"{env['CUSTOMERIO_SITE_ID']}:{env['CUSTOMERIO_API_KEY']})",
             f"  Segment      {env['SEGMENT_PROFILES_URL']}  (Basic "
             f"{env['SEGMENT_ACCESS_TOKEN']}:, space {env['SEGMENT_SPACE_ID']})",
             f"  Voucherify   {env['VOUCHERIFY_API_URL']}  (X-App-Id "
             f"{env['VOUCHERIFY_APPLICATION_ID']}, X-App-Token {env['VOUCHERIFY_SECRET_KEY']})",
             f"  admin        {url}/admin  (stats, requests, faults, limits, reset, advance)",
             f"  world        {json.dumps({**config.world(), 'now': ctx.now.isoformat()})}",
             f"  limits       {json.dumps({a: v for a, v in limits.items() if v})}",
             f"  faults       {json.dumps(config.faults)}",
             "", "# point the fleet at it:"]
    lines += [f"export {name}={value}" for name, value in env.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    app = create_app(config_from(args))
    # Bind first, so that --port 0 prints the port the OS picked.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(banner(f"http://{shown_host}:{port}", app.state.sandbox), flush=True)
    keep_collections_short()  # the world is built: out of the collector's way
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.access_log,
                            timeout_graceful_shutdown=1, lifespan="off", backlog=2048)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
