"""The house's rules a reviewer checks: no import circle, configuration read when the app
is configured (not at import), small modules."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ROOT


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_the_beat_schedule_imports_alone_in_a_fresh_interpreter():
    done = python("import sys, beat.schedule; "
                  "print(beat.schedule.beat_schedule(60)['gis-scan']['task']); "
                  "print('worker' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gis.scan", "False"]  # nothing of the worker imported


def test_importing_the_app_reads_no_configuration():
    # A malformed setting breaks configuring the app, not importing it (or any module).
    done = python("import worker, worker.gis_sync.tasks, worker.segment_migration.tasks\n"
                  "print('imported')\n"
                  "worker.app.conf.broker_url", GIS_SCAN_INTERVAL="abc")
    assert done.stdout.strip() == "imported"
    assert "SettingsError" in done.stderr and "GIS_SCAN_INTERVAL" in done.stderr


def test_the_configured_app_takes_its_settings_from_the_environment():
    done = python("from worker import app; c = app.conf\n"
                  "print(c.broker_url, c.task_time_limit, c.beat_schedule['gis-scan']['schedule'])",
                  REDIS_URL="redis://example:6380/3", TASK_TIME_LIMIT="700",
                  TASK_SOFT_TIME_LIMIT="650", VISIBILITY_TIMEOUT="900",
                  GIS_SCAN_INTERVAL="120")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["redis://example:6380/3", "700", "120.0"]


def test_no_module_of_the_worker_is_over_350_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "worker").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 350}
    assert long == {}
