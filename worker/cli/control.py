"""`syncfleet cancel`, `forget`, `gis pause` and `gis resume`: an operator's hands on
the runs of both jobs and on the GIS schedule.

A run is found by its id in either job (a GIS scan or backfill, a migration); `--job`
says which when an id names one of each. `cancel` and `forget` ask first (`--yes`
answers for a script; without a terminal and without `--yes` they refuse, exit 2).
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from typing import Any

from worker import runs
from worker.cli import sending
from worker.cli.display import EXIT_OK, EXIT_USAGE, emit_json, exit_code, fail_line
from worker.cli.shared import confirm
from worker.formats import Record

WAIT_POLL = 0.5  # seconds between two looks for a cancelled run's summary


def add_commands(sub: argparse._SubParsersAction) -> None:
    cancel = sub.add_parser("cancel", help="stop a running run of either job: nothing more "
                                           "starts, what runs finishes, it ends `cancelled` "
                                           "(asks first)")
    _run_options(cancel, "cancel without asking")
    cancel.add_argument("--wait", action="store_true",
                        help="wait until what it had in flight has reported and its summary "
                             "is written")
    cancel.add_argument("--timeout", type=sending.seconds, metavar="S",
                        help="with --wait: give up after S seconds, exit 75 (the run still "
                             "ends by itself)")
    cancel.set_defaults(run=cancel_run)
    forget = sub.add_parser("forget", help="delete an ended run (halted, cancelled, "
                                           "abandoned) and everything kept about it "
                                           "(asks first)")
    _run_options(forget, "forget without asking")
    forget.set_defaults(run=forget_run)


def add_gis_commands(commands: argparse._SubParsersAction) -> None:
    pause = commands.add_parser("pause", help="pause the GIS schedule: no scan starts until "
                                              "`gis resume` (a running scan goes on; "
                                              "backfills still run)")
    pause.add_argument("--reason", default="", help="why (shown by `health`)")
    pause.add_argument("--by", help="who (default: user@host)")
    pause.add_argument("--json", action="store_true")
    pause.set_defaults(run=pause_gis)
    resume = commands.add_parser("resume", help="resume the GIS schedule (staleness counts "
                                                "from now)")
    resume.add_argument("--json", action="store_true")
    resume.set_defaults(run=resume_gis)


def _run_options(command: argparse.ArgumentParser, yes_help: str) -> None:
    command.add_argument("run_id")
    command.add_argument("--job", choices=("gis", "segment"),
                         help="the run's job, when its id names a run of each")
    command.add_argument("--yes", action="store_true", help=yes_help)
    command.add_argument("--json", action="store_true")


def find(run_id: str, job: str | None) -> tuple[runs.Runs, Record]:
    """The run's job and record (its summary once its record is gone), or one line."""
    # Each job's `Runs` registers itself in `runs.JOBS` when its module is imported.
    import worker.gis_sync.run_state
    import worker.segment_migration.state  # noqa: F401

    found = [(runs.JOBS[name], record) for name in ([job] if job else sorted(runs.JOBS))
             if (record := runs.stored_record(name, run_id)
                 or runs.stored_summary(name, run_id))]
    if not found:
        fail_line(f"no run {run_id}{f' of job {job}' if job else ''} (see `syncfleet runs`)",
                  "not_found")
    if len(found) > 1:
        fail_line(f"{run_id} names a run of each job: pass --job gis or --job segment",
                  "usage", EXIT_USAGE)
    return found[0]


def _name(job: runs.Runs, record: Record, run_id: str) -> str:
    return f"{job.job} {record.get('kind') or 'run'} {run_id}"


def cancel_run(args: argparse.Namespace) -> int:
    job, record = find(args.run_id, args.job)
    what = _name(job, record, args.run_id)
    summary = job.summary(args.run_id)
    if summary is not None:
        fail_line(f"{what} has already ended: {summary['status']}", "ended")
    if record.get("status") != runs.RUNNING:
        fail_line(f"{what} is already stopping ({record.get('status')}): what it has in "
                  "flight finishes, then it ends", "not_running")
    if not args.yes:
        confirm(f"cancel {what} (started {record.get('started_at')})?", "nothing cancelled")
    if not job.cancel(args.run_id):  # it ended, or halted, while the person answered
        now = job.get(args.run_id) or {}
        fail_line(f"{what} is no longer running: {now.get('status')}", "not_running")
    progress = job.progress(args.run_id)
    in_flight = progress["parts_launched"] - progress["parts_finished"]
    if not args.wait:
        _show_cancelled(args, job, what, in_flight)
        return EXIT_OK
    summary = _wait_summary(job, args.run_id, sending.Deadline(args.timeout))
    if args.json:
        emit_json(summary)
    else:
        print(f"{what} ended: {summary['status']}")
    return EXIT_OK if summary["status"] == runs.CANCELLED else exit_code(summary)


def _show_cancelled(args: argparse.Namespace, job: runs.Runs, what: str, in_flight: int
                    ) -> None:
    if args.json:
        emit_json({"run_id": args.run_id, "job": job.job, "status": runs.CANCELLED,
                   "in_flight": in_flight})
        return
    after = ("resume it with `syncfleet migrate --run-id " + args.run_id + "`"
             if job.job == "segment" else "the next scan reads again what it did not send")
    print(f"cancelled {what}: nothing more starts; {in_flight} part(s) in flight finish, "
          f"then its summary says cancelled ({after})")


def _wait_summary(job: runs.Runs, run_id: str, deadline: sending.Deadline) -> Record:
    wait = deadline.follow_wait()
    until = None if wait is None else time.monotonic() + wait
    while (summary := job.summary(run_id)) is None:
        if until is not None and time.monotonic() > until:
            raise deadline.ran_out(f"{job.job} run {run_id} was cancelled, and still had "
                                   "work in flight")
        time.sleep(WAIT_POLL)
    return summary


def forget_run(args: argparse.Namespace) -> int:
    from worker import run_history

    job, record = find(args.run_id, args.job)
    what = _name(job, record, args.run_id)
    summary = job.summary(args.run_id)
    if summary is None:
        status = record.get("status")
        fail_line(f"{what} is running: cancel it first (`syncfleet cancel {args.run_id}`)"
                  if status == runs.RUNNING else f"{what} is stopping ({status}): forget "
                  "it once what it has in flight has reported", "not_running")
    if not args.yes:
        confirm(f"forget {what} ({summary['status']}, started {summary.get('started_at')}) "
                "and everything kept about it, for good?", "nothing forgotten")
    if not run_history.forget(job, args.run_id):
        fail_line(f"no run {args.run_id} of job {job.job} any more", "not_found")
    if args.json:
        emit_json({"forgotten": args.run_id, "job": job.job, "status": summary["status"]})
    else:
        print(f"forgot {what} ({summary['status']})")
    return EXIT_OK


def pause_gis(args: argparse.Namespace) -> int:
    from worker import run_history
    from worker.gis_sync import pause

    held, new = pause.pause(args.by or author(), args.reason)
    scans = [r["run_id"] for r in run_history.recent(10, job="gis")
             if r.get("status") == runs.RUNNING and r.get("kind") == "scan"]
    if args.json:
        emit_json({"paused": True, "already": not new, **held, "running_scans": scans})
        return EXIT_OK
    print(("already: " if not new else "") + pause.describe(held)
          + "; no scan starts until `syncfleet gis resume`")
    for run_id in scans:
        print(f"scan {run_id} is running and goes on (`syncfleet cancel {run_id}` stops it)")
    return EXIT_OK


def resume_gis(args: argparse.Namespace) -> int:
    from worker.gis_sync import pause
    from worker.settings import get_settings

    ended = pause.resume()
    answer: dict[str, Any] = {"paused": False, "was": ended}
    if args.json:
        emit_json(answer)
    elif ended is None:
        print("the GIS sync was not paused")
    else:
        print(f"resumed ({pause.describe(ended)}): beat's next scan comes within "
              f"GIS_SCAN_INTERVAL ({get_settings().gis_scan_interval} s), or now with "
              "`syncfleet gis scan`")
    return EXIT_OK


def author() -> str:
    """Who pauses: the login and host the command runs as (a container's user, else)."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            import getpass

            user = getpass.getuser()
        except (KeyError, OSError):  # a container's uid without a passwd entry
            user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"
