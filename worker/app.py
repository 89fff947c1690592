"""The Celery app. Its configuration (`worker/celeryconfig.py`) is read from the settings
when the app is first configured, not when this module is imported: importing the app
(or `beat.schedule`, or any plain module) reads no environment and touches no Redis."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from worker import logging_setup
from worker.tasking import ReleaseParked

TASK_MODULES = [
    "worker.gis_sync.tasks",
    "worker.segment_migration.tasks",
]

app = Celery("syncfleet", include=TASK_MODULES)
app.config_from_object("worker.celeryconfig")
# Every worker releases parked tasks when they are due (worker/parking.py).
app.steps["worker"].add(ReleaseParked)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: Any, **_: Any) -> None:
    logging_setup.configure(logger)
