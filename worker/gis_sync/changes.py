"""What a GIS run reads and hands over (no Celery): where each list starts (its
high-water mark minus GIS_SCAN_OVERLAP), the newest change read, and bundles of records
for the sync tasks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from worker.formats import iso
from worker.gis_sync.ladder import to_unix
from worker.gis_sync.mapping import person_of


def lower_bound(mark: str | None, overlap: int) -> str | None:
    """The mark minus the overlap window (clock skew, late commits in GIS)."""
    ts = to_unix(mark) if mark else None
    return None if ts is None else iso(ts - overlap)


def since_marks(marks: dict[str, str], streams: list[str], overlap: int
                ) -> dict[str, str | None]:
    """Each stream's lower bound: its own mark minus the overlap (None: read it all).
    Each mark comes from its own list: an incoming application must not move the
    mark of the LC's own applications past changes that list has not shown yet."""
    return {stream: lower_bound(marks.get(stream), overlap) for stream in streams}


def newest(records: Iterable[dict[str, Any]], current: str | None,
           now: float | None = None) -> str | None:
    """The newest `updated_at` among records and the current mark, never past `now`: a
    record stamped in the future (a skewed clock, a typo) must not move the mark beyond
    changes that have not happened yet (it is read again by each scan, harmlessly)."""
    now = time.time() if now is None else now
    best, best_ts = current, to_unix(current) if current else None
    for record in records:
        ts = to_unix(record.get("updated_at"))
        if ts is None:
            continue
        value = record["updated_at"] if ts <= now else iso(now)
        if best_ts is None or min(ts, now) > best_ts:
            best, best_ts = value, min(ts, now)
    return best


def bundles(people: list[dict[str, Any]], applications: list[dict[str, Any]], size: int
            ) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Chunks of about `size` records, a person's applications beside the person."""
    by_person: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for p in people:
        key = str(p.get("id")) if isinstance(p, dict) else f"?{id(p)}"
        by_person.setdefault(key, ([], []))[0].append(p)
    for a in applications:
        owner = person_of(a) if isinstance(a, dict) else None
        by_person.setdefault(owner or f"?{id(a)}", ([], []))[1].append(a)
    chunks: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    current: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for ps, apps in by_person.values():
        filled = len(current[0]) + len(current[1])
        if filled and filled + len(ps) + len(apps) > size:
            chunks.append(current)
            current = ([], [])
        current[0].extend(ps)
        current[1].extend(apps)
    if current[0] or current[1]:
        chunks.append(current)
    return chunks
