"""The shapes both jobs share: a record as JSON has it, the one timestamp format, and the
compact JSON every Redis value of a run is written in (pure; imports nothing of the fleet).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

# A JSON object: a GIS person or application, a Segment profile, a run record, a summary.
Record = dict[str, Any]


def iso(ts: float | None = None) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (UTC) of a Unix time, now by default: run records,
    summaries and GIS's own `updated_at` bounds."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads_fields(raw: dict[str, str]) -> Record | None:
    """A hash whose every value is compact JSON (a run record, a walk's checkpoint) read
    back; None for an empty one (Redis's answer for a missing key)."""
    return {name: json.loads(value) for name, value in raw.items()} if raw else None
