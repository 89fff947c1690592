"""The GIS world: offices, people and applications of LC 1340 and of those who apply to its
opportunities, deterministic for seed + sizes + now; and how it changes (`advance`).

The records are in sandbox/worlds/gis_records.py; `people_index` and `application_index`
(sandbox/worlds/index.py) answer list queries without looking at the whole world.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import Any

from sandbox.credentials import GIS_HOME_LC_ID
from sandbox.worlds.added import AddedApplication, AddedPerson, AddedRecord
from sandbox.worlds.draws import Draws, Weighted, building
from sandbox.worlds.gis_records import (
    DAY,
    HOUR,
    STEP,
    STEP_STATUS,
    TERMINAL,
    Application,
    Office,
    Opportunity,
    Person,
    Programme,
    Trail,
)
from sandbox.worlds.index import RecordIndex

# Current GV/GTa/GTe, legacy GCDP (shown as GV) and GIP (shown as GT), member programmes.
PROGRAMMES = {
    "GV": Programme(7, "GV", "GV"), "GTa": Programme(8, "GTa", "GTa"),
    "GTe": Programme(9, "GTe", "GTe"), "GCDP": Programme(1, "GCDP", "GV"),
    "GIP": Programme(2, "GIP", "GT"), "TMP": Programme(3, "TMP", "TMP"),
    "TLP": Programme(4, "TLP", "TLP"),
}
PROGRAMME_WEIGHTS = Weighted({"GV": 30, "GTa": 15, "GTe": 15, "GCDP": 15, "GIP": 12,
                              "TMP": 7, "TLP": 6})
UNKNOWN_PROGRAMME = Programme(99, "XPX", "XPX")  # malformed: a programme no table knows

# Final status of a generated application, with weights.
FINAL_WEIGHTS = Weighted({
    "open": 8, "applied": 14, "approved_ep_manager": 3, "approved_tn_manager": 2,
    "accepted": 9, "matched": 3, "approved": 10, "realized": 8, "completed": 9,
    "finished": 2, "withdrawn": 10, "rejected": 8, "declined": 3,
    "break_approved": 3, "approval_broken": 1, "realization_broken": 1})
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
BAD_DOBS = ["1999-02-30", "0000-00-00", "31/12/1998", "not a date"]


def _trail(final: str, top: int = 1) -> Trail:
    """The statuses an application went through to reach `final`; an off-ladder status
    without a known origin (withdrawn, rejected...) leaves from step `top`."""
    step = STEP.get(final)
    if final == "open":
        return Trail.of(("open",))
    if step == 1:
        return Trail.of(("open", "applied") if final == "applied"
                        else ("open", "applied", final))
    if step is not None and step > 1:
        return Trail.of(("open", "applied", *(STEP_STATUS[s] for s in range(2, step)), final))
    top = BROKEN_FROM.get(final, top)
    return Trail.of(("open", "applied", *(STEP_STATUS[s] for s in range(2, top + 1)), final))


# The trail to each final status, made once; a draw picks the step that withdrawn,
# rejected and declined applications left from (1 to 3).
DRAWN_ORIGIN = {status for status, step in STEP.items() if step < 0}
TRAILS = {final: _trail(final) for final in [*FINAL_WEIGHTS.items, UNKNOWN_STATUS]
          if final not in DRAWN_ORIGIN}
TRAILS_FROM = {final: {top: _trail(final, top) for top in (1, 2, 3)}
               for final in DRAWN_ORIGIN}


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


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _lc_and_mc(office: Office) -> tuple[int, ...]:
    return (office.id, office.parent.id) if office.parent else (office.id,)


def _mc(office: Office) -> tuple[int, ...]:
    return (office.parent.id,) if office.parent else ()


# The filters of the list queries that pick a group of records (sandbox/gis_lists.py):
# each maps a record to the values it is found under. None of them changes after
# generation.
PEOPLE_GROUPS = {"home_committee": lambda p: _lc_and_mc(p.home_lc)}
APPLICATION_GROUPS = {
    "person_id": lambda a: (a.person.id,),
    "opportunity_id": lambda a: (a.opportunity.id,),
    "person_home_lc": lambda a: (a.person.home_lc.id,),
    "person_home_mc": lambda a: _mc(a.person.home_lc),
    "opportunity_home_lc": lambda a: (a.opportunity.home_lc.id,),
    "opportunity_home_mc": lambda a: _mc(a.opportunity.home_lc),
}


class World:
    """People and applications of LC 1340 and of those who apply to its opportunities."""

    def __init__(self, seed: int, people: int, applications: int, now: datetime) -> None:
        self.seed = seed
        self.now = int(now.timestamp())
        self.home, self.other_lcs = _offices()
        with building():
            self.people, self.opportunities, self.applications = \
                _Generator(self, Draws(seed)).generate(people, applications)
            self.people_by_id = {p.id: p for p in self.people}
            self.applications_by_id = {a.id: a for a in self.applications}
        self.people_index = RecordIndex(self.people, PEOPLE_GROUPS)
        self.application_index = RecordIndex(self.applications, APPLICATION_GROUPS)
        self.advances = 0
        # Records added by hand (sandbox/worlds/added.py), by the id they are served
        # with: the last one added under an id is the one a single-record query finds.
        self.added_people: dict[str, AddedPerson] = {}
        self.added_applications: dict[str, AddedApplication] = {}
        self.added = 0

    def add(self, people: list[dict[str, Any]], applications: list[dict[str, Any]]
            ) -> tuple[list[AddedPerson], list[AddedApplication]]:
        """Add hand-built records (JSON, served as given): into the world's lists, the
        indexes and the single-record lookups. A record whose id exists already (added
        or generated) is a second record with that id: lists hold both, a
        single-record query finds the one added last. ValueError: nothing added."""
        start = self.added
        new_people = [AddedPerson(p, start + i) for i, p in enumerate(people)]
        start += len(new_people)
        new_apps = [AddedApplication(a, start + i) for i, a in enumerate(applications)]
        self.added = start + len(new_apps)
        self.people_index.add(new_people)
        self.application_index.add(new_apps)
        self.added_people.update((p.given_id, p) for p in new_people)
        self.added_applications.update((a.given_id, a) for a in new_apps)
        return new_people, new_apps

    def find_person(self, person_id: str) -> Any:
        """`person(id)`: a person added under this id, else the generated one."""
        found = self.added_people.get(person_id)
        return found if found is not None else self.people_by_id.get(_int(person_id))

    def find_application(self, application_id: str) -> Any:
        found = self.added_applications.get(application_id)
        return found if found is not None else \
            self.applications_by_id.get(_int(application_id))

    def edit_person(self, person_id: str, changes: dict[str, Any]) -> Person:
        """`Person.edit`, stamped now like `advance`'s edits; KeyError: no such id."""
        person = self.people_by_id.get(_int(person_id))
        if person is None:
            raise KeyError(person_id)
        person.edit(changes, max(int(time.time()), self.now + 1))
        self.people_index.changed([person])
        return person

    def advance(self, share: float, people_share: float, seed: int | None) -> dict[str, Any]:
        """Move a share of applications (mostly forward) and edit a share of people,
        stamped with the current time (never before the world's `now`)."""
        self.advances += 1
        rng = random.Random(seed if seed is not None else self.seed * 1000 + self.advances)
        stamp = max(int(time.time()), self.now + 1)
        generated = [a for a in self.applications if not isinstance(a, AddedRecord)]
        movable = [a for a in generated if a.status not in TERMINAL]
        count = min(len(movable), round(share * len(generated)))
        moved = rng.sample(movable, count)
        moves = []
        for app in moved:
            before = app.status
            _move(app, rng, stamp)
            moves.append({"id": str(app.id), "from": before, "to": app.status})
        people = [p for p in self.people if not isinstance(p, AddedRecord)]  # as added
        edited = rng.sample(people, min(len(people), round(people_share * len(people))))
        edits = [_edit(person, rng, stamp) for person in edited]
        self.application_index.changed(moved)
        self.people_index.changed(edited)
        return {"applications_moved": [m["id"] for m in moves],
                "people_edited": [str(p.id) for p in edited], "moves": moves,
                "edits": edits}


class _Generator:
    """The draws that make a world, in the order that defines it."""

    def __init__(self, world: World, draws: Draws) -> None:
        self.world = world
        self.draws = draws
        self.now = world.now
        self.n_home = 0
        self.people_list: list[Person] = []
        self.opportunity_list: list[Opportunity] = []
        # Drawers of the fixed ranges, made once (sandbox/worlds/draws.py).
        self.first, self.last = draws.picker(FIRST), draws.picker(LAST)
        self.signed_up_ago = draws.ranged(20 * DAY, 1000 * DAY)
        self.recently = draws.ranged(60, 72 * HOUR)
        self.long_ago = draws.ranged(72 * HOUR, 700 * DAY)
        self.year, self.month, self.day = (draws.ranged(1990, 2006), draws.ranged(1, 12),
                                           draws.ranged(1, 28))
        self.person_status = draws.picker(PERSON_STATUS)
        self.nps = draws.ranged(0, 10)
        self.active_ago = draws.ranged(0, 30 * DAY)
        self.step_gap = draws.ranged(HOUR, 40 * DAY)
        self.origin = draws.ranged(1, 3)

    def generate(self, people: int, applications: int
                 ) -> tuple[list[Person], list[Opportunity], list[Application]]:
        self._people(people)
        self._opportunities(applications)
        return self.people_list, self.opportunity_list, self._applications(applications)

    def _people(self, count: int) -> None:
        world, draws = self.world, self.draws
        self.n_home = max(1, round(count * 0.85)) if count else 0
        for i in range(count):
            lc = world.home if i < self.n_home else draws.pick(world.other_lcs)
            self.people_list.append(self._person(3_000_000 + i * 7, lc, i))

    def _person(self, pid: int, lc: Office, i: int) -> Person:
        draws, now = self.draws, self.now
        first, last = self.first(), self.last()
        created = now - self.signed_up_ago()
        recent = draws.random() < 0.05
        updated = now - self.recently() if recent else \
            draws.between(created, max(created, now - 72 * HOUR))
        year = self.year()
        dob = f"{year}-{self.month():02d}-{self.day():02d}"
        if i % 89 == 7:
            dob = draws.pick(BAD_DOBS)
        chance = draws.random
        return Person(
            id=pid, first_name=first, last_name=last, has_email=i % 97 != 13, dob=dob,
            interviewed=chance() < 0.4, has_photo=chance() < 0.7,
            status=self.person_status(), has_cv=chance() < 0.5,
            nps_score=self.nps() if chance() < 0.3 else None,
            can_apply=chance() < 0.9, home_lc=lc, created_ts=created, updated_ts=updated,
            last_active_ts=max(updated, now - self.active_ago()))

    def _opportunities(self, applications: int) -> None:
        world, draws = self.world, self.draws
        for i in range(max(10, applications // 8)):
            # A third of the opportunities are hosted by the home LC (incoming applications).
            lc = world.home if i % 3 == 0 else draws.pick(world.other_lcs)
            programme = PROGRAMMES[draws.weighted(PROGRAMME_WEIGHTS)]
            self.opportunity_list.append(Opportunity(
                900_000 + i * 3, f"{programme.short_name_display} project in "
                f"{draws.pick(CITIES)} #{i}", programme, lc))

    def _applications(self, count: int) -> list[Application]:
        draws, people = self.draws, self.people_list
        if not people or not count:
            return []
        home_people = people[:self.n_home] or people
        visitors = people[self.n_home:]
        home = self.world.home
        home_opps = [o for o in self.opportunity_list if o.home_lc is home]
        away_opps = [o for o in self.opportunity_list if o.home_lc is not home]
        apps = []
        for i in range(count):
            # Every visitor applies at least once to a home-LC opportunity; then 30% incoming.
            if visitors and (i < len(visitors) or draws.random() < 0.3):
                person = visitors[i] if i < len(visitors) else draws.pick(visitors)
                opp = draws.pick(home_opps)
            else:
                person, opp = draws.pick(home_people), draws.pick(away_opps)
            apps.append(self._application(8_000_000 + i * 11, person, opp, i))
        for app in apps:  # nobody applies before signing up
            if app.created_ts < app.person.created_ts:
                app.person.created_ts = app.created_ts - draws.between(HOUR, 30 * DAY)
        return apps

    def _application(self, aid: int, person: Person, opp: Opportunity, i: int) -> Application:
        draws = self.draws
        final = draws.weighted(FINAL_WEIGHTS)
        if i % 211 == 17:
            final = UNKNOWN_STATUS
        trail = TRAILS.get(final) or TRAILS_FROM[final][self.origin()]
        # The last transition: ~5% within the last 72 h, the rest up to two years back;
        # each earlier one an hour to 40 days before the next.
        ts = self.now - (self.recently() if draws.random() < 0.05 else self.long_ago())
        stamps = [ts]
        gap = self.step_gap
        for _ in range(len(trail.statuses) - 1):
            ts -= gap()
            stamps.append(ts)
        stamps.reverse()
        if i % 307 == 41:
            opp = Opportunity(opp.id, opp.title, UNKNOWN_PROGRAMME, opp.home_lc)
        return Application(aid, person, opp, trail, tuple(stamps))


def _move(app: Application, rng: random.Random, stamp: int) -> None:
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


def _edit(person: Person, rng: random.Random, stamp: int) -> dict[str, Any]:
    """One field edited; what changed (the field, as GIS names it, from and to), so a
    benchmark can tell when the edit reached customer.io."""
    what = rng.randrange(4)
    name = ("nps_score", "interviewed", "last_name", "status")[what]
    before = getattr(person, name)
    if what == 0:
        person.nps_score = rng.randint(0, 10)
    elif what == 1:
        person.interviewed = not person.interviewed
    elif what == 2:
        person.last_name = rng.choice(LAST)
    else:
        person.status = rng.choice(PERSON_STATUS)
    person.updated_ts = person.last_active_ts = max(person.updated_ts, stamp)
    return {"id": str(person.id), "home_lc": str(person.home_lc.id), "field": name,
            "from": before, "to": getattr(person, name)}
