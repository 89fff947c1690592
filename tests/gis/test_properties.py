"""Property-based tests: GIS people and applications, valid and malformed (issue 12, item 3).

Valid records from hypothesis strategies, with one or several malformations of
tests/support/malformed.py (the catalogue, with what the fleet does with each; shared
with tests/segment/test_properties.py). Invariants, over many examples at the level of
the pure functions (`map_person`, `events`, `plan`) and over a fixed sample end to end
through the shipped worker and the sandbox:

- nothing raises but `Malformed`, and only for a record the rules call unusable (a
  person without a usable id; an application without id, known programme, status,
  person, or any valid date for an event it must send): it is named in `errors`;
- every request customer.io gets validates against the vendor's schema (the sandbox's
  own checkers: identify body and attribute limits, event body and limits, batch items);
- every valid record, and every valid field of a partly bad one, arrives with its value;
- every dropped field is named exactly once in the warnings (kind, id, field, reason);
- a status outside the ladder is unmapped: counted, no events, not a failure.

GIS malformations and what the fleet does with each (the Segment ones are in
tests/segment/test_properties.py; "pure only": the GIS schema cannot carry them, so the
sandbox cannot serve them):

{catalogue}
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.customerio import (
    IDENTIFY,
    MAX_ID_BYTES,
    TRACK,
    attribute_problems,
    batch_item_validator,
    body_validator,
    event_problems,
    identify_attribute_validator,
)
from tests.support import malformed as m
from worker.clients.customerio import event_item, identify_item
from worker.gis_sync import mapping, planning
from worker.gis_sync.ladder import Malformed, events, load_ladder
from worker.settings import Settings

GIS_KINDS = (m.PERSON, m.APPLICATION)
__doc__ = __doc__.format(catalogue=m.describe(GIS_KINDS))

IDENTIFY_BODY = body_validator(*IDENTIFY)
TRACK_BODY = body_validator(*TRACK)
ATTRIBUTE_VALUE = identify_attribute_validator()
BATCH_ITEM = batch_item_validator()
LADDER = load_ladder()
# Deterministic (derandomize: the same examples on every run and machine), no deadline
# (a busy 2-core machine), too_slow suppressed: records of 10 kB are slow to generate
# and shrink on purpose.
EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PERSON_VARIANTS = m.of_kind(m.PERSON)
APP_VARIANTS = m.of_kind(m.APPLICATION)


def chosen(variants: list[tuple[str, m.Variant]]) -> st.SearchStrategy:
    """None, one or several malformations (those that touch the same field: the first)."""
    return st.lists(st.sampled_from(variants), max_size=4)


# --- what customer.io would accept: the sandbox's own checkers ------------------------------
def assert_identify_valid(person_id: str, attributes: dict[str, Any]) -> None:
    assert 0 < len(person_id.encode()) <= MAX_ID_BYTES, person_id
    assert quote(person_id, safe="")  # the path part: the id URL-encoded whole
    assert IDENTIFY_BODY.is_valid(attributes), attributes
    assert attribute_problems(attributes) is None, attribute_problems(attributes)
    item = identify_item(person_id, attributes)
    assert BATCH_ITEM.is_valid(item), item
    assert all(ATTRIBUTE_VALUE.is_valid(v) for v in attributes.values())


def assert_event_valid(person_id: str, event: dict[str, Any]) -> None:
    body = {k: event[k] for k in ("name", "id", "timestamp", "data")}
    assert TRACK_BODY.is_valid(body), body
    assert event_problems(body, "data") is None, event_problems(body, "data")
    item = event_item(person_id, event)
    assert BATCH_ITEM.is_valid(item), item
    assert event_problems(item, "attributes") is None


# --- expectations from the catalogue ----------------------------------------------------------
def expected_person(valid: dict[str, Any], effects: list[tuple[str, m.Effect]]
                    ) -> tuple[str | None, dict[str, Any], set[str], list[str]]:
    """(id, attributes of the first identify, GIS fields named in warnings, rejection
    reasons) of a valid person with these effects."""
    pid: str | None = str(valid["id"])
    attributes = m.expected_attributes(valid)
    warned: set[str] = set()
    reasons = []
    for _, effect in effects:
        if effect.outcome == m.REJECTED:
            reasons.append(effect.reason)
        for name in effect.fields:
            attributes.pop(name, None)
        values = dict(effect.values)
        if "id" in values:
            pid = str(values.pop("id"))
        attributes.update(values)
        warned |= {f for kind, f in effect.warn if kind == m.PERSON}
    return (None if reasons else pid), attributes, warned, reasons


@EXAMPLES
@given(valid=m.people(), malformations=chosen(PERSON_VARIANTS))
def test_map_person_keeps_every_valid_field_and_names_each_dropped_one_once(
        valid, malformations):
    record, effects = m.combine(valid, malformations)
    pid, attributes, warned, reasons = expected_person(valid, effects)
    if reasons:
        with pytest.raises(Malformed) as refused:
            mapping.map_person(record)
        assert any(r in str(refused.value) for r in reasons), (str(refused.value), reasons)
        return
    mapped = mapping.map_person(record)
    assert mapped.id == pid
    assert {**mapped.attributes, **mapped.first} == attributes
    assert {f for f, _ in mapped.warnings} == warned
    assert len(mapped.warnings) == len(warned)  # each dropped field named once
    assert_identify_valid(mapped.id, {**mapped.attributes, **mapped.first})


def expected_application(valid: dict[str, Any], effects: list[tuple[str, m.Effect]]
                         ) -> tuple[str, list[tuple[str, int]], set[str], list[str], bool]:
    """(id, events (name, timestamp), date fields named, rejection reasons, unmapped)."""
    aid = str(valid["id"])
    bad, reasons, unmapped = set(), [], False
    for _, effect in effects:
        if effect.outcome == m.REJECTED:
            reasons.append(effect.reason)
        unmapped |= effect.outcome == m.UNMAPPED
        bad |= {f for kind, f in effect.warn if kind == m.APPLICATION}
        aid = str(effect.values.get("id", aid))
    if unmapped:  # no event to send: no date needed, none named
        return aid, [], set(), [r for r in reasons if r != "no valid date"], True
    return aid, *m.expected_events(valid, frozenset(bad)), reasons, unmapped


PERSON_LEVEL = ("person", "no person")  # found by plan(), not by events()


@EXAMPLES
@given(valid=m.applications(), malformations=chosen(APP_VARIANTS))
def test_events_send_every_step_of_a_partly_bad_application_or_name_why_not(
        valid, malformations):
    record, effects = m.combine(valid, malformations)
    aid, expected, warned, reasons, unmapped = expected_application(valid, effects)
    reasons = [r for r in reasons if r not in PERSON_LEVEL]
    if reasons:
        with pytest.raises(Malformed) as refused:
            events(None, record, LADDER)
        assert any(r in str(refused.value) for r in reasons), (str(refused.value), reasons)
        return
    outcome = events(None, record, LADDER)
    if unmapped:
        assert (outcome.kind, outcome.events, outcome.warnings) == ("unmapped", [], [])
        return
    assert [(e.name, e.timestamp) for e in outcome.events] == expected
    assert all(e.data["application_id"] == aid for e in outcome.events)
    assert {f for f, _ in outcome.warnings} == warned
    assert len(outcome.warnings) == len(warned)
    for event in outcome.events:
        assert_event_valid("3000007", event.as_dict())


# --- plan(): a batch of people and applications, duplicates included (Redis: empty state) -------
@st.composite
def batches(draw: Any) -> dict[str, Any]:
    """People (some listed twice, a later copy differently malformed) and applications
    whose person is one of them or embedded only (a person of another LC)."""
    people, expected_people = [], []
    for n in range(draw(st.integers(1, 4))):
        valid = draw(m.people(pid=1000 + n))  # ids unique but where listed twice
        for _copy in range(draw(st.sampled_from([1, 1, 2]))):  # the same id on two pages
            record, effects = m.combine(copy.deepcopy(valid), draw(chosen(PERSON_VARIANTS)))
            people.append(record)
            expected_people.append((valid, record, effects))
    applications, expected_apps = [], []
    for n in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            _, person, _ = draw(st.sampled_from(expected_people))
            valid = draw(m.applications(person=copy.deepcopy(person), aid=5000 + n))
            variants = [v for v in APP_VARIANTS if "person" not in v[1].touches]
        else:  # a person of another LC, read through the application only
            valid = draw(m.applications(person=draw(m.people(pid=9000 + n)), aid=5000 + n))
            variants = APP_VARIANTS
        record, effects = m.combine(valid, draw(chosen(variants)))
        applications.append(record)
        expected_apps.append((valid, record, effects))
    return {"people": people, "expected_people": expected_people,
            "applications": applications, "expected_apps": expected_apps}


def _person_reason(person: Any) -> str | None:
    try:
        mapping.map_person(person)
    except Malformed as exc:
        return str(exc)
    return None


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(batch=batches())
def test_plan_sends_valid_requests_only_and_names_every_failure_and_drop_once(
        redis_client, batch):
    job = planning.Job(Settings(), mode=planning.BACKFILL)  # no step known, no window: all history
    work = planning.plan(batch["people"], batch["applications"], job)

    failures = {(f["kind"], f["id"]) for f in work.failures}
    warnings = {(w["kind"], w["id"], w["field"]) for w in work.warnings}
    expected_failures, expected_warnings = set(), set()
    rejected_people: dict[str, str] = {}
    for valid, record, effects in batch["expected_people"]:
        pid, attributes, warned, reasons = expected_person(valid, effects)
        if reasons:
            expected_failures.add(("person", str(record.get("id"))))
            rejected_people[str(record.get("id"))] = reasons[0]
            continue
        expected_warnings |= {("person", pid, f) for f in warned}
        if record is [r for _, r, _ in batch["expected_people"] if str(r.get("id")) ==
                      str(record.get("id"))][-1]:  # the last copy read is what is sent
            assert work.identifies[pid] == attributes
    for valid, record, effects in batch["expected_apps"]:
        aid, expected, warned, reasons, unmapped = expected_application(valid, effects)
        person = record.get("person")
        person_id = str(person.get("id")) if isinstance(person, dict) else None
        own = [r for r in reasons if r not in PERSON_LEVEL]
        # Finding, left to sync.py's owner: an unmapped application whose person is
        # unusable is rejected for its person, though it sends nothing (and so retried).
        if not own and person_id not in (None, ""):
            why = rejected_people.get(person_id) or _person_reason(person)
            if why:  # its person cannot be identified
                reasons = [*reasons, "person"]
        if reasons:
            expected_failures.add(("application", str(record.get("id"))))
            continue
        expected_warnings |= {("application", aid, f) for f in warned}
        if not unmapped:
            assert [(e["name"], e["timestamp"]) for e in work.events.get(aid, [])] == \
                expected, (aid, [(n, e.outcome) for n, e in effects], record["status"],
                           work.failures, list(work.events))
        if person_id not in {str(p.get("id")) for p in batch["people"]}:
            # a person read through its application only: its fields are checked too
            expected_warnings |= {("person", person_id, f) for f, _ in
                                  mapping.map_person(person).warnings}
    assert failures == expected_failures  # the run keeps them as a set: each named once
    assert warnings == expected_warnings, [
        (r["id"], r.get("status"), [n for n, _ in e]) for _, r, e in batch["expected_apps"]]
    for pid, attributes in work.identifies.items():
        assert_identify_valid(pid, attributes)
    for aid, sent in work.events.items():
        owner = work.owner[aid]
        assert owner in work.identifies, (aid, owner)  # identified before its events
        for event in sent:
            assert_event_valid(owner, event)


# --- end to end: a fixed sample through the shipped worker and the sandbox ----------------------
LC = 1340
ELSEWHERE = {"id": "2001", "name": "Lisboa", "parent": {"id": "2000", "name": "Portugal"}}


def sample_person(number: int, minutes: float, home: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    return {"id": str(number), "email": f"p{number}@example.org", "first_name": "Ana",
            "last_name": "Silva", "full_name": "Ana Silva", "dob": "1998-04-03",
            "interviewed": True, "profile_photo": f"https://cdn.test/{number}.jpg",
            "status": "applied", "cv_url": None, "nps_score": 8,
            "permissions": {"can_apply": True}, "home_lc": copy.deepcopy(home or m.HOME_LC),
            "created_at": m.iso(m.ago(days=40)), "updated_at": m.iso(m.ago(minutes=minutes))}


def sample_application(number: int, person: dict[str, Any], status: str, minutes: float
                       ) -> dict[str, Any]:
    """An application whose transitions all fall in the cold-start window (70 h back)."""
    step = m.LADDER[status]
    top = step if step > 0 else 2
    times = {s: m.ago(hours=70 - 6 * s) for s in range(1, top + 1)}
    record: dict[str, Any] = {"id": str(number), "status": status, "current_status": status,
                              "created_at": m.iso(times[1])}
    for s, name in ((2, "date_matched"), (3, "date_approved"), (4, "date_realized")):
        record[name] = m.iso(times[s]) if s in times else None
    record["experience_start_date"] = record["date_realized"]
    record["experience_end_date"] = m.iso(times[5]) if 5 in times else None
    record["updated_at"] = m.iso(m.ago(minutes=minutes))
    record["person"] = person
    record["opportunity"] = {"id": "900003", "programme": {
        "id": "7", "short_name": "GV", "short_name_display": "GV"}, "home_lc": {"id": "2001"}}
    return record


def e2e_sample() -> tuple[list[tuple], list[tuple]]:
    """(valid, record, effects) of the people and applications added to the world: every
    malformation the sandbox can serve, alone, then random pairs (fixed seed)."""
    import random

    rng = random.Random(12)
    people_variants = m.of_kind(m.PERSON, e2e=True)
    app_variants = m.of_kind(m.APPLICATION, e2e=True)
    statuses = sorted(m.LADDER)
    people, apps = [], []
    combos = [[v] for v in people_variants] + [rng.sample(people_variants, 2)
                                               for _ in range(6)]
    for i, variants in enumerate(combos):
        valid = sample_person(7_000_000 + i, minutes=30 + 3 * i)
        record, effects = m.combine(valid, variants)
        people.append((valid, {**record, "home_committee": [LC, 1500]}, effects))
    combos = [[v] for v in app_variants] + [rng.sample(app_variants, 2) for _ in range(6)]
    for i, variants in enumerate(combos):
        incoming = i % 2 == 0  # a person of another LC, read through the application
        person = sample_person(8_000_000 + i, minutes=600, home=ELSEWHERE if incoming else None)
        valid = sample_application(7_500_000 + i, person, statuses[i % len(statuses)],
                                   minutes=20 + 2 * i)
        record, effects = m.combine(valid, variants)
        lcs = {"person_home_lc": 2001, "opportunity_home_lc": LC} if incoming else \
            {"person_home_lc": LC, "opportunity_home_lc": 2001}
        apps.append((valid, {**record, **lcs}, effects))
    return people, apps


def test_malformed_records_end_to_end_nothing_fails_everything_valid_arrives(
        fleet, gis_world, monkeypatch):
    from tests.support.gis import assert_clean, received, scan
    from tests.support.logs import assert_every_line_parses
    from worker.settings import get_settings

    monkeypatch.setenv("GIS_PAGE_SIZE", "20")  # many pages: records on two of them
    get_settings.cache_clear()
    admin = gis_world.admin
    people, apps = e2e_sample()
    # The same id on two pages: an older copy with a bad date of birth, a newer valid one;
    # an application read at "applied", then again at "approved".
    twin_old = {**sample_person(7_100_000, minutes=60 * 50), "dob": "1999-02-30"}
    twin_new = sample_person(7_100_000, minutes=1)
    app_person = sample_person(7_100_001, minutes=700)
    app_old = {**sample_application(7_200_000, app_person, "applied", minutes=60 * 50),
               "person_home_lc": LC}
    app_new = {**sample_application(7_200_000, app_person, "approved", minutes=2),
               "person_home_lc": LC, "created_at": app_old["created_at"]}
    admin.add_people([r for _, r, _ in people] + [twin_old, twin_new, app_person])
    admin.add_applications([r for _, r, _ in apps] + [app_old, app_new])

    run = scan(fleet, timeout=120)
    pages = [r for r in admin.requests(api="gis") if "allPeople" in str(r["body"])]
    assert len(pages) > 5  # the walk read many pages: the twins are pages apart

    profiles = admin.customerio_profiles()["profiles"]
    events = received(admin)
    errors = {(e["kind"], e["id"]) for e in run.get("errors", [])}
    warnings = [(w["kind"], w["id"], w["field"]) for w in run.get("warnings", [])]
    expected_errors, expected_warnings = set(), set()
    for valid, record, effects in people:
        pid, attributes, warned, reasons = expected_person(valid, effects)
        if reasons:
            expected_errors.add(("person", str(record["id"])))
            continue
        assert profiles.get(pid) == attributes, ([n for n, _ in effects], pid)
        expected_warnings |= {("person", pid, f) for f in warned}
    by_app: dict[str, list[tuple[str, int]]] = {}
    for evs in events.values():
        for aid, name, ts in evs:
            by_app.setdefault(aid, []).append((name, ts))
    unmapped = 0
    for valid, record, effects in apps:
        aid, expected, warned, reasons, is_unmapped = expected_application(valid, effects)
        person = record.get("person")
        why = _person_reason(person) if isinstance(person, dict) else None
        if reasons or why:
            expected_errors.add(("application", record["id"]))
            assert aid not in by_app
            continue
        pid = str(person["id"])
        unmapped += is_unmapped
        assert by_app.get(aid, []) == expected, ([n for n, _ in effects], aid)
        assert all(a == aid for a, _, _ in events.get(pid, []))
        expected_warnings |= {("application", aid, f) for f in warned}
        embedded = mapping.map_person(person)
        assert profiles[pid] == {**embedded.attributes, **embedded.first}
        expected_warnings |= {("person", pid, f) for f, _ in embedded.warnings}
    # The twins: each copy read and synced, the newer's values kept, the bad one named.
    assert profiles["7100000"]["birthday"] == "1998-04-03"
    expected_warnings.add(("person", "7100000", "dob"))
    assert sorted(by_app["7200000"]) == sorted(
        (f"GV{kind}", m.unix(app_new[field])) for kind, field in
        (("applied", "created_at"), ("accepted", "date_matched"),
         ("approved", "date_approved")))
    assert profiles["7100001"] == m.expected_attributes(app_person)

    ours = {str(r.get("id")) for _, r, _ in people + apps} | {"7100000", "7100001",
                                                              "7200000"}
    ours |= {str(r["person"]["id"]) for _, r, _ in apps if isinstance(r.get("person"), dict)}
    assert {e for e in errors if e[1] in ours} == expected_errors
    mine = [w for w in warnings if w[1] in ours]
    assert set(mine) == expected_warnings
    assert len(mine) == len(set(mine))  # each dropped field named once
    assert run.get("moves_unmapped", 0) >= unmapped > 0
    assert run["status"] != "halted"

    # Nothing failed as a task, nothing was retried, customer.io rejected nothing.
    records = assert_every_line_parses(fleet.log(), "logfmt")
    assert [r for r in records if r["level"] in ("ERROR", "CRITICAL")] == []
    assert [r for r in records if " retry: " in r["msg"]] == []
    stats = assert_clean(admin)
    assert stats["rejected"]["customerio"]["size"] == 0


def test_finding_an_unmapped_application_of_an_unusable_person_is_rejected(redis_client):
    """Pinned, for sync.py's owner: the rules say an unmapped application is no failure
    (it sends nothing), yet plan() rejects one whose person is unusable (so the scan
    retries it). When that changes, this test says so."""
    person = {**sample_person(1, minutes=5), "id": "   "}
    app = {**sample_application(2, person, "applied", minutes=5), "status": "on_hold_legacy"}
    work = planning.plan([], [app], planning.Job(Settings(), mode=planning.BACKFILL))
    assert work.failures == [{"kind": "application", "id": "2",
                              "reason": "person    : no id"}]
    assert work.counts.get("moves_unmapped", 0) == 0


# --- emails: what the fleet keeps, customer.io takes ---------------------------------------
MAYBE_EMAILS = st.one_of(
    st.emails(),
    st.builds(lambda local, domain: f"{local}@{domain}",
              st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=16)),
    st.sampled_from(["zoë@example.org", "ann\x07@example.org", "a..b@example.org",
                     "a@-x.org", "a@b_c.org", ".a@example.org", "a.@example.org"]))


@EXAMPLES
@given(MAYBE_EMAILS)
def test_an_email_the_fleet_keeps_is_one_customer_io_takes(raw: str) -> None:
    # Kept or dropped with a warning, never sent to be refused: a refused email would
    # cost the person's whole identify.
    value, problem = mapping.email(raw)
    if value is not None:
        assert problem is None and IDENTIFY_BODY.is_valid({"email": value}), value
    else:
        assert problem or not raw.strip()
