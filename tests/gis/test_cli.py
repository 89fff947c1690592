"""`syncfleet gis ...` and `syncfleet health` for real: a subprocess, the shipped worker,
the sandbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from tests.support import wait_for
from tests.support.cli import syncfleet, syncfleet_json, syncfleet_tty
from tests.support.gis import Truth, scan, workspace
from worker.cli.display import EXIT_HALTED
from worker.gis_sync import failed


def test_scan_follow_shows_progress_that_moves_and_ends_with_the_summary(fleet, gis_world):
    fleet.ensure()
    done = syncfleet("gis", "scan", "--follow", "--timeout", "120")
    lines = re.findall(r"^records synced (\d+)/(\d+|\?)$", done.stdout, re.M)
    synced = [int(n) for n, _ in lines]
    assert len(set(synced)) >= 2 and synced == sorted(synced), done.stdout[-3000:]
    assert lines[-1][0] == lines[-1][1]  # every record handed over has reported
    assert "GIS run" in done.stdout and "events_sent" in done.stdout
    # finished_with_errors: the world holds malformed people (exit 1); never halted (2).
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr == ""  # nothing else, not even at the interpreter's exit


def test_runs_and_failed_records_and_dropping_one_for_good(fleet, gis_world):
    run = scan(fleet)
    code, listed = syncfleet_json("gis", "runs", "-n", "5")
    assert code == 0 and listed[0]["run_id"] == run["run_id"] and listed[0]["job"] == "gis"
    code, shown = syncfleet_json("gis", "failed")
    failing = failed.failing(workspace())
    assert code == 0 and shown["failed"] and set(shown["failed"]) == set(failing)
    name = sorted(shown["failed"])[0]
    assert "record" not in shown["failed"][name]  # only what a retry needs
    done = syncfleet("gis", "failed", "--drop", name)
    assert done.returncode == 0 and name not in failed.failing(workspace())
    again = syncfleet("gis", "failed", "--drop", name)
    assert again.returncode == 1 and again.stderr.strip().count("\n") == 0
    # --drop-all asks the person at the terminal first: anything but yes keeps them.
    kept = syncfleet_tty("gis", "failed", "--drop-all", answer="n\n")
    assert kept.returncode == 1 and "nothing dropped" in kept.stderr
    assert "[y/N]" in kept.stderr
    assert len(failed.failing(workspace())) == len(shown["failed"]) - 1
    # Without a terminal (a script, a pipe) and without --yes: refused at once, exit 2.
    code, refused = syncfleet_json("gis", "failed", "--drop-all")
    assert code == 2 and refused["error"]["code"] == "confirmation"
    piped = subprocess.run([sys.executable, "-m", "worker", "gis", "failed", "--drop-all"],
                           input="y\n", capture_output=True, text=True, timeout=60)
    assert piped.returncode == 2 and "pass --yes" in piped.stderr
    assert len(failed.failing(workspace())) == len(shown["failed"]) - 1
    asked = syncfleet_tty("gis", "failed", "--drop-all", answer="y\n")
    assert asked.returncode == 0 and "dropped" in asked.stdout
    assert failed.sizes(workspace()) == {"failed": 0, "dead": 0}
    code, dropped = syncfleet_json("gis", "failed", "--drop-all", "--yes")  # a script's way
    assert code == 0 and dropped == {"dropped": 0}
    assert failed.sizes(workspace()) == {"failed": 0, "dead": 0}


def test_backfill_reports_ids_gis_does_not_know_and_refuses_a_bad_date(fleet, gis_world):
    truth = Truth(gis_world.admin)
    known = sorted(truth.valid_people())[0]
    fleet.ensure()
    code, summary = syncfleet_json("gis", "backfill", "--person", known, "--person",
                                   "999999999", "--application", "888888888", "--follow",
                                   "--timeout", "120")
    assert summary["missing"] == {"people": ["999999999"], "applications": ["888888888"]}
    assert summary["people_seen"] == 1 and code in (0, 1)
    bad = syncfleet("gis", "backfill", "--since", "31/12/2026")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "ISO-8601" in bad.stderr
    # Through Celery too: a clear answer, not a traceback.
    refused = fleet.send_task("gis.backfill", kwargs={"since": "yesterday"}).get(timeout=60)
    assert refused["status"] == "refused" and "ISO-8601" in refused["reason"]


def test_health_turns_unhealthy_when_scans_stop_and_healthy_after_the_next(
        fleet, gis_world, monkeypatch):
    monkeypatch.setenv("GIS_SCAN_INTERVAL", "2")  # stale after 3 x 2 s: proves the rule
    fleet.ensure()
    # No scan has finished yet: as stale as a stopped sync after the same bound, counted
    # from the fleet's first start.
    never = wait_for(lambda: (h := syncfleet_json("health"))[0] == 1 and h[1],
                     "health to call a fleet that never scanned stale", 60)
    fresh = next(c for c in never["checks"] if c["name"] == "gis_scan_fresh")
    assert fresh["ok"] is False and fresh["lc"] == 1340 and fresh["seconds"] > 6
    assert "no GIS scan of LC 1340 has finished in the" in fresh["detail"]
    scan(fleet)
    code, healthy = syncfleet_json("health")
    assert code == 0 and healthy["healthy"] is True, healthy
    # The schema: a flag, the reasons, and named checks.
    names = [c["name"] for c in healthy["checks"]]
    assert names == ["redis", "workers", "gis_run", "segment_run", "gis_failed_records",
                     "gis_scan_fresh"]
    assert all(set(c) >= {"name", "ok", "detail"} and c["ok"] for c in healthy["checks"])
    stale = wait_for(lambda: (h := syncfleet("health")).returncode == 1 and h,
                     "health to notice that no scan came", 60)
    assert "3 x GIS_SCAN_INTERVAL" in stale.stdout and stale.stdout.count("\n") == 1
    scan(fleet)
    code, verdict = syncfleet_json("health")
    assert code == 0 and verdict["healthy"] is True


def test_health_is_unhealthy_after_a_run_halted_by_a_wrong_key_but_beat_is_not(
        fleet, gis_world, monkeypatch, tmp_path):
    monkeypatch.setenv("CUSTOMERIO_API_KEY", "wrong-key")
    halted = scan(fleet)
    assert halted["status"] == "halted"
    code, verdict = syncfleet_json("health")
    assert code == 1 and "halted" in verdict["reason"]
    assert "CUSTOMERIO_API_KEY" in verdict["reason"]
    assert [c["name"] for c in verdict["checks"] if not c["ok"]] == ["gis_run"]
    # Beat's own check (compose's) stays green: restarting beat would not fix a key.
    (tmp_path / "celerybeat-schedule").write_bytes(b"")
    os.utime(tmp_path / "celerybeat-schedule", (0, time.time()))
    beat = subprocess.run([sys.executable, "-m", "worker", "health", "--beat"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert beat.returncode == 0, beat.stdout + beat.stderr


def test_no_live_worker_is_unhealthy(worker_process, redis_url):
    # worker_process: the session's workers stopped (their entries removed), none started.
    code, verdict = syncfleet_json("health")
    workers = next(c for c in verdict["checks"] if c["name"] == "workers")
    assert code == 1 and workers["ok"] is False and "no live worker" in workers["detail"]
    worker_process(name="alive")
    code, verdict = wait_for(lambda: (h := syncfleet_json("health"))[0] == 0 and h,
                             "health to see the new worker", 60)
    assert next(c for c in verdict["checks"] if c["name"] == "workers")["count"] >= 1


def test_beats_health_check_sees_a_stopped_beat(redis_url, tmp_path):
    # `syncfleet health --beat`, where compose runs it: in beat's working directory.
    def health(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "worker", "health", "--beat", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "GIS_ACCESS_TOKEN": ""})

    missing = health()
    assert missing.returncode == 1 and "no beat schedule file" in missing.stdout
    schedule = tmp_path / "celerybeat-schedule"
    schedule.write_bytes(b"")
    # Saved now by this process's clock (the file system stamps the kernel's, which a
    # shifted test clock, faketime, does not move).
    os.utime(schedule, (0, time.time()))
    assert health().returncode == 0
    os.utime(schedule, (0, time.time() - 3600))
    stopped = health()
    assert stopped.returncode == 1 and "beat is stuck or stopped" in stopped.stdout


def test_a_run_halted_by_a_wrong_key_exits_3_not_2(fleet, gis_world, monkeypatch):
    monkeypatch.setenv("CUSTOMERIO_API_KEY", "wrong-key")
    fleet.ensure()
    code, summary = syncfleet_json("gis", "scan", "--follow", "--timeout", "120")
    assert summary["status"] == "halted" and "CUSTOMERIO_API_KEY" in summary["error"]
    assert code == EXIT_HALTED
