"""The log line format (worker/logs.py): one record, one line, read back exactly by a real
logfmt parser (logfmtkv, strict: what go-logfmt accepts) and by json."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from tests.support.logs import assert_every_line_parses
from worker import app as fleet_app
from worker import logs
from worker.settings import SettingsError, get_settings

Emit = Callable[..., dict]

TRICKY = [
    "plain",
    "two words",
    'say "hi"',
    "a=b c==d =",
    "back\\slash \\n not a newline",
    "line one\nline two\r\nline three",
    "tab\there",
    "ünïcödé 中文 emoji 🎉",
    "nbsp\u00a0zero\u200bwidth",
    "bell\x07 escape\x1b[31m null\x00 del\x7f",
    "next line\x85 line sep\u2028 para sep\u2029 vt\x0b ff\x0c fs\x1c",
    "lone surrogate \udcff",
    "",
    " ",
    '"',
    "\\",
    "null",
    "key=value",
]


@pytest.fixture(params=logs.FORMATS)
def fmt(request, monkeypatch) -> str:
    monkeypatch.setenv("LOG_FORMAT", request.param)
    get_settings.cache_clear()
    return request.param


class FleetOnly(logging.Logger):
    """pytest attaches its capture handlers to every logger that does not propagate (and
    they raise on what the fleet's handler must survive): this one keeps only the fleet's."""

    def callHandlers(self, record: logging.LogRecord) -> None:  # logging's name
        for handler in self.handlers:
            if isinstance(handler, logs.FleetHandler) and record.levelno >= handler.level:
                handler.handle(record)


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger with the fleet's real handler, writing to a buffer."""
    buffer = io.StringIO()
    logger = FleetOnly(f"tests.logs.format.{id(buffer)}")
    logger.addHandler(logs.handler(buffer))
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, buffer


@pytest.fixture
def emit(fmt, logger) -> Emit:
    """Log one record and read it back: exactly one line, one record."""
    log, buffer = logger

    def emit_one(*args, level: int = logging.INFO, **kwargs) -> dict:
        start = buffer.tell()
        log.log(level, *args, **kwargs)
        written = buffer.getvalue()[start:]
        assert written.count("\n") == 1 and written.endswith("\n"), written
        [record] = assert_every_line_parses(written, fmt)
        return record

    return emit_one


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_any_message_comes_back_exactly(emit, text):
    record = emit("%s", text)
    expected = text.replace("\udcff", "\ufffd")  # a lone surrogate is no character
    assert record["msg"] in (text, expected)


def test_fields_and_their_order(emit, fmt):
    record = emit("scan done changed=%d", 3, level=logging.WARNING)
    assert record["msg"] == "scan done changed=3"
    assert record["level"] == "WARNING" and record["logger"].startswith("tests.logs.format.")
    assert record["process"] == "MainProcess" and int(record["pid"]) > 0
    assert list(record) == ["ts", "level", "logger", "process", "pid", "msg"]
    assert "task" not in record and "exc" not in record


def test_logfmt_quotes_only_what_needs_it(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "logfmt")
    get_settings.cache_clear()
    buffer = io.StringIO()
    log = FleetOnly("tests.logs.quotes")
    log.addHandler(logs.handler(buffer))
    log.info("ready.")
    log.info("two words")
    first, second = buffer.getvalue().splitlines()
    assert first.endswith(" msg=ready.") and " level=INFO " in first
    assert second.endswith(' msg="two words"')


def test_ts_is_iso_8601_utc_with_milliseconds(fmt, logger):
    log, buffer = logger
    moment = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    record = log.makeRecord(log.name, logging.INFO, __file__, 1, "at noon", None, None)
    record.created = moment.timestamp()
    log.handle(record)
    [parsed] = assert_every_line_parses(buffer.getvalue(), fmt)
    assert parsed["ts"] == "2026-12-01T10:00:00.123Z"


def test_a_logged_dict_is_one_value(emit):
    summary = {"run_id": "r-1", "status": "finished", "note": 'a "b" = c\nd', "n": 3}
    record = emit("gis run finished: %s", summary)  # as worker/gis_sync/tasks.py does
    assert record["msg"] == f"gis run finished: {summary}"
    assert emit(summary)["msg"] == str(summary)  # a dict as the message itself


def test_an_exception_is_one_quoted_field(emit, fmt):
    try:
        raise RuntimeError('boom "quoted" a=b\nsecond line')
    except RuntimeError:
        record = emit("request failed", exc_info=True, level=logging.ERROR)
    assert record["msg"] == "request failed"
    exc = record["exc"]
    assert exc.startswith("Traceback (most recent call last):\n")
    assert exc.endswith('RuntimeError: boom "quoted" a=b\nsecond line')
    assert "test_an_exception_is_one_quoted_field" in exc


def test_stack_info_is_a_field(emit):
    record = emit("where am I", stack_info=True)
    assert record["stack"].startswith("Stack (most recent call last):\n")


def test_arguments_that_do_not_fit_still_log_one_line(emit):
    record = emit("%d items", "many")
    assert record["msg"].startswith("%d items") and "many" in record["msg"]


TASK_LOG = FleetOnly("tests.logs.task")


@fleet_app.task(name="tests.logs.logging_task")
def logging_task() -> None:
    TASK_LOG.info("inside the task")


def test_task_name_and_id_inside_a_task(fmt):
    buffer = io.StringIO()
    TASK_LOG.handlers = [logs.handler(buffer)]
    logging_task.apply(task_id="5b1c-test-id").get()  # Celery's real tracer, in process
    [record] = assert_every_line_parses(buffer.getvalue(), fmt)
    assert (record["task"], record["task_id"]) == ("tests.logs.logging_task", "5b1c-test-id")


@pytest.mark.parametrize("secrets", [False, True])
def test_celery_records_about_a_task_carry_its_name_and_id(fmt, monkeypatch, secrets):
    # The worker's main process logs "Task x[id] received" with both in its arguments;
    # masking (which drops the arguments) must not lose them.
    if secrets:
        monkeypatch.setenv("GIS_ACCESS_TOKEN", "gis_tok_5e1f0c2b9a8d")
        get_settings.cache_clear()
    buffer = io.StringIO()
    strategy = logging.getLogger("celery.worker.strategy")
    handler = logs.handler(buffer)
    strategy.addHandler(handler)
    try:
        strategy.warning("Task %(name)s[%(id)s] received",
                         {"name": "gis.scan", "id": "0f7d", "args": "gis_tok_5e1f0c2b9a8d"})
    finally:
        strategy.removeHandler(handler)
    [record] = assert_every_line_parses(buffer.getvalue(), fmt)
    assert (record["task"], record["task_id"]) == ("gis.scan", "0f7d")
    assert record["msg"] == "Task gis.scan[0f7d] received"
    assert "gis_tok_5e1f0c2b9a8d" not in buffer.getvalue()


def test_other_records_with_such_arguments_are_not_taken_for_tasks(emit):
    record = emit("person %(name)s id %(id)s", {"name": "Ana", "id": "42"})
    assert "task" not in record and record["msg"] == "person Ana id 42"


def test_the_handler_keeps_log_level_whatever_the_root_logger_says(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    buffer = io.StringIO()
    log = FleetOnly("tests.logs.level")
    log.addHandler(logs.handler(buffer))
    log.propagate = False
    log.setLevel(logging.DEBUG)  # as tornado sets the root logger to its own level
    log.info("not shown")
    log.warning("shown")
    [record] = assert_every_line_parses(buffer.getvalue(), "logfmt")
    assert record["msg"] == "shown"


def test_log_format_is_validated(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        get_settings()
