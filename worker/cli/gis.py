"""`syncfleet gis runs|failed|scan|backfill` (and `pause|resume`, in control.py;
`explain`, in explain.py): the GIS -> customer.io job."""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli import control, display, explain, sending
from worker.cli.display import EXIT_OK, Parser, emit_json, fail_line
from worker.cli.shared import add_run_filters, confirm, print_runs, run_filters

FOLLOW_BARS = ("records synced",)


def add_commands(sub: argparse._SubParsersAction) -> None:
    gis = sub.add_parser("gis", help="the GIS -> customer.io sync")
    commands = gis.add_subparsers(dest="gis_command", required=True, parser_class=Parser)
    runs = commands.add_parser("runs", help="the latest scans and backfills")
    add_run_filters(runs, default_n=10)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(run=show_runs)
    failed = commands.add_parser("failed", help="records failing (retried) and dead")
    drop = failed.add_mutually_exclusive_group()
    drop.add_argument("--drop", metavar="ID", help="forget one record for good (kind:id or id)")
    drop.add_argument("--drop-all", action="store_true", help="forget every one of them "
                                                               "(asks first)")
    failed.add_argument("--yes", action="store_true", help="--drop-all without asking")
    failed.add_argument("--json", action="store_true")
    failed.set_defaults(run=show_failed)
    scan = commands.add_parser("scan", help="scan GIS now (beat does it every interval)")
    _follow_options(scan)
    scan.set_defaults(run=start_scan)
    backfill = commands.add_parser("backfill", help="re-send the history of a date range "
                                                    "or of given records")
    backfill.add_argument("--since", type=iso_date, help="ISO-8601 date (YYYY-MM-DD)")
    backfill.add_argument("--person", action="append", default=[], metavar="ID")
    backfill.add_argument("--application", action="append", default=[], metavar="ID")
    _follow_options(backfill)
    backfill.set_defaults(run=start_backfill)
    control.add_gis_commands(commands)
    explain.add_gis_command(commands)


def _follow_options(command: argparse.ArgumentParser) -> None:
    sending.add_options(command, "show progress until the run's summary")


def iso_date(text: str) -> str:
    from worker.gis_sync.ladder import to_unix

    if to_unix(text) is None:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date: {text!r} (e.g. 2026-01-31)")
    return text


def show_runs(args: argparse.Namespace) -> int:
    from worker import run_history

    return print_runs(run_history.recent(**run_filters(args), job="gis"), args.json,
                      "no GIS runs yet")


def show_failed(args: argparse.Namespace) -> int:
    from worker.gis_sync import failed
    from worker.gis_sync.state import workspace
    from worker.settings import get_settings

    ws = workspace(get_settings())
    if args.drop:
        if not failed.drop(ws, args.drop):
            fail_line(f"no failed or dead record {args.drop}", "not_found")
        dropped: dict[str, Any] = {"dropped": args.drop}
        emit_json(dropped) if args.json else print(f"dropped {args.drop}")
        return EXIT_OK
    if args.drop_all:
        sizes = failed.sizes(ws)
        if not args.yes:
            confirm(f"forget {sizes['failed']} failing and {sizes['dead']} dead GIS records "
                    f"of workspace {ws} for good?", "nothing dropped")
        count = failed.drop_all(ws)
        emit_json({"dropped": count}) if args.json else print(f"dropped {count} records")
        return EXIT_OK
    failing, dead = failed.failing(ws), failed.dead(ws)
    if args.json:
        emit_json({"failed": failing, "dead": dead})
        return EXIT_OK
    out = display.console()
    display.table(f"Failing, retried ({len(failing)})",
                  ("record", "attempts", "next retry", "reason"),
                  ([name, f["attempts"], _when(f["next_at"]), f["reason"]]
                   for name, f in sorted(failing.items())), out)
    display.table(f"Dead, given up ({len(dead)})", ("record", "attempts", "since", "reason"),
                  ([name, f["attempts"], _when(f["first_at"]), f["reason"]]
                   for name, f in sorted(dead.items())), out)
    return EXIT_OK


def _when(ts: float) -> str:
    from worker.formats import iso

    return iso(ts)


def start_scan(args: argparse.Namespace) -> int:
    return _start(args, "gis.scan", {})


def start_backfill(args: argparse.Namespace) -> int:
    kwargs = {"since": args.since, "person_ids": args.person or None,
              "application_ids": args.application or None}
    return _start(args, "gis.backfill", kwargs)


def _start(args: argparse.Namespace, task: str, kwargs: dict[str, Any]) -> int:
    """Send the task, wait for it to start the run, then (with --follow) watch it."""
    deadline = sending.Deadline(args.timeout)
    started = sending.start(task, kwargs, deadline, args.queue_anyway)
    if started.get("status") != "started":
        emit_json(started) if args.json else print(f"{task}: {started.get('reason') or started}")
        return EXIT_OK
    run_id = started["run_id"]
    out = display.console(for_json=args.json)
    if not args.json:
        out.print(f"run [bold]{run_id}[/bold] started")
    if not args.follow:
        if args.json:
            emit_json(started)
        return EXIT_OK
    summary = display.follow(out, lambda: _progress(run_id), FOLLOW_BARS,
                             deadline.follow_wait())
    if summary is None:
        raise deadline.ran_out(f"run {run_id} was still running (see `syncfleet gis runs`)")
    if args.json:
        emit_json(summary)
    else:
        print_summary(out, summary)
    return display.exit_code(summary)


def _progress(run_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from worker.gis_sync.run_state import GIS

    # An ended run is its summary alone (its record goes when the summary is written).
    summary = GIS.summary(run_id)
    record = summary or GIS.get(run_id)
    if record is None:  # it ended in between
        summary = GIS.summary(run_id)
        record = summary or {}
    done = record.get("people_seen", 0) + record.get("applications_seen", 0)
    walking = summary is None and GIS.progress(run_id)["walks_open"] > 0
    total = None if walking else record.get("records_launched", 0)
    return {FOLLOW_BARS[0]: (done, total)}, summary


def print_summary(out: Any, summary: dict[str, Any], limit: int = 20) -> None:
    names = ("status", "error", "kind", "cold_start", "since", "people_seen", "people_updated",
             "people_unchanged", "people_failed", "applications_seen", "applications_failed",
             "events_sent", "events_skipped", "fields_dropped", "gis_calls", "cio_calls",
             "duration_s")
    rows = [(n, summary[n]) for n in names if summary.get(n) not in (None, "")]
    rows += [(n, v) for n, v in sorted(summary.items()) if n.startswith("moves_")]
    if summary.get("missing"):
        rows.append(("not found in GIS", summary["missing"]))
    display.key_values(f"GIS run {summary['run_id']}", rows, out)
    errors = summary.get("errors") or []
    if errors:
        display.table(f"Errors ({len(errors)}, first {min(limit, len(errors))})",
                      ("kind", "id", "reason"),
                      ([e.get("kind"), e.get("id"), e.get("reason")] for e in errors[:limit]),
                      out)
    warnings = summary.get("warnings") or []
    if warnings:
        display.table(f"Fields dropped ({len(warnings)}, first {min(limit, len(warnings))})",
                      ("kind", "id", "field", "reason"),
                      ([w.get("kind"), w.get("id"), w.get("field"), w.get("reason")]
                       for w in warnings[:limit]), out)
