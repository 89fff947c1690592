"""The catalogue of malformed records the property tests feed the fleet (issue 12, item 3).

Each `Malformation` has a name, what the fleet must do with it (`does`) and one
`Variant` per kind of record it applies to (GIS `person`, GIS `application`, Segment
`profile`). A variant turns a valid record into a malformed one and says what must
happen (`Effect`): the field is dropped with a warning, the value is treated as missing
(not sent, no warning), the record is rejected (GIS: named in the run's `errors`;
Segment: `skipped`) with a reason, the application is unmapped (counted, emits nothing),
or the value is accepted as is (right-to-left text and emoji are valid text). Variants
touch disjoint fields (`touches`), so a record can carry several at once. `e2e` says
whether the sandbox can serve the malformed record (the GIS GraphQL schema types every
field: text where it has a Boolean or an object cannot be served; the Segment API serves
any JSON in traits and external ids).

The valid records come from hypothesis strategies (`people`, `applications`, `profiles`)
with `expected_attributes` / `expected_events` / `expected_customer`: what the contract
(docs/api-contracts.md) says the fleet sends for them, written here independently of
worker/. `describe()` renders the catalogue for the test modules' docstrings.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from tests.support.clock import RUN_START, ago, iso

PERSON, APPLICATION, PROFILE = "person", "application", "profile"

# What the fleet does with a malformation.
ACCEPTED = "accepted as is"
DROPPED = "field dropped with a warning"
MISSING = "treated as missing: not sent, no warning"
REJECTED = "record rejected with a reason"
UNMAPPED = "unmapped: counted, emits nothing, not a failure"
FALLBACK = "date dropped with a warning, the event takes updated_at"

Record = dict[str, Any]


@dataclass(frozen=True)
class Effect:
    outcome: str
    fields: tuple[str, ...] = ()  # output fields it takes away (customer.io / Voucherify)
    warn: tuple[tuple[str, str], ...] = ()  # (kind, field) named in the warnings
    values: dict[str, Any] = field(default_factory=dict)  # output field -> value it sets
    reason: str = ""  # words of the rejection's reason


@dataclass(frozen=True)
class Variant:
    kind: str
    touches: frozenset[str]  # the record's fields it changes (variants combine if disjoint)
    apply: Callable[[Record], tuple[Record, Effect]]
    e2e: bool = True


@dataclass(frozen=True)
class Malformation:
    name: str
    does: str
    variants: tuple[Variant, ...]

    def variant(self, kind: str) -> Variant | None:
        return next((v for v in self.variants if v.kind == kind), None)


def _set(record: Record, path: str, value: Any) -> Record:
    """A deep copy of `record` with `value` at the dotted `path`."""
    out = copy.deepcopy(record)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def _drop(record: Record, key: str) -> Record:
    out = copy.deepcopy(record)
    out.pop(key, None)
    return out


def V(kind: str, touches: str, apply: Callable[[Record], tuple[Record, Effect]],
      e2e: bool = True) -> Variant:
    return Variant(kind, frozenset(touches.split()), apply, e2e)


# --- GIS people ---------------------------------------------------------------------------
# GIS field -> customer.io attribute (docs/api-contracts.md, section 4)
ATTRIBUTE = {"email": "email", "first_name": "first_name", "last_name": "last_name",
             "full_name": "full_name", "dob": "birthday", "interviewed": "interviewed",
             "profile_photo": "photo", "status": "status", "cv_url": "cv",
             "nps_score": "nps_score", "permissions.can_apply": "can_apply",
             "home_lc.name": "home_lc", "home_lc.parent.name": "home_lc_country"}
HOME_LC = {"id": "1340", "name": "Sandbox LC", "parent": {"id": "1500", "name": "Sandboxia"}}

TEN_KB = "ü" * 5_000  # 10,000 bytes of UTF-8
CONTROL = "An\x00n\x07\x1b[0m\x7f"
RTL = "\u202bשלום עולם مرحبا\u202c"
EMOJI = "Zoe\u0308 👩\u200d👩\u200d👧 n\u0303"
ODD = "/x+y%2F z"  # appended to an id


def unix(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def expected_attributes(person: Record) -> dict[str, Any]:
    """What a valid person (as the strategies make them) becomes: customer.io attributes
    of the first identify, created_at included."""
    out: dict[str, Any] = {}
    for path, name in ATTRIBUTE.items():
        value: Any = person
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[name] = value
    out["created_at"] = unix(person["created_at"])
    return out


def _dated(moment: datetime) -> str:
    return iso(moment)


@st.composite
def people(draw: Any, pid: Any = None) -> Record:
    """A valid GIS person as the client's query reads it (dates relative to the run)."""
    letters = st.text(st.characters(categories=("Lu", "Ll", "Lo")), min_size=1, max_size=12)
    first, last = draw(letters), draw(letters)
    number = draw(st.integers(1, 10**9)) if pid is None else pid
    created = ago(seconds=draw(st.integers(80 * 86400, 1000 * 86400)))
    return {
        "id": str(number), "email": f"p{number}@example.org", "first_name": first,
        "last_name": last, "full_name": f"{first} {last}",
        "dob": draw(st.dates(date(1950, 1, 1), date(2006, 12, 31))).isoformat(),
        "interviewed": draw(st.booleans()),
        "profile_photo": draw(st.sampled_from([None, f"https://cdn.test/{number}.jpg"])),
        "status": draw(st.sampled_from(["open", "applied", "accepted", "realized"])),
        "cv_url": draw(st.sampled_from([None, f"https://cdn.test/cv/{number}.pdf"])),
        "nps_score": draw(st.one_of(st.none(), st.integers(0, 10))),
        "permissions": {"can_apply": draw(st.booleans())},
        "home_lc": copy.deepcopy(HOME_LC),
        "created_at": _dated(created),
        "updated_at": _dated(ago(seconds=draw(st.integers(60, 70 * 86400)))),
    }


def _accept(path: str, value: Any, shown: Any = None) -> Callable[[Record], tuple]:
    """Set `path` to `value`: accepted, sent as `shown` (default: the value itself)."""
    def apply(record: Record) -> tuple[Record, Effect]:
        return _set(record, path, value), Effect(ACCEPTED, values={
            ATTRIBUTE[path]: value if shown is None else shown})
    return apply


def _drop_field(path: str, value: Any, *attributes: str) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        names = attributes or (ATTRIBUTE[path],)
        return _set(record, path, value), Effect(DROPPED, names, ((PERSON, path),))
    return apply


def _missing(path: str, value: Any, *attributes: str) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        return _set(record, path, value), Effect(MISSING, attributes or (ATTRIBUTE[path],))
    return apply


def _reject(path: str, value: Any, reason: str) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        return _set(record, path, value), Effect(REJECTED, reason=reason)
    return apply


def _person_id(suffix: str) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        new = f"{record['id']}{suffix}"
        return _set(record, "id", new), Effect(ACCEPTED, values={"id": new})
    return apply


def _person_id_spaced(record: Record) -> tuple[Record, Effect]:
    new = f" {record['id']} "
    return _set(record, "id", new), Effect(ACCEPTED, values={"id": new})


def _nps_as_text(record: Record) -> tuple[Record, Effect]:
    score = record["nps_score"] if record["nps_score"] is not None else 7
    return _set(record, "nps_score", str(score)), Effect(ACCEPTED, values={"nps_score": score})


def _interviewed_as_text(record: Record) -> tuple[Record, Effect]:
    value = record["interviewed"]
    return _set(record, "interviewed", str(value).lower()), \
        Effect(ACCEPTED, values={"interviewed": value})


def _person_without_id(record: Record) -> tuple[Record, Effect]:
    return _drop(record, "id"), Effect(REJECTED, reason="id")


HOME_ONLY = ("home_lc", "home_lc_country")

# --- GIS applications -----------------------------------------------------------------------
# The ladder of docs/api-contracts.md, section 4: status -> (step, event type).
LADDER = {"open": 1, "applied": 1, "approved_ep_manager": 1, "approved_tn_manager": 1,
          "accepted": 2, "matched": 2, "approved": 3, "realized": 4, "completed": 5,
          "finished": 5, "withdrawn": -1, "rejected": -2, "declined": -2}
STEP_TYPE = {1: "applied", 2: "accepted", 3: "approved", 4: "realized", 5: "completed",
             -1: "withdrawn", -2: "rejected"}
STEP_FIELD = {1: "created_at", 2: "date_matched", 3: "date_approved", 4: "date_realized",
              5: "experience_end_date", -1: "updated_at", -2: "updated_at"}
PROGRAMMES = [("7", "GV", "GV"), ("8", "GTa", "GTa"), ("9", "GTe", "GTe"),
              ("1", "GCDP", "GV"), ("2", "GIP", "GT"), ("3", "TMP", "TMP")]
DATE_FIELDS = ("created_at", "updated_at", "date_matched", "date_approved", "date_realized",
               "experience_start_date", "experience_end_date")


@st.composite
def applications(draw: Any, person: Record | None = None, aid: int | None = None) -> Record:
    """A valid application whose dates follow its history (each step's date field the
    time it was entered), as the client's query reads it, its person embedded."""
    person = person if person is not None else draw(people())
    status = draw(st.sampled_from(sorted(LADDER)))
    step = LADDER[status]
    top = step if step > 0 else draw(st.integers(1, 3))  # where a withdrawal left from
    moment = ago(days=draw(st.integers(40, 600)))
    times: dict[int, datetime] = {}
    for s in range(1, top + 1):
        times[s] = moment
        moment += timedelta(hours=draw(st.integers(1, 24 * 20)))
    aid = draw(st.integers(1, 10**9)) if aid is None else aid
    pid, short, display = draw(st.sampled_from(PROGRAMMES))
    record: Record = {"id": str(aid), "status": status, "current_status": status,
                      "created_at": _dated(times[1])}
    for s, name in ((2, "date_matched"), (3, "date_approved"), (4, "date_realized")):
        record[name] = _dated(times[s]) if s in times else None
    record["experience_start_date"] = record["date_realized"]
    end = times.get(5) or (times[4] + timedelta(weeks=6) if 4 in times else None)
    record["experience_end_date"] = _dated(end) if end else None
    last = moment if step < 0 else times[top]
    record["updated_at"] = _dated(last)
    record["person"] = person
    record["opportunity"] = {"id": str(draw(st.integers(1, 10**6))),
                             "programme": {"id": pid, "short_name": short,
                                           "short_name_display": display},
                             "home_lc": {"id": "2001"}}
    return record


def expected_events(app: Record, bad: frozenset[str] = frozenset()
                    ) -> tuple[list[tuple[str, int]], set[str]]:
    """(name, timestamp) of the events a cold read of `app` sends (no step known, no
    window), and the date fields named in warnings. `bad`: the date fields a variant
    spoiled; an event whose own field is bad takes updated_at."""
    status = (app.get("status") or "").strip()
    step = LADDER.get(status)
    if step is None:
        return [], set()
    prefix = app["opportunity"]["programme"]["short_name"].upper()
    if step > 0:
        steps = list(range(1, step + 1))
    else:  # the steps the record has dates for, then the withdrawal or rejection
        steps = [s for s in (1, 2, 3, 4) if s == 1 or app.get(STEP_FIELD[s]) not in (None, "")]
        steps.append(step)
    events, warned = [], set()
    for s in steps:
        name = STEP_FIELD[s]
        if name in bad:
            warned.add(name)
            name = "updated_at"
        value = app.get(name)
        events.append((prefix + STEP_TYPE[s], unix(value)))
    return events, warned


def _app_status(value: Any, outcome: str = UNMAPPED) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        out = _set(_set(record, "status", value), "current_status", value)
        return out, Effect(outcome, reason="status" if outcome == REJECTED else "")
    return apply


def _programme(short: str, pid: str = "99") -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        programme = {"id": pid, "short_name": short, "short_name_display": short}
        return _set(record, "opportunity.programme", programme), \
            Effect(REJECTED, reason="programme")
    return apply


def _lowercase_programme(record: Record) -> tuple[Record, Effect]:
    short = record["opportunity"]["programme"]["short_name"]
    return _set(record, "opportunity.programme.short_name", short.lower()), Effect(ACCEPTED)


def _app_date(value: Any, which: str = "passed") -> Callable[[Record], tuple]:
    """A bad value in the date field of a step the application went through (its first
    set date field after created_at, else created_at itself)."""
    def apply(record: Record) -> tuple[Record, Effect]:
        name = "created_at"
        if which == "passed":
            name = next((f for f in ("date_approved", "date_matched")
                         if record.get(f) not in (None, "")), "created_at")
        return _set(record, name, value), Effect(DROPPED, warn=((APPLICATION, name),))
    return apply


def _no_date_at_all(record: Record) -> tuple[Record, Effect]:
    out = copy.deepcopy(record)
    for name in DATE_FIELDS:
        if out.get(name) not in (None, ""):
            out[name] = "not a date"
    return out, Effect(REJECTED, reason="no valid date")


def _app_id(value: Any | None, outcome: str, reason: str = "") -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        new = f"{record['id']}{ODD}" if value is None else value
        return _set(record, "id", new), Effect(outcome, values={"id": new}, reason=reason)
    return apply


def _person_field(path: str, value: Any) -> Callable[[Record], tuple]:
    """The embedded person malformed but usable: the application syncs, the person's
    field is named."""
    def apply(record: Record) -> tuple[Record, Effect]:
        return _set(record, f"person.{path}", value), Effect(ACCEPTED, warn=((PERSON, path),))
    return apply


def _app_null(path: str, reason: str) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        return _set(record, path, None), Effect(REJECTED, reason=reason)
    return apply


# --- Segment profiles -----------------------------------------------------------------------
ADDRESS = {"street": "Rua Augusta 1", "city": "Lisboa", "state": "Lisboa",
           "postal_code": "1100-048", "country": "PT"}
JSON_VALUES = {"t_null": None, "t_true": True, "t_false": False, "t_zero": 0, "t_neg": -7,
               "t_big": 2**53 + 1, "t_float": 3.25, "t_empty": "", "t_text": "blue",
               "t_list": [1, "a", None, [], {}], "t_empty_list": [], "t_empty_object": {},
               "t_nested": {"a": {"b": [None, {"c": None, "d": 1}]}, "e": None}}
# What Voucherify gets of them in metadata: nulls removed, the rest as sent.
JSON_VALUES_SENT = {"t_true": True, "t_false": False, "t_zero": 0, "t_neg": -7,
                    "t_big": 2**53 + 1, "t_float": 3.25, "t_empty": "", "t_text": "blue",
                    "t_list": [1, "a", [], {}], "t_empty_list": [], "t_empty_object": {},
                    "t_nested": {"a": {"b": [{"d": 1}]}}}


@st.composite
def profiles(draw: Any, number: int | None = None) -> Record:
    """A valid Segment profile: traits, external ids (newest first), a segment id."""
    n = draw(st.integers(1, 10**9)) if number is None else number
    letters = st.text(st.characters(categories=("Lu", "Ll", "Lo")), min_size=1, max_size=12)
    first, last = draw(letters), draw(letters)
    traits: Record = {"first_name": first, "last_name": last, "email": f"u{n}@example.org",
                      "phone": f"+351 91{n % 10_000_000:07d}",
                      "birthdate": draw(st.dates(date(1950, 1, 1), date(2006, 12, 31))
                                        ).isoformat(),
                      "plan": draw(st.sampled_from(["free", "pro"])),
                      "created_at": iso(ago(days=draw(st.integers(1, 900))))}
    if draw(st.booleans()):
        traits["address"] = dict(ADDRESS)
    else:
        traits.update(city="Kraków", country="PL", postal_code="30-001")
    if draw(st.booleans()):
        traits["description"] = "Met at the fair"
    rows = [{"id": f"anon-{n}", "type": "anonymous_id"},
            {"id": f"u{n}@example.org", "type": "email"},
            {"id": f"u-{n}", "type": "user_id"}]
    return {"segment_id": f"use_{n}", "traits": traits, "external_ids": rows}


def expected_customer(profile: Record) -> dict[str, Any]:
    """The Voucherify customer a valid profile (as `profiles` makes them) becomes."""
    traits = profile["traits"]
    source = next(r["id"] for r in profile["external_ids"] if r["type"] == "user_id")
    out: dict[str, Any] = {"source_id": source,
                           "name": f"{traits['first_name']} {traits['last_name']}",
                           "email": traits["email"], "phone": traits["phone"],
                           "birthdate": traits["birthdate"]}
    if "description" in traits:
        out["description"] = traits["description"]
    nested = traits.get("address") or {}
    out["address"] = {"line_1": nested["street"], "city": nested["city"],
                      "state": nested["state"], "postal_code": nested["postal_code"],
                      "country": nested["country"]} if nested else {
        "city": traits["city"], "postal_code": traits["postal_code"],
        "country": traits["country"]}
    out["metadata"] = {"plan": traits["plan"], "created_at": traits["created_at"]}
    out["system_metadata"] = {"source": "segment"}
    return out


SKIPPED = "profile skipped with a reason (never sent)"


def _trait(name: str, value: Any, outcome: str, *fields: str,
           shown: dict[str, Any] | None = None) -> Callable[[Record], tuple]:
    """Set trait `name`: `fields` are the Voucherify fields it takes away (and names in
    a warning when dropped); `shown` the fields it sets."""
    def apply(record: Record) -> tuple[Record, Effect]:
        out = _set(record, f"traits.{name}", value)
        warn = tuple((PROFILE, f) for f in fields) if outcome == DROPPED else ()
        return out, Effect(outcome, fields, warn, dict(shown or {}))
    return apply


def _user_id(value: Any, outcome: str, reason: str = "",
             shown: str | None = None) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        out = copy.deepcopy(record)
        for row in out["external_ids"]:
            if isinstance(row, dict) and row["type"] == "user_id":
                row["id"] = value
        return out, Effect(outcome, values={"source_id": shown} if shown else {},
                           reason=reason)
    return apply


def _no_user_id(record: Record) -> tuple[Record, Effect]:
    out = copy.deepcopy(record)
    out["external_ids"] = [r for r in out["external_ids"]
                           if not (isinstance(r, dict) and r["type"] == "user_id")]
    return out, Effect(SKIPPED, reason="no user_id")


def _null_row(record: Record) -> tuple[Record, Effect]:
    out = copy.deepcopy(record)
    out["external_ids"][1:1] = [None, [], "user_id"]
    return out, Effect(ACCEPTED)


def _address_text(record: Record) -> tuple[Record, Effect]:
    out = _set(record, "traits.address", "1 Main St, Springfield")
    traits = out["traits"]
    address = {"line_1": "1 Main St, Springfield"}
    address.update({k: traits[k] for k in ("city", "postal_code", "country") if k in traits})
    return out, Effect(ACCEPTED, values={"address": address})


def _address(value: Any, outcome: str) -> Callable[[Record], tuple]:
    """The nested address replaced by `value`: the top-level address traits remain."""
    def apply(record: Record) -> tuple[Record, Effect]:
        out = _set(record, "traits.address", value)
        traits = out["traits"]
        rest = {k: traits[k] for k in ("city", "postal_code", "country") if k in traits}
        warn = ((PROFILE, "address"),) if outcome == DROPPED else ()
        return out, Effect(outcome, warn=warn, values={"address": rest} if rest else {},
                           fields=() if rest else ("address",))
    return apply


def _every_json_type(record: Record) -> tuple[Record, Effect]:
    out = copy.deepcopy(record)
    out["traits"].update(copy.deepcopy(JSON_VALUES))
    return out, Effect(ACCEPTED, values={"metadata+": dict(JSON_VALUES_SENT)})


def _long_custom(record: Record) -> tuple[Record, Effect]:
    return _set(record, "traits.notes", "x" * 10_000), \
        Effect(DROPPED, warn=((PROFILE, "metadata.notes"),))


def _name_part(key: str) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        out = _set(record, f"traits.{key}", {"given": "Ann"})
        other = out["traits"]["last_name" if key == "first_name" else "first_name"]
        return out, Effect(DROPPED, warn=((PROFILE, key),), values={"name": other})
    return apply


def _name_text(value: str) -> Callable[[Record], tuple]:
    def apply(record: Record) -> tuple[Record, Effect]:
        out = _set(record, "traits.first_name", value)
        return out, Effect(ACCEPTED, values={
            "name": f"{value.strip()} {out['traits']['last_name']}"})
    return apply


# --- the catalogue ------------------------------------------------------------------------------
FUTURE = (RUN_START + timedelta(days=800)).date().isoformat()

CATALOGUE: tuple[Malformation, ...] = (
    Malformation("null where an object belongs",
                 "person: the nested values are missing, not sent, no warning; "
                 "application: no programme or no person, rejected; profile: missing",
                 (V(PERSON, "home_lc", _missing("home_lc", None, *HOME_ONLY)),
                  V(APPLICATION, "opportunity", _app_null("opportunity", "programme")),
                  V(PROFILE, "address", _address(None, MISSING)))),
    Malformation("null person of an application", "rejected: no person to send events to",
                 (V(APPLICATION, "person", _app_null("person", "no person")),)),
    Malformation("text where an object belongs", "dropped with a warning naming the field",
                 (V(PERSON, "home_lc", _drop_field("home_lc", "Sandbox LC", *HOME_ONLY),
                    e2e=False),)),
    Malformation("empty list where an object belongs",
                 "person: dropped with a warning; application: rejected (no programme); "
                 "profile: address dropped with a warning, top-level address traits kept",
                 (V(PERSON, "permissions", _drop_field("permissions", [], "can_apply"),
                    e2e=False),
                  V(APPLICATION, "opportunity", _app_null("opportunity", "programme"),
                    e2e=False),
                  V(PROFILE, "address", _address([], DROPPED)))),
    Malformation("missing nested object",
                 "person: home LC without name and parent, not sent, no warning; "
                 "application: opportunity without programme, rejected",
                 (V(PERSON, "home_lc", _missing("home_lc", {"id": "1340"}, *HOME_ONLY)),
                  V(APPLICATION, "opportunity.programme",
                    lambda r: (_set(r, "opportunity.programme", None),
                               Effect(REJECTED, reason="programme"))))),
    Malformation("number as a string", "accepted: a whole number in text is that number",
                 (V(PERSON, "nps_score", _nps_as_text),)),
    Malformation("text where a number belongs", "dropped with a warning",
                 (V(PERSON, "nps_score", _drop_field("nps_score", "nine"), e2e=False),)),
    Malformation("fractional number where a whole one belongs", "dropped with a warning",
                 (V(PERSON, "nps_score", _drop_field("nps_score", 7.5), e2e=False),)),
    Malformation("number out of range", "dropped with a warning (over 2^31)",
                 (V(PERSON, "nps_score", _drop_field("nps_score", 10**12), e2e=False),)),
    Malformation("number where text belongs",
                 "accepted as its text (GraphQL serves a number in a String field as text)",
                 (V(PERSON, "first_name", _accept("first_name", 42, "42")),
                  V(PROFILE, "phone", _trait("phone", 4915112345, ACCEPTED,
                                             shown={"phone": "4915112345"})))),
    Malformation("boolean as a string", "accepted: 'true' / 'false' are booleans",
                 (V(PERSON, "interviewed", _interviewed_as_text, e2e=False),)),
    Malformation("not a boolean", "dropped with a warning",
                 (V(PERSON, "interviewed", _drop_field("interviewed", "maybe"), e2e=False),)),
    Malformation("impossible date",
                 "dropped with a warning; an application's event takes updated_at",
                 (V(PERSON, "dob", _drop_field("dob", "1999-02-30")),
                  V(APPLICATION, "date_matched date_approved created_at",
                    _app_date("2023-02-30T10:00:00Z")),
                  V(PROFILE, "birthdate", _trait("birthdate", "1990-02-30", DROPPED,
                                                 "birthdate")))),
    Malformation("out-of-range date",
                 "dropped with a warning (before 1900 or in the future; an event before "
                 "1980 takes updated_at; a created_at in year 1)",
                 (V(PERSON, "dob", _drop_field("dob", "1850-01-01")),
                  V(APPLICATION, "created_at", _app_date("1850-01-01T00:00:00Z", "created")),
                  V(PROFILE, "birthdate", _trait("birthdate", FUTURE, DROPPED,
                                                 "birthdate")))),
    Malformation("out-of-range date-time", "dropped with a warning",
                 (V(PERSON, "created_at", lambda r: (
                     _set(r, "created_at", "0001-01-01T00:00:00Z"),
                     Effect(DROPPED, ("created_at",), ((PERSON, "created_at"),)))),)),
    Malformation("not a date", "dropped with a warning",
                 (V(PERSON, "dob", _drop_field("dob", "31/12/1998")),
                  V(PROFILE, "birthdate", _trait("birthdate", "yesterday", DROPPED,
                                                 "birthdate")))),
    Malformation("number where a date belongs",
                 "dropped with a warning; an application's event takes updated_at",
                 (V(APPLICATION, "date_matched date_approved created_at",
                    _app_date(1700000000)),
                  V(PROFILE, "birthdate", _trait("birthdate", 19900101, DROPPED,
                                                 "birthdate")))),
    Malformation("no valid date at all", "application rejected: no time for its events",
                 (V(APPLICATION, " ".join(DATE_FIELDS), _no_date_at_all, e2e=False),)),
    Malformation("10 kB string",
                 "dropped with a warning (over 1000 bytes); an application's status of "
                 "10 kB is unknown, so unmapped",
                 (V(PERSON, "last_name", _drop_field("last_name", TEN_KB)),
                  V(APPLICATION, "status current_status", _app_status("x" * 10_000)),
                  V(PROFILE, "description", _trait("description", "y" * 10_000, DROPPED,
                                                   "description")))),
    Malformation("10 kB string in a custom trait", "dropped from metadata with a warning",
                 (V(PROFILE, "notes", _long_custom),)),
    Malformation("control characters", "accepted as is (valid JSON text)",
                 (V(PERSON, "first_name", _accept("first_name", CONTROL)),
                  V(PROFILE, "first_name", _name_text(CONTROL)))),
    Malformation("right-to-left text", "accepted as is",
                 (V(PERSON, "last_name", _accept("last_name", RTL)),
                  V(PROFILE, "first_name", _name_text(RTL)))),
    Malformation("emoji and combining marks", "accepted as is",
                 (V(PERSON, "first_name", _accept("first_name", EMOJI)),
                  V(PROFILE, "first_name", _name_text(EMOJI)))),
    Malformation("whitespace only", "treated as missing: not sent, no warning",
                 (V(PERSON, "last_name", _missing("last_name", " \t ")),
                  V(PROFILE, "description", _trait("description", "   ", MISSING,
                                                   "description")))),
    Malformation("id with /, +, % and spaces",
                 "accepted: the id is used as given (URL-encoded whole)",
                 (V(PERSON, "id", _person_id(ODD)),
                  V(APPLICATION, "id", _app_id(None, ACCEPTED)),
                  V(PROFILE, "user_id", _user_id("u/1+2%3 4", ACCEPTED,
                                                 shown="u/1+2%3 4")))),
    Malformation("id with surrounding spaces",
                 "accepted: the id as given, spaces included, wherever it is read (person "
                 "records and the person an application embeds alike)",
                 (V(PERSON, "id", _person_id_spaced),)),
    Malformation("number as an id", "accepted: the id is its text",
                 (V(PERSON, "id", lambda r: (_set(r, "id", int(r["id"])),
                                             Effect(ACCEPTED, values={"id": r["id"]}))),
                  V(PROFILE, "user_id", _user_id(4242, ACCEPTED, shown="4242")))),
    Malformation("blank id", "rejected: no id",
                 (V(PERSON, "id", _reject("id", "   ", "id")),
                  V(APPLICATION, "id", _app_id("   ", REJECTED, "id")),
                  V(PROFILE, "user_id", _user_id("   ", SKIPPED, "user_id")))),
    Malformation("missing id", "rejected: no id",
                 (V(PERSON, "id", _person_without_id, e2e=False),
                  V(PROFILE, "user_id", _no_user_id))),
    Malformation("id of the wrong type", "rejected: no usable id",
                 (V(PERSON, "id", _reject("id", {"id": 1}, "id"), e2e=False),
                  V(PROFILE, "user_id", _user_id({"id": 1}, SKIPPED, "user_id")))),
    Malformation("over-long id", "rejected: over 150 bytes (GIS), 1000 characters (Segment)",
                 (V(PERSON, "id", _reject("id", "é" * 76, "longer than 150 bytes")),
                  V(PROFILE, "user_id", _user_id("u" * 1001, SKIPPED, "longer than")))),
    Malformation("malformed external id rows", "ignored: only rows with a type count",
                 (V(PROFILE, "external_ids", _null_row),)),
    Malformation("not an email address", "dropped with a warning",
                 (V(PERSON, "email", _drop_field("email", "ann@")),
                  V(PROFILE, "email", _trait("email", "ann@", DROPPED, "email")))),
    Malformation("number where an email belongs", "dropped with a warning",
                 (V(PROFILE, "email", _trait("email", 42, DROPPED, "email")),)),
    Malformation("no email", "the person is identified by id; nothing else changes",
                 (V(PERSON, "email", _missing("email", None)),)),
    Malformation("not a URL", "dropped with a warning",
                 (V(PERSON, "profile_photo", _drop_field("profile_photo", "photo.jpg")),)),
    Malformation("unknown status", "unmapped: counted, no events, not retried",
                 (V(APPLICATION, "status current_status", _app_status("on_hold_legacy")),)),
    Malformation("known status outside the ladder", "unmapped: counted, no events",
                 (V(APPLICATION, "status current_status", _app_status("approval_broken")),)),
    Malformation("status with control characters", "an unknown status: unmapped",
                 (V(APPLICATION, "status current_status", _app_status("applied\x00")),)),
    Malformation("no status", "rejected: no status",
                 (V(APPLICATION, "status current_status", _app_status(None, REJECTED)),)),
    Malformation("unknown programme", "rejected: no known programme",
                 (V(APPLICATION, "opportunity.programme", _programme("XPX")),)),
    Malformation("lower-case programme", "accepted: programmes are read upper-cased",
                 (V(APPLICATION, "opportunity.programme", _lowercase_programme),)),
    Malformation("person malformed but usable",
                 "the application syncs; the person's bad field is dropped with a warning",
                 (V(APPLICATION, "person", _person_field("dob", "0000-00-00")),)),
    Malformation("person without a usable id", "application rejected: its person has none",
                 (V(APPLICATION, "person", lambda r: (
                     _set(r, "person.id", "  "), Effect(REJECTED, reason="person"))),)),
    Malformation("an address given as a string", "accepted as address line 1",
                 (V(PROFILE, "address city postal_code country", _address_text),)),
    Malformation("name given as an object", "dropped with a warning",
                 (V(PROFILE, "name first_name last_name", _trait(
                     "name", {"first": "Ann"}, DROPPED, "name")),)),
    Malformation("first name given as an object",
                 "dropped with a warning; the name is the last name",
                 (V(PROFILE, "first_name", _name_part("first_name")),)),
    Malformation("metadata not an object", "dropped with a warning",
                 (V(PROFILE, "metadata", lambda r: (
                     _set(r, "traits.metadata", "vip"),
                     Effect(DROPPED, warn=((PROFILE, "metadata"),)))),)),
    Malformation("empty list where text belongs", "dropped with a warning",
                 (V(PROFILE, "email", _trait("email", [], DROPPED, "email")),)),
    Malformation("traits of every JSON type",
                 "custom traits go to metadata as sent, nulls (even nested) left out",
                 (V(PROFILE, " ".join(JSON_VALUES), _every_json_type),)),
)
# End to end only (they concern lists, not one record): the same id on two pages (GIS
# people and applications listed twice with different updated_at; a Segment profile id
# listed twice), a Segment profile id with `+`, `%` and spaces.
E2E_ONLY = {
    "the same id on two pages":
        "each copy is read and synced; customer.io and Voucherify merge them (upserts by "
        "id); each dropped field is named once",
    "segment id with +, % and spaces": "fetched URL-encoded, migrated like any profile",
}


def of_kind(kind: str, e2e: bool = False) -> list[tuple[str, Variant]]:
    return [(m.name, v) for m in CATALOGUE for v in m.variants
            if v.kind == kind and (v.e2e or not e2e)]


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def combine(record: Record, chosen: list[tuple[str, Variant]]
            ) -> tuple[Record, list[tuple[str, Effect]]]:
    """Apply the variants whose fields do not overlap an earlier one's, in order."""
    used: set[str] = set()
    effects = []
    for name, variant in chosen:
        if any(_overlap(a, b) for a in variant.touches for b in used):
            continue
        used |= variant.touches
        record, effect = variant.apply(record)
        effects.append((name, effect))
    return record, effects


def describe(kinds: tuple[str, ...] = (PERSON, APPLICATION, PROFILE)) -> str:
    """The catalogue as text: name, the kinds it applies to, what the fleet does."""
    lines = []
    for m in CATALOGUE:
        variants = [v for v in m.variants if v.kind in kinds]
        if variants:
            shown = ", ".join(v.kind + ("" if v.e2e else " (pure only)") for v in variants)
            lines.append(f"- {m.name} [{shown}]: {m.does}")
    lines += [f"- {name} [end to end]: {does}" for name, does in E2E_ONLY.items()]
    return "\n".join(lines)
