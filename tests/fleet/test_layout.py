"""The house's rules a reviewer checks: no import circle, Celery kept to the modules that
wrap it, configuration read when the app is configured (not at import), small modules."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from tests.support import ROOT

# The modules that wrap Celery: the app and its configuration, the task base, the logs
# (a record names its task), the fix to kombu's transport, each job's tasks, the CLI (it
# sends tasks). Every other module of worker/ is plain: importable, testable and readable
# without Celery.
CELERY_SIDE = {"worker", "worker.app", "worker.celeryconfig", "worker.tasking",
               "worker.log_hooks", "worker.logs", "worker.kombu_patch", "worker.gis_sync.tasks",
               "worker.segment_migration.tasks", "worker.__main__"}
CELERY_PACKAGES = ("celery", "kombu", "billiard")


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in (ROOT / "worker").rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function: a name imported
    from a package is the submodule when there is one (`from worker import runs`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES
                      else node.module for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    """worker's modules -> the modules of worker they import (a package's own
    `__init__`, which Python runs first anyway, left out)."""
    return {name: {m for m in imports_of(path) if m in MODULES and m != "worker"}
            for name, path in MODULES.items()}


def test_the_workers_imports_form_no_circle():
    try:
        order = list(TopologicalSorter(graph()).static_order())
    except CycleError as exc:
        raise AssertionError(f"an import circle: {' -> '.join(exc.args[1])}") from None
    assert set(order) == set(MODULES)


def test_plain_modules_import_neither_celery_nor_a_module_that_does():
    deps = graph()

    def reaches(name: str, seen: set[str]) -> set[str]:
        for dep in deps[name] - seen:
            seen.add(dep)
            reaches(dep, seen)
        return seen

    wrong = {}
    for name in sorted(set(MODULES) - CELERY_SIDE):
        if name.startswith("worker.cli"):
            continue  # the CLI sends tasks through the app (it imports it when it does)
        celery = {m for m in imports_of(MODULES[name])
                  if m.split(".")[0] in CELERY_PACKAGES}
        wrappers = reaches(name, set()) & CELERY_SIDE
        if celery or wrappers:
            wrong[name] = sorted(celery | wrappers)
    assert wrong == {}
    assert {"worker.runs", "worker.recovery", "worker.gis_sync.walk",
            "worker.segment_migration.slices"} <= set(MODULES) - CELERY_SIDE


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
