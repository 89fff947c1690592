"""The periodic schedule. Run exactly one beat (`celery -A worker beat`).

Plain data: the app's configuration (`worker/celeryconfig.py`) calls it with the
configured interval; importing it imports nothing of the worker.
"""

from __future__ import annotations

from typing import Any


def beat_schedule(scan_interval: float) -> dict[str, dict[str, Any]]:
    return {
        "gis-scan": {
            "task": "gis.scan",
            "schedule": float(scan_interval),
            # A scan that could not start within one interval is superseded by the next.
            # Nobody reads a scheduled scan's result (its run summary is the record).
            "options": {"expires": scan_interval * 0.9, "ignore_result": True},
        },
    }
