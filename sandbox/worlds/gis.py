"""The GIS world: offices, people and applications, deterministic for seed + sizes + now.

Times are kept as Unix seconds (fast to filter and sort) and formatted as ISO-8601
("2026-11-20T10:04:00Z") only when shown. Every application keeps its status history;
each step's date field follows the ladder of docs/api-contracts.md, section 4 ("An
application's status becomes events"):
step 1 (open/applied/...) created_at, 2 (accepted/matched) date_matched, 3 (approved)
date_approved, 4 (realized) date_realized (+ experience_start_date), 5 (completed/finished)
experience_end_date; withdrawn/rejected/declined and other statuses only updated_at.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.credentials import GIS_HOME_LC_ID

DAY = 86400
HOUR = 3600


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


# Current GV/GTa/GTe, legacy GCDP (shown as GV) and GIP (shown as GT), member programmes.
PROGRAMMES = {
    "GV": Programme(7, "GV", "GV"), "GTa": Programme(8, "GTa", "GTa"),
    "GTe": Programme(9, "GTe", "GTe"), "GCDP": Programme(1, "GCDP", "GV"),
    "GIP": Programme(2, "GIP", "GT"), "TMP": Programme(3, "TMP", "TMP"),
    "TLP": Programme(4, "TLP", "TLP"),
}
PROGRAMME_WEIGHTS = {"GV": 30, "GTa": 15, "GTe": 15, "GCDP": 15, "GIP": 12, "TMP": 7, "TLP": 6}
UNKNOWN_PROGRAMME = Programme(99, "XPX", "XPX")  # malformed: a programme no table knows

# status -> ladder step (docs/api-contracts.md, section 4); other statuses are off it.
STEP = {"open": 1, "applied": 1, "approved_ep_manager": 1, "approved_tn_manager": 1,
        "accepted": 2, "matched": 2, "approved": 3, "realized": 4,
        "completed": 5, "finished": 5, "withdrawn": -1, "rejected": -2, "declined": -2}
STEP_STATUS = {1: "applied", 2: "accepted", 3: "approved", 4: "realized", 5: "completed"}
TERMINAL = {"completed", "finished", "withdrawn", "rejected", "declined"}
# Final status of a generated application, with weights.
FINAL_WEIGHTS = {"open": 8, "applied": 14, "approved_ep_manager": 3, "approved_tn_manager": 2,
                 "accepted": 9, "matched": 3, "approved": 10, "realized": 8, "completed": 9,
                 "finished": 2, "withdrawn": 10, "rejected": 8, "declined": 3,
                 "break_approved": 3, "approval_broken": 1, "realization_broken": 1}
# Off-ladder statuses and the step they leave from.
BROKEN_FROM = {"break_approved": 3, "approval_broken": 3, "realization_broken": 4}
UNKNOWN_STATUS = "on_hold_legacy"  # malformed: a status no table knows

FIRST = ["Ana", "João", "Mei", "Olumide", "Zoë", "Łukasz", "Siddharth", "Fatima", "Chloé",
         "Kwame", "Ingrid", "Mateo", "Aiko", "Nguyễn", "Oksana", "Émile", "Priya", "Tomás",
         "Amara", "Jürgen", "Søren", "Yara", "Hüseyin", "Camila", "李", "Дмитрий"]
LAST = ["Silva", "Okafor", "Müller", "García", "Kowalski", "Tanaka", "Haddad", "Novák",
        "Ødegaard", "Dubois", "Mensah", "Rossi", "Petrov", "Çelik", "Nakamura", "O'Brien",
        "Fernández", "Lindqvist", "Ayodele", "Schröder", "王", "Иванова"]
PERSON_STATUS = ["open", "applied", "accepted", "approved", "realized", "completed"]
CITIES = ["Lisbon", "Accra", "Kraków", "Osaka", "Monterrey", "Hanoi", "Bergen", "Kyiv"]


@dataclass(slots=True)
class Person:
    id: int
    first_name: str
    last_name: str
    email: str | None
    dob: str | None
    interviewed: bool
    profile_photo: str | None
    status: str
    cv_url: str | None
    nps_score: int | None
    can_apply: bool
    home_lc: Office
    created_ts: int
    updated_ts: int
    last_active_ts: int

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


@dataclass(slots=True)
class Application:
    id: int
    status: str
    person: Person
    opportunity: Opportunity
    created_ts: int
    updated_ts: int
    matched_ts: int | None = None
    approved_ts: int | None = None
    realized_ts: int | None = None
    start_ts: int | None = None
    end_ts: int | None = None
    matched_or_rejected_ts: int | None = None
    history: list[tuple[str, int]] = field(default_factory=list)

    @property
    def current_status(self) -> str:
        return self.status

    created_at = property(lambda self: iso(self.created_ts))
    updated_at = property(lambda self: iso(self.updated_ts))
    date_matched = property(lambda self: iso(self.matched_ts))
    date_approved = property(lambda self: iso(self.approved_ts))
    date_realized = property(lambda self: iso(self.realized_ts))
    experience_start_date = property(lambda self: iso(self.start_ts))
    experience_end_date = property(lambda self: iso(self.end_ts))
    matched_or_rejected_at = property(lambda self: iso(self.matched_or_rejected_ts))

    def enter(self, status: str, ts: int) -> None:
        """Move to `status` at `ts`, stamping that step's date field."""
        step = STEP.get(status)
        if step == 2:
            self.matched_ts = self.matched_or_rejected_ts = ts
        elif step == 3:
            self.approved_ts = ts
        elif step == 4:
            self.realized_ts = self.start_ts = ts
            self.end_ts = ts + 6 * 7 * DAY  # planned end of a six-week experience
        elif step == 5:
            self.end_ts = ts
        elif step == -2:
            self.matched_or_rejected_ts = ts
        self.status = status
        self.updated_ts = max(self.updated_ts, ts)
        self.history.append((status, ts))

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
                "history": [{"status": s, "at": iso(t)} for s, t in self.history]}


def _offices() -> tuple[Office, list[Office]]:
    region = Office(1626, "Sandbox Region", "Region")
    home_mc = Office(1500, "Sandboxia", "MC", region)
    home = Office(GIS_HOME_LC_ID, "Sandbox LC", "LC", home_mc)
    others: list[Office] = []
    for i, (mc_name, lcs) in enumerate([("Portugal", ["Lisboa", "Porto"]),
                                        ("Ghana", ["Accra", "Kumasi"]),
                                        ("Poland", ["Kraków"]), ("Japan", ["Osaka"]),
                                        ("Mexico", ["Monterrey", "Guadalajara"])]):
        mc = Office(2000 + 100 * i, mc_name, "MC", region)
        others += [Office(2001 + 100 * i + j, name, "LC", mc) for j, name in enumerate(lcs)]
    return home, others


class World:
    """People and applications of LC 1340 and of those who apply to its opportunities."""

    def __init__(self, seed: int, people: int, applications: int, now: datetime) -> None:
        self.seed = seed
        self.now = int(now.timestamp())
        self.rng = random.Random(seed)
        self.home, self.other_lcs = _offices()
        self.people: list[Person] = []
        self.applications: list[Application] = []
        self.opportunities: list[Opportunity] = []
        self._generate(people, applications)
        self.people_by_id = {p.id: p for p in self.people}
        self.applications_by_id = {a.id: a for a in self.applications}
        self.advances = 0
        # Filtered + sorted lists per query (sandbox.gis); a walk of N pages filters once.
        self.query_cache: dict[tuple[Any, ...], list[Any]] = {}

    # --- generation --------------------------------------------------------------------
    def _generate(self, n_people: int, n_apps: int) -> None:
        rng = self.rng
        n_home = max(1, round(n_people * 0.85)) if n_people else 0
        for i in range(n_people):
            lc = self.home if i < n_home else rng.choice(self.other_lcs)
            self.people.append(self._person(3_000_000 + i * 7, lc, i))
        n_opps = max(10, n_apps // 8)
        for i in range(n_opps):
            # A third of the opportunities are hosted by the home LC (incoming applications).
            lc = self.home if i % 3 == 0 else rng.choice(self.other_lcs)
            programme = PROGRAMMES[rng.choices(list(PROGRAMME_WEIGHTS),
                                               list(PROGRAMME_WEIGHTS.values()))[0]]
            self.opportunities.append(Opportunity(
                900_000 + i * 3, f"{programme.short_name_display} project in "
                f"{rng.choice(CITIES)} #{i}", programme, lc))
        if not self.people or not n_apps:
            return
        home_people = self.people[:n_home] or self.people
        visitors = self.people[n_home:]
        home_opps = [o for o in self.opportunities if o.home_lc is self.home]
        away_opps = [o for o in self.opportunities if o.home_lc is not self.home]
        for i in range(n_apps):
            # Every visitor applies at least once to a home-LC opportunity; then 30% incoming.
            if visitors and (i < len(visitors) or rng.random() < 0.3):
                person = visitors[i] if i < len(visitors) else rng.choice(visitors)
                opp = rng.choice(home_opps)
            else:
                person, opp = rng.choice(home_people), rng.choice(away_opps)
            self.applications.append(self._application(8_000_000 + i * 11, person, opp, i))
        for app in self.applications:  # nobody applies before signing up
            if app.created_ts < app.person.created_ts:
                app.person.created_ts = app.created_ts - rng.randint(HOUR, 30 * DAY)

    def _person(self, pid: int, lc: Office, i: int) -> Person:
        rng, now = self.rng, self.now
        first, last = rng.choice(FIRST), rng.choice(LAST)
        created = now - rng.randint(20 * DAY, 1000 * DAY)
        recent = rng.random() < 0.05
        updated = now - rng.randint(60, 72 * HOUR) if recent else \
            rng.randint(created, max(created, now - 72 * HOUR))
        email = f"person{pid}@example.org" if i % 97 != 13 else None  # some have none
        year = rng.randint(1990, 2006)
        dob = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if i % 89 == 7:
            dob = rng.choice(["1999-02-30", "0000-00-00", "31/12/1998", "not a date"])
        return Person(
            id=pid, first_name=first, last_name=last, email=email, dob=dob,
            interviewed=rng.random() < 0.4,
            profile_photo=f"https://cdn-expa.aiesec.org/gis-img/{pid}.jpg"
            if rng.random() < 0.7 else None,
            status=rng.choice(PERSON_STATUS),
            cv_url=f"https://cdn-expa.aiesec.org/cvs/{pid}.pdf" if rng.random() < 0.5 else None,
            nps_score=rng.randint(0, 10) if rng.random() < 0.3 else None,
            can_apply=rng.random() < 0.9, home_lc=lc, created_ts=created, updated_ts=updated,
            last_active_ts=max(updated, now - rng.randint(0, 30 * DAY)))

    def _path_to(self, final: str) -> list[str]:
        """The statuses an application went through to reach `final`."""
        step = STEP.get(final)
        if final == "open":
            return ["open"]
        if step == 1:
            return ["open", "applied"] if final == "applied" else ["open", "applied", final]
        if step is not None and step > 1:
            return ["open", "applied"] + [STEP_STATUS[s] for s in range(2, step)] + [final]
        top = BROKEN_FROM.get(final) or (self.rng.randint(1, 3) if step else 1)
        return ["open", "applied"] + [STEP_STATUS[s] for s in range(2, top + 1)] + [final]

    def _application(self, aid: int, person: Person, opp: Opportunity, i: int) -> Application:
        rng, now = self.rng, self.now
        final = rng.choices(list(FINAL_WEIGHTS), list(FINAL_WEIGHTS.values()))[0]
        if i % 211 == 17:
            final = UNKNOWN_STATUS
        path = self._path_to(final)
        # The last transition: ~5% within the last 72 h, the rest up to two years back.
        last = now - (rng.randint(60, 72 * HOUR) if rng.random() < 0.05
                      else rng.randint(72 * HOUR, 700 * DAY))
        stamps = [last]
        for _ in path[1:]:
            stamps.append(stamps[-1] - rng.randint(HOUR, 40 * DAY))
        stamps.reverse()
        app = Application(aid, path[0], person, opp, created_ts=stamps[0], updated_ts=stamps[0])
        app.history.append((path[0], stamps[0]))
        for status, ts in zip(path[1:], stamps[1:], strict=True):
            app.enter(status, ts)
        if i % 307 == 41:
            app.opportunity = Opportunity(opp.id, opp.title, UNKNOWN_PROGRAMME, opp.home_lc)
        return app

    # --- change ------------------------------------------------------------------------
    def advance(self, share: float, people_share: float, seed: int | None) -> dict[str, Any]:
        """Move a share of applications (mostly forward) and edit a share of people,
        stamped with the current time."""
        self.advances += 1
        self.query_cache.clear()
        rng = random.Random(seed if seed is not None else self.seed * 1000 + self.advances)
        stamp = max(int(time.time()), self.now + 1)
        movable = [a for a in self.applications if a.status not in TERMINAL]
        count = min(len(movable), round(share * len(self.applications)))
        moves = []
        for app in rng.sample(movable, count):
            before = app.status
            self._move(app, rng, stamp)
            moves.append({"id": str(app.id), "from": before, "to": app.status})
        edited = rng.sample(self.people, min(len(self.people),
                                             round(people_share * len(self.people))))
        for person in edited:
            self._edit(person, rng, stamp)
        return {"applications_moved": [m["id"] for m in moves],
                "people_edited": [str(p.id) for p in edited], "moves": moves}

    def _move(self, app: Application, rng: random.Random, stamp: int) -> None:
        step = STEP.get(app.status)
        roll = rng.random()
        if roll < 0.1:
            app.enter("withdrawn", stamp)
        elif roll < 0.2:
            app.enter(rng.choice(["rejected", "declined"]), stamp)
        elif roll < 0.3 and step and step > 1:
            app.enter(STEP_STATUS[step - 1] if step > 2 else "applied", stamp)  # backwards
        else:
            start = step if step and step > 0 else BROKEN_FROM.get(app.status, 1)
            top = min(5, start + (2 if rng.random() < 0.25 else 1))
            for s in range(start + 1, top + 1):  # every step passed gets its date
                app.enter(STEP_STATUS[s], stamp)

    def _edit(self, person: Person, rng: random.Random, stamp: int) -> None:
        what = rng.randrange(4)
        if what == 0:
            person.nps_score = rng.randint(0, 10)
        elif what == 1:
            person.interviewed = not person.interviewed
        elif what == 2:
            person.last_name = rng.choice(LAST)
        else:
            person.status = rng.choice(PERSON_STATUS)
        person.updated_ts = person.last_active_ts = max(person.updated_ts, stamp)
