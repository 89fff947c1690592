"""`syncfleet migrate [explain ID]`, `status` and `runs`: the migration, and the runs of
both jobs."""

from __future__ import annotations

import argparse
from typing import Any

from worker import run_history
from worker.cli import display, explain, sending
from worker.cli.display import EXIT_OK, emit_json, fail_line
from worker.cli.shared import add_run_filters, positive, print_runs, run_filters

FOLLOW_BARS = ("profiles fetched", "customers confirmed")


def add_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("migrate", help="start (or resume) a Segment -> Voucherify run")
    sending.add_options(run, "show progress until the summary")
    run.add_argument("--run-id", help="resume this run (or name a new one)")
    run.add_argument("--slice-size", type=positive, help="profiles per slice task")
    run.set_defaults(run=migrate)
    explain.add_migrate_command(run)
    status = sub.add_parser("status", help="progress (and summary) of a migration run")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=show_status)
    listing = sub.add_parser("runs", help="the latest runs of both jobs, newest first")
    add_run_filters(listing, default_n=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=list_runs)


def migrate(args: argparse.Namespace) -> int:
    from worker.segment_migration import state
    from worker.segment_migration.start import new_run_id

    deadline = sending.Deadline(args.timeout)
    run_id = args.run_id or new_run_id()
    # A resumed run keeps its old summary until the worker starts the next attempt.
    previous = (state.get_run(run_id) or {}).get("attempt", 0) if args.run_id else 0
    sending.start("segment.migrate", {"run_id": run_id, "slice_size": args.slice_size},
                  deadline, args.queue_anyway)
    out = display.console(for_json=args.json)
    if not args.follow:
        if args.json:
            emit_json({"run_id": run_id, "status": "started"})
        else:
            out.print(f"run [bold]{run_id}[/bold] started")
        return EXIT_OK
    if not args.json:
        out.print(f"run [bold]{run_id}[/bold] started")

    def read() -> tuple[dict[str, Any], dict[str, Any] | None]:
        progress = state.progress(run_id)
        if progress is None or progress["attempt"] <= previous:
            return {}, None
        live = progress["live"]
        listed = live["profiles_listed"] if progress["walk_done"] else None
        summary = state.get_summary(run_id) if progress["summary_ready"] else None
        # Ended, the confirmed bar shows where every profile stands (the live figure
        # misses customers a whole bulk or slice failed for).
        done = confirmed(summary) if summary else live["customers_confirmed"]
        return {FOLLOW_BARS[0]: (live["profiles_fetched"], listed),
                FOLLOW_BARS[1]: (done, listed)}, summary

    summary = display.follow(out, read, FOLLOW_BARS, deadline.follow_wait())
    if summary is None:
        raise deadline.ran_out(f"run {run_id} was still running (follow it with "
                               f"`syncfleet status {run_id}`)")
    if args.json:
        emit_json(summary)
    else:
        print_summary(out, summary)
    return display.exit_code(summary)


def confirmed(summary: dict[str, Any]) -> int:
    """Profiles whose outcome is known: upserted, failed (by Voucherify, or gone from
    Segment) or skipped (no identifier); only those sent and never confirmed are not."""
    return summary["customers_upserted"] + len(summary["failed"]) + len(summary["skipped"])


def print_summary(out: Any, summary: dict[str, Any], limit: int = 20) -> None:
    rows: list[tuple[str, Any]] = [
        ("status", summary["status"] + (" (dry run)" if summary.get("dry_run") else "")),
        ("profiles seen", summary["profiles_seen"]),
        ("customers sent", summary["customers_sent"]),
        ("customers upserted", summary["customers_upserted"]),
        ("skipped (no identifier)", len(summary["skipped"])),
        ("failed", len(summary["failed"])),
        ("warnings (values dropped)", len(summary["warnings"])),
        ("slices done / total", f"{summary['slices']['done']} / {summary['slices']['total']}"),
        ("Segment calls", summary["calls"]["segment"]),
        ("Voucherify calls", summary["calls"]["voucherify"]),
        ("duration", f"{summary['duration_s']:.1f} s"),
    ]
    if summary.get("dry_run"):
        rows.insert(3, ("would send", summary.get("would_send", 0)))
    if summary.get("error"):
        rows.insert(1, ("error", f"[red]{summary['error']}[/red]"))
    display.key_values(f"Segment -> Voucherify run {summary['run_id']}", rows, out)
    _details(out, "Skipped", summary["skipped"], ("segment_id", "reason"), limit)
    _details(out, "Failed", summary["failed"], ("segment_id", "source_id", "reason"), limit)
    if summary["warnings_by_field"]:
        fields = ", ".join(f"{k}: {v}" for k, v in sorted(summary["warnings_by_field"].items()))
        out.print(f"Warnings by field: {fields}")
    out.print(f"Full details: `syncfleet status {summary['run_id']} --json`")


def _details(out: Any, title: str, rows: list[dict[str, Any]], columns: tuple[str, ...],
             limit: int) -> None:
    if rows:
        shown = f", first {limit}" if len(rows) > limit else ""
        display.table(f"{title} ({len(rows)}{shown})", columns,
                      ([row.get(c, "") for c in columns] for row in rows[:limit]), out)


def show_status(args: argparse.Namespace) -> int:
    from worker.segment_migration import state

    progress = state.progress(args.run_id)
    if progress is None:
        fail_line(f"no migration run {args.run_id} (see `syncfleet runs`)", "not_found")
    summary = state.get_summary(args.run_id)
    if args.json:
        emit_json({**progress, "summary": summary})
        return EXIT_OK
    out = display.console()
    if summary is not None:
        print_summary(out, summary)
        return display.exit_code(summary)
    live, counts = progress["live"], progress["counts"]
    display.key_values(f"Segment -> Voucherify run {args.run_id} ({progress['status']})", [
        ("started", progress["started_at"]), ("attempt", progress["attempt"]),
        ("profiles listed", f"{live['profiles_listed']}"
                            + ("" if progress["walk_done"] else " (walk going on)")),
        ("profiles fetched", live["profiles_fetched"]),
        ("customers confirmed", live["customers_confirmed"]),
        ("slices done / total", f"{progress['slices_done']} / {progress['slices_total']}"),
        ("upserted / skipped / failed (finished slices)",
         f"{counts['upserted']} / {counts['skipped']} / {counts['failed']}"),
        ("Segment calls", progress["calls"]["segment"]),
        ("Voucherify calls", progress["calls"]["voucherify"]),
    ], out)
    return EXIT_OK


def list_runs(args: argparse.Namespace) -> int:
    return print_runs(run_history.recent(**run_filters(args)), args.json, "no runs yet")
