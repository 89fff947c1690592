"""Application status -> customer.io events (pure: no Celery, Redis or HTTP).

The ladder (docs/api-contracts.md, section 4) maps each GIS status to a step, an event type
and the field holding the transition's time. `events()` turns "what we knew" (the
previous step, or None when we know nothing) and the application as GIS shows it now
into the ordered events to send, and each event's id is a ULID derived from
(application id, event name, timestamp): the same transition always gets the same id,
so customer.io drops a repeat (after a crash, a backfill, a lost Redis).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ulid import ULID

# status -> (step, event type, timestamp field); None = a known status that emits nothing.
DEFAULT_LADDER: dict[str, tuple[int, str, str] | None] = {
    "open": (1, "applied", "created_at"),
    "applied": (1, "applied", "created_at"),
    "approved_ep_manager": (1, "applied", "created_at"),
    "approved_tn_manager": (1, "applied", "created_at"),
    "accepted": (2, "accepted", "date_matched"),
    "matched": (2, "accepted", "date_matched"),
    "approved": (3, "approved", "date_approved"),
    "realized": (4, "realized", "date_realized"),
    "completed": (5, "completed", "experience_end_date"),
    "finished": (5, "completed", "experience_end_date"),
    "withdrawn": (-1, "withdrawn", "updated_at"),
    "rejected": (-2, "rejected", "updated_at"),
    "declined": (-2, "rejected", "updated_at"),
    # Known statuses outside the ladder: counted as unmapped, never an error.
    "break_approved": None,
    "approval_broken": None,
    "realization_broken": None,
    "matched_broken": None,
    "break_realized": None,
}

# Programmes (short_name, upper-cased) the ladder applies to; others are malformed.
KNOWN_PROGRAMMES = frozenset({"GV", "GTA", "GTE", "GCDP", "GIP", "GE", "TMP", "TLP"})

# Where a step's time falls back to when its own field is empty.
FALLBACK_FIELD = "updated_at"
# Event times outside these bounds are not dates GIS meant (nor ones a ULID can hold).
EARLIEST = 315532800  # 1980-01-01
FUTURE_SLACK = 366 * 86400


class Malformed(ValueError):
    """A GIS record this job cannot use; the message is the reason shown to users."""


@dataclass(frozen=True)
class Ladder:
    table: dict[str, tuple[int, str, str] | None]
    name_field: str = "short_name"

    def rung(self, status: str) -> tuple[int, str, str] | None:
        """The status's rung; None for a status outside the ladder (known or not): it
        emits nothing and is counted as unmapped, never as a failure."""
        return self.table.get(status)

    def steps(self) -> dict[int, tuple[str, str]]:
        """Positive step -> (event type, timestamp field), first status wins."""
        out: dict[int, tuple[str, str]] = {}
        for rung in self.table.values():
            if rung and rung[0] > 0:
                out.setdefault(rung[0], (rung[1], rung[2]))
        return dict(sorted(out.items()))


def load_ladder(override_json: str | None = None, name_field: str = "short_name") -> Ladder:
    """The default table, with GIS_STATUS_EVENTS entries ({"status": [step, type, field]}
    or {"status": null} for "emit nothing") laid over it."""
    table = dict(DEFAULT_LADDER)
    if override_json:
        raw = json.loads(override_json)
        if not isinstance(raw, dict):
            raise ValueError("GIS_STATUS_EVENTS must be a JSON object")
        for status, rung in raw.items():
            if rung is None:
                table[status] = None
            else:
                step, kind, ts_field = rung
                table[status] = (int(step), str(kind), str(ts_field))
    return Ladder(table, name_field)


@dataclass
class Event:
    name: str
    timestamp: int
    id: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "timestamp": self.timestamp,
                "data": self.data}


@dataclass
class Outcome:
    """What one application's change means: events to send and the step to remember."""

    kind: str  # forward | withdrawn | rejected | unchanged | backward | unmapped | history
    step: int | None  # the step to remember after the events are accepted
    events: list[Event] = field(default_factory=list)
    skipped: int = 0  # events dated before `since` (cold-start window, backfill range)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (field, reason)


def to_unix(value: str | None) -> int | None:
    """ISO-8601 date or date-time (Z or offset; naive = UTC) -> Unix seconds."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text[:10]), datetime.min.time())
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return int(parsed.timestamp())
    except (OverflowError, ValueError, OSError):  # year 1 in a far time zone, say
        return None


def event_id(application_id: str, name: str, timestamp: int) -> str:
    """A ULID whose time part is the transition (ms) and whose random part is derived
    from (application id, event name, timestamp): stable across runs and workers."""
    digest = hashlib.sha256(f"{application_id}|{name}|{timestamp}".encode()).digest()
    ms = timestamp * 1000
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + digest[:10]))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def programme_name(application: dict[str, Any], name_field: str) -> str:
    """The event names' prefix (GV, GTE, ...); Malformed without a known programme."""
    programme = _object(_object(application.get("opportunity")).get("programme"))
    short = programme.get("short_name")
    short = short.strip().upper() if isinstance(short, str) else ""
    if short not in KNOWN_PROGRAMMES:
        raise Malformed(f"no known programme ({str(short or programme.get('id'))[:40]!r})")
    name = programme.get(name_field)
    return (name.strip().upper() if isinstance(name, str) and name.strip() else short)


def status_of(application: dict[str, Any]) -> str:
    status = application.get("status") or application.get("current_status")
    if not isinstance(status, str) or not status.strip():
        raise Malformed("no status")
    return status.strip()


def validate(application: Any, ladder: Ladder) -> str | None:
    """The reason this application is unusable (no id, no known programme, no status),
    or None. A status outside the ladder is usable: it emits nothing."""
    try:
        if not isinstance(application, dict):
            raise Malformed("not a record")
        if application.get("id") in (None, "") or isinstance(application.get("id"),
                                                               dict | list | bool):
            raise Malformed("no id")
        if not str(application["id"]).strip():  # property tests: "  " passed as an id
            raise Malformed("no id")
        programme_name(application, ladder.name_field)
        status_of(application)
    except Malformed as exc:
        return str(exc)
    return None


def events(previous_step: int | None, application: dict[str, Any], ladder: Ladder,
           since: int | None = None) -> Outcome:
    """The events an application's change emits, oldest first.

    previous_step None = nothing known (cold start, backfill): the history the record
    shows, every step whose date is set up to the current one, then a withdrawal or
    rejection. Otherwise a forward move emits every step passed, a move to a negative
    status its one event, and backward moves / unmapped statuses nothing.
    Events dated before `since` (Unix seconds) are dropped and counted as skipped.
    Raises Malformed for an application this job cannot read.
    """
    reason = validate(application, ladder)
    if reason:
        raise Malformed(reason)
    rung = ladder.rung(status_of(application))
    if rung is None:  # outside the ladder: nothing, also with no history known
        return Outcome(kind="unmapped", step=previous_step)
    if previous_step is None:
        kind, steps, final = _history(application, rung, ladder)
    else:
        kind, steps, final = _move(previous_step, rung, ladder)
    outcome = Outcome(kind=kind, step=rung[0])
    if final:
        steps = [*steps, final]
    prefix = programme_name(application, ladder.name_field)
    for event_type, ts_field in steps:
        timestamp = _time(application, ts_field, outcome)
        if since is not None and timestamp < since:
            outcome.skipped += 1
            continue
        outcome.events.append(_event(application, prefix, event_type, timestamp))
    return outcome


Steps = list[tuple[str, str]]


def _history(application: dict[str, Any], rung: tuple[int, str, str],
             ladder: Ladder) -> tuple[str, Steps, tuple[str, str] | None]:
    if rung[0] > 0:
        upto = rung[0]
        return "history", [v for s, v in ladder.steps().items() if s <= upto], None
    # Withdrawn or rejected now: the steps the record has dates for (the last step is
    # terminal, and its date field may hold a planned end: never inferred from a date),
    # then the withdrawal or rejection.
    # Property tests: a garbage date hid its step with no warning; a set field is a step.
    dated = [v for s, v in _before_last(ladder)
             if s == 1 or application.get(v[1]) not in (None, "")]
    return "history", dated, (rung[1], rung[2])


def to_unix_or_none(value: Any) -> int | None:
    return to_unix(value) if isinstance(value, str) else None


def _before_last(ladder: Ladder) -> list[tuple[int, tuple[str, str]]]:
    return list(ladder.steps().items())[:-1]


def _move(previous: int, rung: tuple[int, str, str] | None,
          ladder: Ladder) -> tuple[str, Steps, tuple[str, str] | None]:
    if rung is None:
        return "unmapped", [], None
    step, event_type, ts_field = rung
    if step == previous:
        return "unchanged", [], None
    if step < 0:
        return event_type, [], (event_type, ts_field)
    if step < previous:
        return "backward", [], None
    start = max(previous, 0)
    return "forward", [v for s, v in ladder.steps().items() if start < s <= step], None


def _time(application: dict[str, Any], ts_field: str, outcome: Outcome) -> int:
    """The transition's time: its own field, else updated_at, else created_at. A field
    that holds something other than a date is named in a warning; no date at all makes
    the event, and so the application, unusable."""
    latest = time.time() + FUTURE_SLACK
    for name in dict.fromkeys((ts_field, FALLBACK_FIELD, "created_at")):
        raw = application.get(name)
        value = to_unix_or_none(raw)
        if value is not None and EARLIEST <= value <= latest:
            return value
        problem = "not a date-time" if value is None else "implausible date-time"
        if raw not in (None, "") and (name, problem) not in outcome.warnings:
            outcome.warnings.append((name, problem))
    raise Malformed(f"no valid date for its {ts_field} event")


def _event(application: dict[str, Any], prefix: str, event_type: str,
           timestamp: int) -> Event:
    app_id = str(application["id"])
    name = f"{prefix}{event_type}"
    opportunity = _object(application.get("opportunity"))
    data: dict[str, Any] = {"application_id": app_id, "programme": prefix}
    if isinstance(opportunity.get("id"), str | int) and not isinstance(opportunity["id"], bool):
        data["opportunity_id"] = str(opportunity["id"])
    return Event(name=name, timestamp=timestamp, id=event_id(app_id, name, timestamp), data=data)
