"""The Celery app. Its configuration (`worker/celeryconfig.py`) is read from the settings
when the app is first configured, not when this module is imported: importing the app
(or `beat.schedule`, or any plain module) reads no environment and touches no Redis."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    celeryd_after_setup,
    celeryd_init,
    setup_logging,
)

from worker import kombu_patch, log_hooks, logs
from worker.tasking import Heartbeat, ReleaseParked

TASK_MODULES = [
    "worker.gis_sync.tasks",
    "worker.segment_migration.tasks",
]

# A worker survives a Redis restart or failover while it holds messages (a kombu 5.7 bug).
kombu_patch.apply()

app = Celery("syncfleet", include=TASK_MODULES)
app.config_from_object("worker.celeryconfig")
# Every worker releases parked tasks when they are due (worker/parking.py).
app.steps["worker"].add(ReleaseParked)
# ... and keeps its entry of live workers fresh (worker/heartbeat.py).
app.steps["worker"].add(Heartbeat)

# Logs (worker/logs.py, worker/log_hooks.py): LOG_LEVEL and LOG_FORMAT decide for the
# worker, beat and Flower alike, whatever --loglevel says; one parseable line per record.
log_hooks.quiet_beat(app)
log_hooks.hook_flower()


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # A receiver here means Celery configures no logging of its own (worker, beat).
    logs.setup_process()


@celeryd_init.connect
def _worker_init(instance: Any, **_: Any) -> None:
    log_hooks.worker_init(instance)


@celeryd_after_setup.connect
def _worker_started(instance: Any, **_: Any) -> None:
    log_hooks.worker_started(instance)


@beat_init.connect
def _beat_started(sender: Any, **_: Any) -> None:
    log_hooks.beat_started(sender)
    # The first scan goes at start, not one interval later: a wrong key shows at once and a
    # new fleet syncs (and turns healthy) right away. The scan lock makes a restart harmless.
    entry = sender.app.conf.beat_schedule["gis-scan"]
    sender.app.send_task(entry["task"], **entry["options"])


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: Any, **_: Any) -> None:
    # Only where Celery's own setup runs after all (app.log.setup_task_loggers called
    # directly): the same format and masking on the handlers it made.
    logs.configure(logger)
