"""The periodic schedule. Run exactly one beat (`celery -A worker beat`)."""

from __future__ import annotations

from typing import Any

from worker.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    interval = settings.gis_scan_interval
    return {
        "gis-scan": {
            "task": "gis.scan",
            "schedule": float(interval),
            # A scan that could not start within one interval is superseded by the next.
            "options": {"expires": interval * 0.9},
        },
    }
