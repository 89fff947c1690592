"""The records of the GIS world: offices, programmes, people, opportunities, applications.

Times are kept as Unix seconds (fast to filter and sort) and formatted as ISO-8601
("2026-11-20T10:04:00Z") only when shown. Records are small on purpose (a national world
holds a million of them): slotted classes, values that follow from the id (email, photo
and CV addresses) computed when read, an application's statuses a Trail shared with
every application that went the same way, its own data only the times.
The GraphQL schema (sandbox/schema.graphql) reads these attributes by name.

Each step's date field follows the ladder of docs/api-contracts.md, section 4 ("An
application's status becomes events"): step 1 (open/applied/...) created_at, 2
(accepted/matched) date_matched, 3 (approved) date_approved, 4 (realized) date_realized
(+ experience_start_date), 5 (completed/finished) experience_end_date;
withdrawn/rejected/declined and other statuses only updated_at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DAY = 86400
HOUR = 3600
EXPERIENCE = 6 * 7 * DAY  # planned length of an experience: six weeks

# status -> ladder step (docs/api-contracts.md, section 4); other statuses are off it.
STEP = {"open": 1, "applied": 1, "approved_ep_manager": 1, "approved_tn_manager": 1,
        "accepted": 2, "matched": 2, "approved": 3, "realized": 4,
        "completed": 5, "finished": 5, "withdrawn": -1, "rejected": -2, "declined": -2}
STEP_STATUS = {1: "applied", 2: "accepted", 3: "approved", 4: "realized", 5: "completed"}
TERMINAL = {"completed", "finished", "withdrawn", "rejected", "declined"}


def iso(ts: int | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(slots=True)
class Office:
    id: int
    name: str
    tag: str
    parent: Office | None = None

    @property
    def full_name(self) -> str:
        return f"AIESEC in {self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "tag": self.tag,
                "parent_id": str(self.parent.id) if self.parent else None}


@dataclass(slots=True)
class Programme:
    id: int
    short_name: str
    short_name_display: str

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "short_name": self.short_name,
                "short_name_display": self.short_name_display}


# Fields `Person.edit` may set (the admin API's person edit), with their types.
EDITABLE: dict[str, tuple[type, ...]] = {
    "first_name": (str,), "last_name": (str,), "dob": (str, type(None)),
    "interviewed": (bool,), "status": (str,), "nps_score": (int, type(None)),
    "can_apply": (bool,), "has_email": (bool,), "has_photo": (bool,), "has_cv": (bool,)}


@dataclass(slots=True)
class Person:
    id: int
    first_name: str
    last_name: str
    has_email: bool  # the address itself follows from the id
    dob: str | None
    interviewed: bool
    has_photo: bool
    status: str
    has_cv: bool
    nps_score: int | None
    can_apply: bool
    home_lc: Office
    created_ts: int
    updated_ts: int
    last_active_ts: int

    @property
    def email(self) -> str | None:
        return f"person{self.id}@example.org" if self.has_email else None

    @property
    def profile_photo(self) -> str | None:
        return f"https://cdn-expa.aiesec.org/gis-img/{self.id}.jpg" if self.has_photo else None

    @property
    def cv_url(self) -> str | None:
        return f"https://cdn-expa.aiesec.org/cvs/{self.id}.pdf" if self.has_cv else None

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def permissions(self) -> dict[str, bool]:
        return {"can_apply": self.can_apply}

    @property
    def home_mc(self) -> Office | None:
        return self.home_lc.parent

    @property
    def created_at(self) -> str | None:
        return iso(self.created_ts)

    @property
    def updated_at(self) -> str | None:
        return iso(self.updated_ts)

    @property
    def last_active_at(self) -> str | None:
        return iso(self.last_active_ts)

    def edit(self, changes: dict[str, Any], stamp: int) -> None:
        """Set these fields (EDITABLE: ValueError names any other or a wrong type, and
        nothing is set); updated_at becomes `stamp` (never earlier than it was)."""
        wrong = sorted(set(changes) - set(EDITABLE))
        if wrong:
            raise ValueError(f"not editable: {', '.join(wrong)}; one of {sorted(EDITABLE)}")
        for name, value in changes.items():
            if type(value) not in EDITABLE[name]:  # exact: True is no nps_score
                raise ValueError(f"{name}: {value!r} is not one of "
                                 f"{[k.__name__ for k in EDITABLE[name]]}")
        for name, value in changes.items():
            setattr(self, name, value)
        self.updated_ts = self.last_active_ts = max(self.updated_ts, stamp)

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email, "first_name": self.first_name,
                "last_name": self.last_name, "full_name": self.full_name, "dob": self.dob,
                "interviewed": self.interviewed, "profile_photo": self.profile_photo,
                "status": self.status, "cv_url": self.cv_url, "nps_score": self.nps_score,
                "permissions": self.permissions, "home_lc": self.home_lc.to_json(),
                "home_mc": self.home_mc.to_json() if self.home_mc else None,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "last_active_at": self.last_active_at}


@dataclass(slots=True)
class Opportunity:
    id: int
    title: str
    programme: Programme
    home_lc: Office

    @property
    def home_mc(self) -> Office | None:
        return self.home_lc.parent

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "title": self.title, "programme": self.programme.to_json(),
                "home_lc": self.home_lc.to_json()}


class Trail:
    """The statuses an application went through, oldest first, and where in them each
    step's date comes from: the last entry into that step. One Trail is shared by every
    application that went the same way (`Trail.of`), so an application keeps only its
    times."""

    __slots__ = ("statuses", "matched", "approved", "realized", "ended", "ended_planned",
                 "matched_or_rejected")

    def __init__(self, statuses: tuple[str, ...]) -> None:
        self.statuses = statuses
        self.matched = self.approved = self.realized = self.ended = None
        self.matched_or_rejected: int | None = None
        self.ended_planned = False  # ended by realization: the planned end, not a date seen
        for at, status in enumerate(statuses):
            step = STEP.get(status)
            if step == 2:
                self.matched = self.matched_or_rejected = at
            elif step == 3:
                self.approved = at
            elif step == 4:
                self.realized = self.ended = at
                self.ended_planned = True
            elif step == 5:
                self.ended, self.ended_planned = at, False
            elif step == -2:
                self.matched_or_rejected = at

    @staticmethod
    @lru_cache(maxsize=4096)
    def of(statuses: tuple[str, ...]) -> Trail:
        return Trail(statuses)


def _at(stamps: tuple[int, ...], at: int | None) -> str | None:
    return None if at is None else iso(stamps[at])


class Application:
    """An application: its trail of statuses and when it entered each (`stamps`)."""

    __slots__ = ("id", "person", "opportunity", "updated_ts", "trail", "stamps")

    def __init__(self, aid: int, person: Person, opportunity: Opportunity, trail: Trail,
                 stamps: tuple[int, ...]) -> None:
        self.id = aid
        self.person = person
        self.opportunity = opportunity
        self.trail = trail
        self.stamps = stamps
        self.updated_ts = max(stamps)  # the last transition (an index sorts on it)

    def enter(self, status: str, ts: int) -> None:
        """Move to `status` at `ts` (that step's date field is then `ts`)."""
        self.trail = Trail.of((*self.trail.statuses, status))
        self.stamps += (ts,)
        self.updated_ts = max(self.updated_ts, ts)

    @property
    def status(self) -> str:
        return self.trail.statuses[-1]

    current_status = status

    @property
    def created_ts(self) -> int:
        return self.stamps[0]

    created_at = property(lambda self: iso(self.stamps[0]))
    updated_at = property(lambda self: iso(self.updated_ts))
    date_matched = property(lambda self: _at(self.stamps, self.trail.matched))
    date_approved = property(lambda self: _at(self.stamps, self.trail.approved))
    date_realized = property(lambda self: _at(self.stamps, self.trail.realized))
    experience_start_date = date_realized
    matched_or_rejected_at = property(
        lambda self: _at(self.stamps, self.trail.matched_or_rejected))

    @property
    def experience_end_date(self) -> str | None:
        ended = self.trail.ended
        if ended is None:
            return None
        planned = EXPERIENCE if self.trail.ended_planned else 0
        return iso(self.stamps[ended] + planned)

    def steps(self) -> Iterator[tuple[str, int]]:
        """The history as (status, time) pairs, oldest first."""
        return zip(self.trail.statuses, self.stamps, strict=True)

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "status": self.status, "person_id": str(self.person.id),
                "person_home_lc": str(self.person.home_lc.id),
                "opportunity": self.opportunity.to_json(),
                "created_at": self.created_at, "updated_at": self.updated_at,
                "date_matched": self.date_matched, "date_approved": self.date_approved,
                "date_realized": self.date_realized,
                "experience_start_date": self.experience_start_date,
                "experience_end_date": self.experience_end_date,
                "matched_or_rejected_at": self.matched_or_rejected_at,
                "history": [{"status": s, "at": iso(t)} for s, t in self.steps()]}
