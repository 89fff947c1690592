"""`syncfleet` / `python -m worker`: start and follow a migration, list both jobs' runs.

    syncfleet migrate [--follow] [--run-id ID] [--slice-size N] [--timeout S]
    syncfleet status RUN_ID [--json]
    syncfleet runs [-n N] [--json]       the latest runs of both jobs (GIS and Segment)

`migrate` sends `segment.migrate` to the fleet (a worker must be running) with a run id
chosen here, so it can follow the run at once. Progress is read from the run's state in
Redis, the same state `segment.status` returns: reading it directly never waits behind
the slices queued on the `segment` queue.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from worker import runs

if TYPE_CHECKING:  # rich and Celery load only when a command needs them
    from celery.result import AsyncResult
    from rich.console import Console

EXIT_OK, EXIT_ERRORS, EXIT_HALTED, EXIT_TIMEOUT = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "migrate":
        return migrate(args)
    if args.command == "status":
        return show_status(args.run_id, args.json)
    if args.command == "runs":
        return list_runs(args.n, args.json)
    parser().print_help()
    return EXIT_ERRORS


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="syncfleet", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command")
    run = sub.add_parser("migrate", help="start (or resume) a Segment -> Voucherify run")
    run.add_argument("--follow", action="store_true", help="show progress until the summary")
    run.add_argument("--run-id", help="resume this run (or name a new one)")
    run.add_argument("--slice-size", type=int, help="profiles per slice task")
    run.add_argument("--timeout", type=float, default=0, help="give up following after S s")
    status = sub.add_parser("status", help="progress (and summary) of a run")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true")
    listing = sub.add_parser("runs", help="the latest runs of both jobs, newest first")
    listing.add_argument("-n", type=int, default=20, help="how many")
    listing.add_argument("--json", action="store_true")
    return top


def migrate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from worker.app import app
    from worker.segment_migration import state
    from worker.segment_migration.tasks import new_run_id

    console = Console()
    run_id = args.run_id or new_run_id()
    # A resumed run keeps its old summary until the worker starts the next attempt.
    previous = (state.get_run(run_id) or {}).get("attempt", 0) if args.run_id else 0
    result = app.send_task("segment.migrate", kwargs={"run_id": run_id,
                                                      "slice_size": args.slice_size})
    console.print(f"run [bold]{run_id}[/bold] sent to the fleet (task {result.id})")
    if not args.follow:
        return EXIT_OK
    summary = follow(console, run_id, result, args.timeout, previous)
    if summary is None:
        return EXIT_TIMEOUT
    print_summary(console, summary)
    return exit_code(summary)


def follow(console: Console, run_id: str, result: AsyncResult, timeout: float,
           previous_attempt: int = 0) -> dict[str, Any] | None:
    """A progress bar over slices until the summary exists (or the start task failed)."""
    from rich import progress as rp

    from worker.segment_migration import state

    deadline = time.monotonic() + timeout if timeout else None
    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
               rp.TextColumn("slices  {task.fields[counts]}"), rp.TimeElapsedColumn())
    with rp.Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("waiting for a worker", total=None, counts="")
        while deadline is None or time.monotonic() < deadline:
            if result.failed():
                console.print(f"[red]segment.migrate failed:[/red] {result.result}")
                return None
            progress = state.progress(run_id)
            if progress is not None and progress["attempt"] > previous_attempt:
                counts = progress["counts"]
                total = progress["slices_total"] if progress["walk_done"] else None
                bar.update(task, description=_describe(progress), total=total,
                           completed=progress["slices_finished"],
                           counts=f"profiles {counts['profiles']}  upserted "
                                  f"{counts['upserted']}  skipped {counts['skipped']}  "
                                  f"failed {counts['failed']}")
                if progress["summary_ready"]:
                    return state.get_summary(run_id)
            time.sleep(0.5)
    console.print("[yellow]still running; follow it with `syncfleet status "
                  f"{run_id}`[/yellow]")
    return None


def _describe(progress: dict[str, Any]) -> str:
    if progress["status"] == runs.HALTED:
        return "[red]halting[/red]"
    return "migrating" if progress["walk_done"] else "walking the profile list"


def print_summary(console: Console, summary: dict[str, Any], limit: int = 20) -> None:
    from rich.table import Table

    table = Table(title=f"Segment -> Voucherify run {summary['run_id']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
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
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    _details(console, "Skipped", summary["skipped"], ("segment_id", "reason"), limit)
    _details(console, "Failed", summary["failed"], ("segment_id", "source_id", "reason"), limit)
    if summary["warnings_by_field"]:
        fields = ", ".join(f"{k}: {v}" for k, v in sorted(summary["warnings_by_field"].items()))
        console.print(f"Warnings by field: {fields}")
    console.print(f"Full details: `syncfleet status {summary['run_id']} --json`")


def _details(console: Console, title: str, rows: list[dict[str, Any]], columns: tuple[str, ...],
             limit: int) -> None:
    if not rows:
        return
    from rich.table import Table

    shown = f", first {limit}" if len(rows) > limit else ""
    table = Table(title=f"{title} ({len(rows)}{shown})")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows[:limit]:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


def exit_code(summary: dict[str, Any]) -> int:
    return {runs.FINISHED: EXIT_OK, runs.HALTED: EXIT_HALTED}.get(summary["status"],
                                                                  EXIT_ERRORS)


def show_status(run_id: str, as_json: bool) -> int:
    from rich.console import Console

    from worker.segment_migration import state

    progress = state.progress(run_id)
    if progress is None:
        print(f"no run {run_id}", file=sys.stderr)
        return EXIT_ERRORS
    summary = state.get_summary(run_id)
    if as_json:
        print(json.dumps({**progress, "summary": summary}, indent=2, ensure_ascii=False))
        return EXIT_OK
    console = Console()
    if summary is not None:
        print_summary(console, summary)
        return exit_code(summary)
    console.print(progress)
    return EXIT_OK


def list_runs(n: int, as_json: bool) -> int:
    latest = runs.recent(n)
    if as_json:
        print(json.dumps(latest, indent=2, ensure_ascii=False))
        return EXIT_OK
    for run in latest:
        print(f"{run['job']:<8} {run.get('kind', ''):<10} {run['run_id']:<40} "
              f"{run.get('started_at', '')}  {run.get('status', '')}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
