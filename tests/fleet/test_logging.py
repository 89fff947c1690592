"""No configured credential ever reaches a log line: it comes out as ***."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from celery.signals import after_setup_task_logger, setup_logging
from celery.utils.log import get_multiprocessing_logger, get_task_logger

from tests.support import wait_for
from tests.support.logs import assert_every_line_parses
from tests.support.processes import Process
from worker import logs

GIS_TOKEN = "gis_tok_5e1f0c2b9a8d"
VOUCHERIFY_KEY = "vf_secret_77aa21bc04"


@pytest.fixture
def secrets_configured(monkeypatch) -> None:
    monkeypatch.setenv("GIS_ACCESS_TOKEN", GIS_TOKEN)
    monkeypatch.setenv("VOUCHERIFY_SECRET_KEY", VOUCHERIFY_KEY)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger with a real handler writing to a buffer (not propagated to pytest's)."""
    buffer = io.StringIO()
    logger = logging.getLogger(f"tests.foundation.redact.{id(buffer)}")
    handler = logging.StreamHandler(buffer)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, buffer
    logger.removeHandler(handler)


def test_credentials_in_messages_arguments_and_tracebacks_are_masked(secrets_configured,
                                                                      captured):
    logger, buffer = captured
    logs.configure(logger)
    logger.info("calling GIS with token=%s", GIS_TOKEN)
    logger.warning(f"headers X-App-Token: {VOUCHERIFY_KEY}")
    try:
        raise RuntimeError(f"GET https://gis/graphql?access_token={GIS_TOKEN} failed")
    except RuntimeError:
        logger.exception("request failed")
    output = buffer.getvalue()
    assert GIS_TOKEN not in output and VOUCHERIFY_KEY not in output
    assert "token=***" in output and "X-App-Token: ***" in output
    assert "access_token=*** failed" in output  # the traceback's last line, masked
    assert "level=WARNING" in output and "msg=" in output  # key=value format
    info, warning, error = assert_every_line_parses(output, "logfmt")
    assert info["msg"] == "calling GIS with token=***"
    assert warning["msg"] == "headers X-App-Token: ***"
    assert error["exc"].endswith("RuntimeError: GET https://gis/graphql?access_token=*** failed")


def test_without_secrets_the_message_is_untouched(captured):
    logger, buffer = captured
    logs.configure(logger)
    logger.info("scan done changed=%d", 3)
    [record] = assert_every_line_parses(buffer.getvalue(), "logfmt")
    assert record["msg"] == "scan done changed=3"
    assert buffer.getvalue().endswith(' msg="scan done changed=3"\n')


def test_celery_task_logger_is_redacted_through_the_app_signal(secrets_configured, fleet_app):
    # Celery sends after_setup_task_logger when a worker sets up its task logger; the
    # app's handler must attach the filter there.
    buffer = io.StringIO()
    task_logger = get_task_logger("tests.foundation.task")
    handler = logging.StreamHandler(buffer)
    task_logger.addHandler(handler)
    try:
        after_setup_task_logger.send(sender=None, logger=task_logger, loglevel=logging.INFO,
                                     logfile=None, format="", colorize=False)
        task_logger.error("token %s rejected", GIS_TOKEN)
    finally:
        task_logger.removeHandler(handler)
    assert GIS_TOKEN not in buffer.getvalue() and "token *** rejected" in buffer.getvalue()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """This process's logging as it was, after a test that sets up a fleet process's."""
    loggers = [logging.getLogger(), get_multiprocessing_logger(),
               *(logging.getLogger(name) for name in logs.HIJACKED)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    last_resort = logging.lastResort
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers, lg.level, lg.propagate = handlers, level, propagate
    logging.lastResort = last_resort
    logging.captureWarnings(False)


def test_celerys_setup_logging_signal_gives_the_process_one_masking_handler(
        secrets_configured, fleet_app, restored_logging):
    # What `celery worker` and `celery beat` send before they log anything; with a
    # receiver, Celery sets up no logging of its own. Its loglevel (--loglevel, WARNING
    # unless given) does not count: LOG_LEVEL (INFO) does.
    root = logging.getLogger()
    root.addHandler(logging.StreamHandler(io.StringIO()))  # someone else's handler
    setup_logging.send(sender=None, loglevel=logging.WARNING, logfile=None, format="",
                       colorize=False)
    [handler] = root.handlers
    assert isinstance(handler, logs.FleetHandler) and handler.stream is sys.__stderr__
    assert root.level == handler.level == logging.INFO
    assert get_multiprocessing_logger().handlers == [handler]  # billiard's, not propagating
    buffer = io.StringIO()
    handler.setStream(buffer)
    get_task_logger("tests.foundation.task").info("token %s rejected", GIS_TOKEN)
    logging.getLogger("worker.gis_sync.tasks").debug("not at INFO")
    [record] = assert_every_line_parses(buffer.getvalue(), "logfmt")
    assert record["msg"] == "token *** rejected" and GIS_TOKEN not in buffer.getvalue()


@pytest.mark.slow
def test_worker_process_masks_credentials_in_its_own_log(redis_url, tmp_path: Path):
    """A real `celery -A worker worker` logs a message body holding a credential: masked."""
    url = redis_url.rsplit("/", 1)[0] + "/9"  # a db of its own: no other worker consumes
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "REDIS_URL": url, "GIS_ACCESS_TOKEN": GIS_TOKEN,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    worker = Process("worker", ["celery", "-A", "worker", "worker", "--loglevel=INFO",
                                "--pool=threads", "-c", "1", "-n", "redact@%h"], env,
                     cwd=tmp_path, logs=tmp_path)
    client = Celery(broker=url)
    try:
        wait_for(lambda: "redact@" in str(client.control.ping(timeout=0.5)),
                 "the worker to answer ping", alive=[worker])
        # An unknown task: the worker logs the whole message body, arguments included.
        client.send_task("tests.no_such_task", args=[f"token={GIS_TOKEN}"], queue="default")
        wait_for(lambda: "unregistered task" in worker.log(), "the worker's error",
                 alive=[worker])
    finally:
        client.close()
        worker.stop()
    log = worker.log()
    assert GIS_TOKEN not in log
    assert "token=***" in log
    assert_every_line_parses(log, "logfmt")
