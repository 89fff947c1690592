r"""One log line per record, in logfmt or JSON (`LOG_FORMAT`), every credential masked.

    ts=2026-12-01T10:00:00.123Z level=INFO logger=celery.app.trace process=ForkPoolWorker-1
    pid=42 task=gis.scan task_id=5b1c... msg="Task gis.scan[5b1c...] succeeded in 0.2s: {...}"

Fields, in this order: `ts` (ISO-8601 UTC, milliseconds), `level`, `logger`, `process`
(the process name: MainProcess, ForkPoolWorker-N), `pid`, in task context `task` and
`task_id` (the ids Flower shows), `msg`, and when there is one `exc` (the traceback) and
`stack`. A logfmt value is quoted when it holds a space, `=`, `"`, a backslash or anything
unprintable; inside quotes `\\ \" \n \r \t` and `\uXXXX` are escaped, so a traceback or a
logged dict stays on one line. JSON is one object per line with the same fields.

`setup_process()` makes this the only output of a process's logging (Celery's
`setup_logging` signal calls it, see `worker/app.py`); `configure(logger)` applies the
format and the masking to the handlers a logger already has.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from celery._state import get_current_task
from celery.utils.log import get_multiprocessing_logger

from worker.settings import get_settings

MASK = "***"
FORMATS = ("logfmt", "json")
FIELDS = ("ts", "level", "logger", "process", "pid", "task", "task_id", "msg", "exc", "stack")

# Celery's loggers lose any handler of their own: every record goes through the root's.
HIJACKED = ("celery", "celery.task", "celery.redirected")


class RedactSecrets(logging.Filter):
    """Masks every configured credential wherever it appears in a record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self.mask(message(record)), None
            # A traceback repeats exception messages (a URL with ?access_token=..., say):
            # format it now, masked; formatters reuse exc_text instead of formatting again.
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.mask(record.exc_text)
            if record.stack_info:
                record.stack_info = self.mask(record.stack_info)
        return True


class TaskContext(logging.Filter):
    """Adds `task` and `task_id`: the task running in this thread, or the task a Celery
    record is about (the worker's main process logs "Task x[id] received" with both in
    its arguments). Runs before `RedactSecrets`, which drops the arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None):
            return True
        task = get_current_task()
        if task is not None and task.request and task.request.id:
            record.task, record.task_id = task.name, task.request.id
        elif record.name.startswith("celery.") and isinstance(record.args, Mapping):
            name, task_id = record.args.get("name"), record.args.get("id")
            if isinstance(name, str) and isinstance(task_id, str):
                record.task, record.task_id = name, task_id
        return True


def message(record: logging.LogRecord) -> str:
    """The record's message; a call whose arguments do not fit its format still logs."""
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):
        return f"{record.msg!s} {record.args!r}"


def timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str | int]:
    """The record as ordered fields (absent ones left out); all strings but `pid`."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    values = {
        "ts": timestamp(record.created),
        "level": record.levelname,
        "logger": record.name,
        "process": record.processName,
        "pid": record.process,
        "task": getattr(record, "task", None),
        "task_id": getattr(record, "task_id", None),
        "msg": message(record),
        "exc": record.exc_text or None,
        "stack": record.stack_info or None,
    }
    return {key: value if isinstance(value, int) else str(value)
            for key in FIELDS if (value := values[key]) is not None}


# A logfmt value is quoted when it holds one of these or anything unprintable.
_NEEDS_QUOTES = re.compile(r'[\s="\\]')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Printed as \uXXXX: control characters, and what str.splitlines() would break a line at.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(char: str) -> str:
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def logfmt_value(value: str) -> str:
    if value and not _NEEDS_QUOTES.search(value) and value.isprintable():
        return value
    escaped = re.sub(r'[\\"]', lambda m: _escape(m.group()), value)
    escaped = _UNPRINTABLE.sub(lambda m: _escape(m.group()), escaped)
    return f'"{escaped}"'


def logfmt(values: Mapping[str, object]) -> str:
    return " ".join(f"{key}={logfmt_value(str(value))}" for key, value in values.items())


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return logfmt(fields(record, self))


_JSON_UNPRINTABLE = re.compile(r"[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(fields(record, self), ensure_ascii=False)
        # JSON leaves these raw: invisible, and some readers split lines at them.
        return _JSON_UNPRINTABLE.sub(lambda m: _escape(m.group()), line)


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return JsonFormatter() if fmt == "json" else LogfmtFormatter()


def configure(logger: logging.Logger | None = None) -> None:
    """Apply the fleet's format, task fields and masking to every handler of `logger`
    (default: the root logger)."""
    target = logger or logging.getLogger()
    for each in target.handlers or logging.getLogger().handlers:
        _dress(each)


def _dress(handler: logging.Handler) -> logging.Handler:
    settings = get_settings()
    for old in [f for f in handler.filters if isinstance(f, TaskContext | RedactSecrets)]:
        handler.removeFilter(old)
    handler.addFilter(TaskContext())  # first: it reads the arguments redaction drops
    handler.addFilter(RedactSecrets(settings.secret_values()))
    handler.setFormatter(formatter(settings.log_format))
    return handler


class FleetHandler(logging.StreamHandler):
    """The one handler of a fleet process: one line per record on stderr."""


def handler(stream: TextIO | None = None) -> FleetHandler:
    """A handler at LOG_LEVEL (so a library that lowers the root logger's level, as
    tornado does, cannot make the output chattier than configured)."""
    fleet = FleetHandler(stream or sys.__stderr__)
    fleet.setLevel(get_settings().log_level)
    return _dress(fleet)


def setup_process(stream: TextIO | None = None) -> FleetHandler:
    """Make the fleet's handler the only output of this process's logging, at LOG_LEVEL.
    Safe to call again (the new handler replaces the old one)."""
    fleet = handler(stream)
    root = logging.getLogger()
    root.handlers = [fleet]
    root.setLevel(get_settings().log_level)
    for name in HIJACKED:
        named = logging.getLogger(name)
        named.handlers, named.propagate = [], True
    # billiard's logger never propagates: it writes through the handler itself, at ERROR
    # as under Celery's own setup.
    pool_logger = get_multiprocessing_logger()
    pool_logger.handlers = [fleet]
    pool_logger.setLevel(max(logging.ERROR, fleet.level))
    logging.lastResort = fleet  # a record no handler takes still comes out as one line
    logging.captureWarnings(True)  # warnings.warn() becomes a record too
    return fleet


def current_handler() -> FleetHandler | None:
    return next((h for h in logging.getLogger().handlers if isinstance(h, FleetHandler)), None)
