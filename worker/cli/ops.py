"""`syncfleet check`, `health` and `metrics`: is it set up, is it working, what is it
doing."""

from __future__ import annotations

import argparse

from worker.cli import display
from worker.cli.display import EXIT_FAILED, EXIT_OK, emit_json
from worker.settings import get_settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("check", help="Redis, and each configured credential "
                                         "(one cheap read-only call per API)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=run_check, needs_redis=False)
    health = sub.add_parser("health", help="exit 0 if the fleet is working, 1 and why not")
    health.add_argument("--json", action="store_true")
    only = health.add_mutually_exclusive_group()
    only.add_argument("--beat", action="store_true",
                      help="only beat's own liveness: its schedule file is fresh (run in "
                           "beat's directory; compose's health check of beat)")
    only.add_argument("--worker", metavar="NODE",
                      help="only this worker's liveness: it answers a ping (compose's health "
                           "check of a worker; passes while Redis is down: a restart of the "
                           "worker would not fix that)")
    health.set_defaults(run=run_health, needs_redis=False)
    serve = sub.add_parser("metrics", help="serve Prometheus metrics on METRICS_PORT "
                                           "(behind METRICS_BASIC_AUTH)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, help="default: METRICS_PORT")
    serve.add_argument("--json", action="store_true", help="(accepted; the server logs)")
    # Starts without Redis: it answers `syncfleet_redis_up 0` until Redis is there.
    serve.set_defaults(run=run_metrics, needs_redis=False)


def run_check(args: argparse.Namespace) -> int:
    from worker.checks import run_checks

    checks = run_checks(get_settings())
    failed = [c for c in checks if c.failed]
    if args.json:
        emit_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        display.table("syncfleet check", ("what", "status", "detail"),
                      ([c.name, _colour(c.status), c.detail] for c in checks))
        if failed:
            print(f"{len(failed)} failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return EXIT_FAILED if failed else EXIT_OK


def _colour(status: str) -> str:
    return {"ok": "[green]ok[/green]", "failed": "[red]failed[/red]"}.get(status, status)


def run_health(args: argparse.Namespace) -> int:
    from worker import health

    if args.beat:
        result = health.beat_verdict()
    elif args.worker:
        result = health.worker_verdict(args.worker, _answers_ping)
    else:
        result = health.verdict(get_settings())
    if args.json:
        emit_json(result.as_dict())
    else:
        print(("healthy: " if result.healthy else "unhealthy: ") + result.reason)
    return EXIT_OK if result.healthy else EXIT_FAILED


def _answers_ping(node: str, timeout: float) -> bool:
    from worker.app import app

    return any(node in reply for reply in app.control.ping(destination=[node],
                                                            timeout=timeout) or [])


def run_metrics(args: argparse.Namespace) -> int:
    from worker import exporter, logs

    logs.setup_process()
    get_settings().require("METRICS_BASIC_AUTH")
    exporter.serve(args.host, args.port)
    return EXIT_OK
