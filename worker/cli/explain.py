"""`syncfleet gis explain person|application ID` and `syncfleet migrate explain ID`: one
record, "why didn't this person get the email?" (worker/gis_sync/explain.py,
worker/segment_migration/explain.py). An id nobody knows: one line, exit 1 (not_found).
"""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli import display
from worker.cli.display import EXIT_OK, emit_json, fail_line


def add_gis_command(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain", help="one person or application: what customer.io accepted, what "
                        "differs now, its events, failures and last run (one GIS read)")
    explain.add_argument("kind", choices=("person", "application"))
    explain.add_argument("id")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(run=explain_gis)


def add_migrate_command(migrate: argparse.ArgumentParser) -> None:
    """`migrate explain ID` beside `migrate [options]` (the subcommand is optional)."""
    sub = migrate.add_subparsers(dest="migrate_command", required=False,
                                 parser_class=display.Parser, metavar="{explain}")
    explain = sub.add_parser("explain", help="one profile's fate in the latest run "
                                             "(upserted, skipped, failed, and why)")
    explain.add_argument("id", metavar="SOURCE_ID",
                         help="the customer's Voucherify source_id, or its Segment profile id")
    explain.add_argument("--run-id", default=argparse.SUPPRESS,
                         help="that run rather than the latest")
    explain.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    explain.set_defaults(run=explain_migrated)


def explain_gis(args: argparse.Namespace) -> int:
    from worker.gis_sync import explain
    from worker.settings import get_settings

    settings = get_settings()
    read = explain.person if args.kind == "person" else explain.application
    found = read(str(args.id), settings)
    if found is None:
        fail_line(f"GIS has no {args.kind} {args.id}, and the sync knows nothing of it",
                  "not_found")
    if args.json:
        emit_json(found)
        return EXIT_OK
    out = display.console()
    display.key_values(f"GIS {args.kind} {args.id}", _gis_rows(found), out)
    if found.get("attributes"):
        display.table("Attributes: now, and against what customer.io accepted",
                      ("attribute", "now", "customer.io"),
                      ([n, a["now"], a["accepted"]] for n, a in found["attributes"].items()),
                      out)
    for name, title in (("sent", "Events sent (the accepted step implies them)"),
                        ("pending", "Events the next sync would send")):
        if found.get(name):
            display.table(title, ("name", "id", "timestamp", "at", "certain"),
                          ([e["name"], e["id"], e["timestamp"], e["at"], _certain(e)]
                           for e in found[name]), out)
    return EXIT_OK


def _certain(event: dict[str, Any]) -> str:
    if "certain" not in event:
        return ""  # a pending event: not sent yet
    return "yes" if event["certain"] else "unless older than the cold-start window"


def _gis_rows(found: dict[str, Any]) -> list[tuple[str, Any]]:
    accepted, entry, run = found["accepted"], found.get("failed"), found.get("last_run")
    rows: list[tuple[str, Any]] = [
        ("in GIS", "yes" if found["in_gis"] else "no (deleted, or not readable)"),
        ("updated in GIS", found.get("updated_at") or ""),
        ("customer.io accepted", (f"yes, last at {accepted['at'] or 'a time not kept'}"
                                  if accepted["known"] else "nothing yet")),
    ]
    if found["kind"] == "person":
        differs = ", ".join(found.get("differs") or []) or "nothing"
        rows.append(("differs now", differs if found["in_gis"] else "unknown (not in GIS)"))
        if "incoming" in found:
            rows.append(("incoming refresh", _incoming_line(found["incoming"])))
    else:
        now = found.get("now") or {}
        rows += [("step accepted", "none" if accepted.get("step") is None
                  else accepted["step"]),
                 ("status now (step)", f"{now.get('status')} ({now.get('step')})"),
                 ("person", f"{found.get('person_id')} (identified: "
                            f"{'yes' if found.get('person_accepted') else 'no'})")]
    if found.get("malformed"):
        rows.append(("unusable", found["malformed"]))
    rows.append(("failed", f"{entry['list']}: {entry['reason']} (attempts: "
                           f"{entry['attempts']})" if entry else "no"))
    rows.append(("last run", _run_line(run)))
    return rows


def _incoming_line(incoming: dict[str, Any]) -> str:
    """Whether the refresh of incoming applicants reads this person of another LC."""
    opened = "; ".join(f"LC {lc}: {', '.join(apps)}"
                       for lc, apps in incoming["open_applications"].items())
    if not incoming["refreshed"]:
        why = "GIS_INCOMING_PEOPLE_REFRESH is 0" if opened else \
            "no open application to the synced LCs"
        return f"no ({why}): an edit arrives only with a change of an application"
    return f"yes, every {incoming['refresh_every_s']} s (last at " \
           f"{incoming['last_refresh_at'] or 'not yet'}), for open applications {opened}"


def _run_line(run: dict[str, Any] | None) -> str:
    if run is None:
        return "not known"
    if not run["kept"]:
        return f"…{run['run_id_ends_with']} (no longer kept)"
    return f"{run['run_id']} ({run['kind']}, {run['status'] or 'running'}, started " \
           f"{run['started_at']})"


def explain_migrated(args: argparse.Namespace) -> int:
    from worker.segment_migration import explain

    found = explain.profile(args.id, getattr(args, "run_id", None))
    if found is None:
        fail_line("no migration run yet (see `syncfleet runs`)", "not_found")
    if found.get("fate") is None:
        fail_line(f"no profile {args.id} (a source_id or a Segment profile id) in "
                  f"migration run {found['run_id']}", "not_found")
    if getattr(args, "json", False):
        emit_json(found)
        return EXIT_OK
    rows = [(name, found[key]) for key, name in (
        ("run_id", "run"), ("run_status", "run status"), ("segment_id", "Segment profile"),
        ("source_id", "source_id"), ("slice", "slice"), ("fate", "fate"),
        ("reason", "why")) if found.get(key) not in (None, "")]
    rows += [(f"dropped {w['field']}", w["reason"]) for w in found.get("warnings") or []]
    display.key_values(f"Profile {args.id}", rows, display.console())
    return EXIT_OK
