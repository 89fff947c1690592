"""What changed in GIS since the high-water marks (pure reads: no Celery).

`read_changes` asks GIS for the people of the LC and the applications of its people
(and, with GIS_SYNC_INCOMING, to its opportunities) changed since each list's mark,
minus GIS_SCAN_OVERLAP; the new marks are the newest `updated_at` each list returned.
`with_retries` adds the records that failed before; `bundles` cuts the lot into tasks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.clients.gis import GisClient
from worker.gis_sync import state
from worker.gis_sync.ladder import to_unix
from worker.gis_sync.mapping import person_of
from worker.settings import Settings


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- planning a scan ------------------------------------------------------------------
@dataclass
class Changes:
    people: list[dict[str, Any]] = field(default_factory=list)
    applications: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, str] = field(default_factory=dict)
    gis_calls: int = 0


def lower_bound(mark: str | None, overlap: int) -> str | None:
    """The mark minus the overlap window (clock skew, late commits in GIS)."""
    ts = to_unix(mark) if mark else None
    return None if ts is None else iso(ts - overlap)


def read_changes(gis: GisClient, settings: Settings, marks: dict[str, str] | None
                 ) -> Changes:
    """People and applications changed since `marks` (everything when None)."""
    lc = int(settings.gis_home_lc_id or 0)
    overlap = settings.gis_scan_overlap
    since = {name: lower_bound((marks or {}).get(name), overlap)
             for name in ("people", "applications", "incoming")}
    changes = Changes()
    changes.people = list(gis.people(lc, since["people"]))
    own = list(gis.applications(since["applications"], person_home_lc=lc))
    changes.applications = list(own)
    if settings.gis_sync_incoming:
        known = {str(a["id"]) for a in own}
        incoming = list(gis.applications(since["incoming"], opportunity_home_lc=lc))
        changes.applications += [a for a in incoming if str(a["id"]) not in known]
        changes.marks["incoming"] = newest(incoming, (marks or {}).get("incoming"))
    changes.marks["people"] = newest(changes.people, (marks or {}).get("people"))
    # Each mark from its own query: an incoming application read later must not move
    # the person_home_lc mark past changes that query has not seen.
    changes.marks["applications"] = newest(own, (marks or {}).get("applications"))
    changes.marks = {k: v for k, v in changes.marks.items() if v}
    changes.gis_calls = gis.calls
    return changes


def newest(records: Iterable[dict[str, Any]], current: str | None) -> str | None:
    """The newest `updated_at` among records and the current mark."""
    best, best_ts = current, to_unix(current) if current else None
    for record in records:
        ts = to_unix(record.get("updated_at"))
        if ts is not None and (best_ts is None or ts > best_ts):
            best, best_ts = record["updated_at"], ts
    return best


def with_retries(people: list[dict[str, Any]], applications: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Add the failed records of earlier runs that this read did not bring again."""
    have = {("person", str(p.get("id"))) for p in people}
    have |= {("application", str(a.get("id"))) for a in applications}
    people, applications = list(people), list(applications)
    for name, failure in state.failures().items():
        kind, _, rid = name.partition(":")
        record = failure.get("record")
        if record and (kind, rid) not in have:
            (people if kind == "person" else applications).append(record)
    return people, applications


def bundles(people: list[dict[str, Any]], applications: list[dict[str, Any]], size: int
            ) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Chunks of about `size` records, a person's applications beside the person."""
    by_person: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for p in people:
        by_person.setdefault(str(p.get("id")), ([], []))[0].append(p)
    for a in applications:
        by_person.setdefault(person_of(a) or f"?{a.get('id')}", ([], []))[1].append(a)
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
