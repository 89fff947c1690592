"""The Celery app, configured for reliability from `worker.settings`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger
from kombu import Exchange, Queue

from beat.schedule import beat_schedule
from worker import logging_setup
from worker.settings import get_settings

QUEUES = ("default", "gis", "segment")

TASK_MODULES = [
    "worker.gis_sync.tasks",
    "worker.segment_migration.tasks",
]


def make_app() -> Celery:
    settings = get_settings()
    app = Celery("syncfleet", include=TASK_MODULES)
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        # Sweep for a dead worker's unacked messages every 10 s (kombu's default scans
        # only every 10th time, ~100 s); the sweep's mutex outlives a worker killed in it.
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 60,
    }
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # JSON only: nothing pickled crosses Redis.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Explicit queues: a typo in a route fails loudly instead of creating a queue.
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        task_default_queue="default",
        task_create_missing_queues=False,
        task_routes={"gis.*": {"queue": "gis"}, "segment.*": {"queue": "segment"}},
        # A task is acknowledged when it is done, so a killed worker's work is redone.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        result_expires=settings.result_expires,
        # Results hold return values only: extended results would keep every task's
        # arguments (whole GIS records) in Redis until result_expires.
        result_extended=False,
        task_track_started=True,
        # Flower shows tasks from these events.
        worker_send_task_events=True,
        task_send_sent_event=True,
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=True,
        worker_log_format=logging_setup.FORMAT,
        worker_task_log_format=logging_setup.FORMAT,
        beat_schedule=beat_schedule(settings),
    )
    return app


app = make_app()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: Any, **_: Any) -> None:
    logging_setup.configure(logger)
