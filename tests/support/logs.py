"""The fleet's log output, read back with real parsers (`worker/logs.py` writes it).

    records = assert_every_line_parses(process.log(), "logfmt")   # or "json"

Every line must be one whole record: logfmt as go-logfmt reads it (`logfmtkv` in strict
mode), every pair with a value and no key twice; or one JSON object. Each record has at
least `ts` (ISO-8601 UTC), `level`, `logger`, `process` and `msg`. A blank line, a
banner, a raw traceback line all fail, named with their line number.
"""

from __future__ import annotations

import json
import re
from typing import Any

import logfmtkv

REQUIRED = ("ts", "level", "logger", "process", "msg")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def parse_line(line: str, fmt: str) -> dict[str, Any]:
    """One record, or ValueError saying why the line is not one."""
    record = _logfmt(line) if fmt == "logfmt" else _json(line)
    missing = [key for key in REQUIRED if not isinstance(record.get(key), str)]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    if not TS.fullmatch(record["ts"]):
        raise ValueError(f"ts {record['ts']!r} is not ISO-8601 UTC with milliseconds")
    if record["level"] not in LEVELS:
        raise ValueError(f"level {record['level']!r}")
    return record


def _logfmt(line: str) -> dict[str, Any]:
    try:
        pairs = logfmtkv.parse_pairs(line, strict=True)
    except logfmtkv.LogfmtSyntaxError as exc:
        raise ValueError(str(exc)) from None
    bare = [p.key for p in pairs if p.value is None]
    if bare:  # valid logfmt, but a key without a value is prose, not a record
        raise ValueError(f"bare keys {bare[:5]}")
    keys = [p.key for p in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key twice in {keys}")
    return {p.key: p.value for p in pairs}


def _json(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def assert_every_line_parses(text: str, fmt: str) -> list[dict[str, Any]]:
    """Every line of `text` as a record; fails listing the lines that are not."""
    assert fmt in ("logfmt", "json"), fmt
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last record
    records, bad = [], []
    for number, line in enumerate(lines, 1):
        try:
            records.append(parse_line(line, fmt))
        except ValueError as exc:
            bad.append(f"line {number}: {exc}: {line[:300]!r}")
    assert not bad, f"{len(bad)} of {len(lines)} lines are not {fmt} records:\n" + "\n".join(
        bad[:20])
    return records
