"""`syncfleet cancel`, `forget`, `gis pause` and `gis resume` for real: the CLI in a
subprocess against the suite's Redis, on runs the run engine keeps there (no worker: what
the fleet does with a cancel is tests/gis/test_cancel.py's and
tests/segment/test_lost_and_cancel.py's). A person answers at a real terminal (a pty);
a script without one gets one line and exit 2, never a wait."""

from __future__ import annotations

import time

import pytest

from tests.support.cli import syncfleet, syncfleet_json, syncfleet_tty
from worker import runs
from worker.cli.display import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from worker.gis_sync import run_state, state
from worker.gis_sync.run_state import GIS
from worker.segment_migration import state as segment_state
from worker.segment_migration.state import SEGMENT

# Out of the quick lane (make test-fast): real programs and real timeouts, seconds each.
pytestmark = pytest.mark.slow

GIS_ENV = {"GIS_ACCESS_TOKEN": "token", "GIS_HOME_LC_ID": "1340", "GIS_SCAN_INTERVAL": "2"}


def one_line(done) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def running_scan(run_id: str) -> None:
    """A scan as the engine keeps it while its people walk is under way."""
    run_state.start_run(run_id, "scan", state.Scope(1340, "none"), mode="scan")
    GIS.open_walk(run_id, "people", {"cursor": None, "pages": 0})


def test_cancel_asks_at_a_terminal_and_refuses_without_one(redis_url):
    running_scan("scan-1")
    # A script: no terminal, no --yes: one line, exit 2, at once; the run goes on.
    started = time.monotonic()
    done = syncfleet("cancel", "scan-1", timeout=30)
    assert done.returncode == EXIT_USAGE and time.monotonic() - started < 20
    assert "needs a yes, and there is no terminal to ask on: pass --yes" in one_line(done)
    code, refused = syncfleet_json("cancel", "scan-1")
    assert code == EXIT_USAGE and refused["error"]["code"] == "confirmation"
    # A person says no, then yes.
    declined = syncfleet_tty("cancel", "scan-1", answer="n\n")
    assert declined.returncode == EXIT_FAILED and "[y/N]" in declined.stderr
    assert "nothing cancelled" in declined.stderr
    assert GIS.get("scan-1")["status"] == runs.RUNNING
    done = syncfleet_tty("cancel", "scan-1", answer="y\n")
    assert done.returncode == EXIT_OK, done.stderr
    assert "cancel gis scan scan-1 (started " in done.stderr
    assert done.stdout.startswith("cancelled gis scan scan-1: nothing more starts")
    assert GIS.get("scan-1")["status"] == runs.CANCELLED
    # Cancelled, its walk still out: stopping, not ended; it cannot be forgotten yet.
    again = syncfleet("cancel", "scan-1", "--yes")
    assert again.returncode == EXIT_FAILED
    assert "is already stopping (cancelled)" in one_line(again)
    early = syncfleet("forget", "scan-1", "--yes")
    assert early.returncode == EXIT_FAILED and "is stopping (cancelled)" in one_line(early)
    run_state.end_walk("scan-1", "people", None)  # the walk saw the cancel and ended
    assert GIS.summary("scan-1")["status"] == runs.CANCELLED
    ended = syncfleet("cancel", "scan-1", "--yes")
    assert ended.returncode == EXIT_FAILED
    assert one_line(ended) == "syncfleet: gis scan scan-1 has already ended: cancelled"


def test_cancel_wait_gives_the_summary_and_an_unknown_run_is_one_line(redis_url):
    running_scan("scan-2")
    GIS.end_walk("scan-2", "people")  # nothing left in flight: the cancel ends it at once
    code, summary = syncfleet_json("cancel", "scan-2", "--yes", "--wait", "--timeout", "30")
    assert code == EXIT_OK and summary["status"] == "cancelled"
    assert summary["run_id"] == "scan-2" and summary["kind"] == "scan"
    unknown = syncfleet("cancel", "nosuchrun", "--yes")
    assert unknown.returncode == EXIT_FAILED
    assert one_line(unknown) == "syncfleet: no run nosuchrun (see `syncfleet runs`)"
    code, error = syncfleet_json("forget", "nosuchrun", "--yes")
    assert code == EXIT_FAILED and error["error"]["code"] == "not_found"


def test_forget_refuses_a_running_run_and_forgets_an_ended_one(redis_url, redis_client):
    segment_state.create_run("mig-1", 10, False, "spa_1", "app_1")
    done = syncfleet("forget", "mig-1", "--yes")
    assert done.returncode == EXIT_FAILED
    assert one_line(done) == ("syncfleet: segment migration mig-1 is running: cancel it "
                              "first (`syncfleet cancel mig-1`)")
    SEGMENT.halt("mig-1", "voucherify: 401 on POST /v1/customers/bulk/async")
    SEGMENT.end_walk("mig-1", "profiles")
    SEGMENT.finish_if_complete("mig-1")
    assert SEGMENT.summary("mig-1")["status"] == runs.HALTED
    assert syncfleet("forget", "mig-1").returncode == EXIT_USAGE  # no terminal, no --yes
    declined = syncfleet_tty("forget", "mig-1", answer="\n")  # Enter: the default, no
    assert declined.returncode == EXIT_FAILED and "nothing forgotten" in declined.stderr
    code, forgotten = syncfleet_json("forget", "mig-1", "--yes")
    assert code == EXIT_OK and forgotten == {"forgotten": "mig-1", "job": "segment",
                                             "status": "halted"}
    assert list(redis_client.scan_iter("sf:segment:run:mig-1*")) == []
    assert syncfleet_json("runs")[1] == []


def test_an_id_of_both_jobs_needs_job(redis_url):
    running_scan("same")
    segment_state.create_run("same", 10, False, "spa_1", "app_1")
    SEGMENT.end_walk("same", "profiles")
    done = syncfleet("cancel", "same", "--yes")
    assert done.returncode == EXIT_USAGE and "pass --job gis or --job segment" in one_line(done)
    assert syncfleet("cancel", "same", "--yes", "--job", "segment").returncode == EXIT_OK
    assert SEGMENT.summary("same")["status"] == runs.CANCELLED
    assert GIS.get("same")["status"] == runs.RUNNING


def checks(verdict: dict) -> dict[str, dict]:
    return {c["name"]: c for c in verdict["checks"]}


def test_pause_shows_in_health_and_resume_counts_staleness_from_the_resume(
        redis_url, redis_client):
    # A fleet whose last scan succeeded an hour ago: stale (after 3 x 2 s here).
    redis_client.set("sf:gis:lc:1340:ws:none:last_success", time.time() - 3600)
    code, verdict = syncfleet_json("health", **GIS_ENV)
    assert checks(verdict)["gis_scan_fresh"]["ok"] is False
    done = syncfleet("gis", "pause", "--reason", "customer.io maintenance", "--by", "alice")
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith("GIS sync paused since 20")
    assert "by alice: customer.io maintenance; no scan starts until" in done.stdout
    again = syncfleet("gis", "pause", "--by", "bob")  # the first pause stays
    assert again.stdout.startswith("already: GIS sync paused since") and "alice" in again.stdout
    code, verdict = syncfleet_json("health", **GIS_ENV)
    paused = checks(verdict)["gis_paused"]
    assert paused["ok"] is True and paused["by"] == "alice"
    assert paused["detail"].startswith("GIS sync paused since ")
    assert "gis_scan_fresh" not in checks(verdict)  # paused, not stale
    code, resumed = syncfleet_json("gis", "resume")
    assert code == EXIT_OK and resumed["paused"] is False and resumed["was"]["by"] == "alice"
    # Counted from the resume, not from the success an hour ago.
    code, verdict = syncfleet_json("health", **GIS_ENV)
    fresh = checks(verdict)["gis_scan_fresh"]
    assert fresh["ok"] is True and fresh["seconds"] < 6, fresh
    assert fresh["detail"].startswith("GIS sync resumed ")
    assert syncfleet("gis", "resume").stdout == "the GIS sync was not paused\n"


def test_with_redis_stopped_the_commands_are_one_line(stopped_redis_url):
    for command in (("gis", "pause"), ("cancel", "r1", "--yes"), ("forget", "r1", "--yes")):
        done = syncfleet(*command, REDIS_URL=stopped_redis_url, timeout=60)
        assert done.returncode == EXIT_UNAVAILABLE and done.stdout == ""
        assert one_line(done).startswith("syncfleet: Redis unreachable at "), command
