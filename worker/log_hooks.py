"""Every line the worker, beat and Flower write is a log record (`worker/logs.py`).

Celery and Flower also write outside logging; this module turns that into records:

- the worker's and beat's startup banners (ASCII art printed to stdout before or beside
  logging) are not printed: one INFO record says what they said (the whole banner,
  the task list included, at DEBUG);
- the worker's shutdown notices ("worker: Warm shutdown (MainProcess)"), which Celery
  writes from its signal handlers straight to the file descriptor, become WARNING
  records, written the same signal-safe way;
- anything printed later to stdout/stderr becomes a record of `celery.redirected`
  (Celery's `worker_redirect_stdouts`, on by default), and an uncaught exception one
  record with its traceback;
- Flower never calls Celery's logging setup: tornado's option parsing (which Flower runs
  first thing) does it, and tornado's access log (one line per request: INFO, 4xx at
  WARNING, 5xx at ERROR), which Flower switches off, goes through the fleet's handler.

Beat also logs each task it sends with its id (`task_id`), so a scan beat sent can be
found in the worker's log and in Flower.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import TracebackType
from typing import Any

from celery import VERSION_BANNER, Celery
from celery.signals import after_task_publish
from celery.utils.log import LoggingProxy

from worker import logs

log = logging.getLogger("worker.logs")
worker_log = logging.getLogger("celery.apps.worker")  # the banners' stand-ins log as the
beat_log = logging.getLogger("celery.beat")           # programs that would print them
REDIRECTED = "celery.redirected"


# --- the worker -------------------------------------------------------------------------

def worker_init(instance: Any) -> None:
    """celeryd_init: before the worker warns about anything (running as root, say)."""
    logs.setup_process()
    instance.quiet = True  # no banner on stdout: worker_started logs it


def worker_started(instance: Any) -> None:
    """celeryd_after_setup: where the banner would be printed."""
    worker_log.info("%s v%s starting: %s (%s), queues %s, broker %s", instance.hostname,
                    VERSION_BANNER, _concurrency(instance), _pool(instance),
                    ",".join(sorted(instance.app.amqp.queues.consume_from)),
                    instance.app.connection().as_uri())
    if worker_log.isEnabledFor(logging.DEBUG):
        worker_log.debug("%s\n[tasks]\n%s", instance.startup_info(artlines=False),
                         instance.tasklist(include_builtins=False))
    take_over_output(instance.app)
    _route_shutdown_notices()


def _concurrency(instance: Any) -> str:
    if instance.autoscale:
        return f"autoscale {instance.autoscale[1]}..{instance.autoscale[0]}"
    return f"concurrency {instance.concurrency}"


def _pool(instance: Any) -> str:
    pool = instance.pool_cls
    return (pool if isinstance(pool, str) else pool.__module__).rsplit(".", 1)[-1]


def _route_shutdown_notices() -> None:
    import celery.apps.worker

    celery.apps.worker.safe_say = say


def say(msg: str, *_: Any) -> None:
    """Celery's `safe_say` (called from signal handlers) as one WARNING record, written
    with os.write like the original: no lock, no buffered stream."""
    fleet = logs.current_handler()
    record = logging.LogRecord("celery.apps.worker", logging.WARNING, __file__, 0,
                               msg.strip(), None, None)
    if fleet is None or record.levelno < fleet.level or not fleet.filter(record):
        return
    data = (fleet.format(record) + "\n").encode("utf-8", "backslashreplace")
    try:
        fd = fleet.stream.fileno()
        while data:
            data = data[os.write(fd, data):]
    except (OSError, ValueError):
        pass  # best effort, as Celery's own: a lost notice must not stop a shutdown


# --- beat -------------------------------------------------------------------------------

def quiet_beat(app: Celery) -> None:
    """Beat prints its banner before it sets up logging; the app's Beat is told to be
    quiet (as `celery -q beat`) and beat_started logs the banner instead."""
    base = app.Beat

    class QuietBeat(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "quiet": True})

    app.Beat = QuietBeat


def beat_started(service: Any) -> None:
    """beat_init: logging is set up, the scheduler exists."""
    scheduler = service.scheduler
    beat_log.info("celery beat v%s is starting: %s, schedule %s, max interval %ss, broker %s",
                  VERSION_BANNER, type(scheduler).__name__, service.schedule_filename,
                  scheduler.max_interval, service.app.connection().as_uri())
    take_over_output(service.app)
    after_task_publish.connect(_log_sent, weak=False, dispatch_uid="syncfleet-beat-sent")


def _log_sent(sender: str | None = None, headers: dict[str, Any] | None = None,
              **_: Any) -> None:
    task_id = (headers or {}).get("id")
    beat_log.info("Sent %s[%s]", sender, task_id, extra={"task": sender, "task_id": task_id})


# --- Flower -----------------------------------------------------------------------------

def hook_flower() -> None:
    """Flower parses tornado's options (`--port=...`, FLOWER_* variables) before anything
    else; the fleet's logging is set up right after that, in every Flower process only."""
    from tornado.options import options

    options.add_parse_callback(flower_logging)


def flower_logging() -> None:
    fleet = logs.setup_process()
    # Flower gives tornado's access log a NullHandler and stops it propagating (unless
    # --debug); with the fleet's handler on the logger itself, it logs at LOG_LEVEL.
    access = logging.getLogger("tornado.access")
    access.handlers, access.propagate = [fleet], False
    take_over_output(None)


# --- any program ------------------------------------------------------------------------

def take_over_output(app: Celery | None) -> None:
    """Later prints become records (`worker_redirect_stdouts`), and so do uncaught
    exceptions."""
    redirect, level = True, "WARNING"
    if app is not None:
        redirect = app.conf.worker_redirect_stdouts
        level = app.conf.worker_redirect_stdouts_level
    if redirect and not isinstance(sys.stdout, LoggingProxy):
        proxy = LoggingProxy(logging.getLogger(REDIRECTED), level)
        sys.stdout = sys.stderr = proxy
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException,
                  tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        return
    log.critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    log.error("uncaught exception in thread %s", name,
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
