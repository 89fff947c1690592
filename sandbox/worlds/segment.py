"""Deterministic Segment profiles: the data the Segment Profile API simulator serves.

`generate_profiles(seed, count)` always yields the same profiles for the same arguments,
and a smaller count yields a prefix of a larger one (one sequential stream of draws,
sandbox/worlds/draws.py). The data is deliberately messy, the way real Segment spaces
are: invalid emails and birthdates, unicode names, camelCase trait names, nested and flat
addresses, over-long values, some profiles with many traits (several cursor pages at the
default limit of 10), some with many external ids (the `user_id` on a later page) and
about 5 % with no `user_id` at all.

A profile keeps its traits and external ids marshalled (about 650 bytes, a fifth of the
same data as Python dicts and strings; `marshal` encodes ~7x and decodes ~3x faster
than `json`) and loads them when a request reads them: nothing outlives the process.
"""

from __future__ import annotations

import marshal
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.worlds.draws import Draws, building

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
# Identity source ids (Segment source ids are 10-22 base62 chars).
SOURCE_IDS = ("Xk2PvQ8rTq", "b7VYz0mC4n", "S9dLwE1aHf")
EPOCH = datetime(2021, 3, 1, tzinfo=UTC)

FIRST_NAMES = (
    "Ann", "Zoë", "Łukasz", "José", "Chloé", "Søren", "Ngozi", "Priya", "Mateo", "Aiko",
    "Björn", "Dũng", "Fatima", "Oğuz", "Renée", "Siobhán", "Tomás", "Yusuf", "Ana", "Kai",
    "Émile", "Zuzana", "Nikolaï", "Mei", "Jürgen",
)
LAST_NAMES = (
    "Smith", "Müller", "Nowak", "García", "Østergaard", "Okafor", "Sharma", "López", "Tanaka",
    "Andersson", "Nguyễn", "Haddad", "Yılmaz", "Dubois", "Ó Briain", "Ferreira", "Kaya",
    "Silva", "Kowalczyk", "O'Neil", "東京", "Иванов", "Παπαδόπουλος", "Lee", "Schäfer",
)
CITIES = (
    ("Lisbon", "Lisboa", "1100-148", "PT"), ("Kraków", "Małopolskie", "30-001", "PL"),
    ("São Paulo", "SP", "01000-000", "BR"), ("Zürich", "ZH", "8001", "CH"),
    ("Lagos", "Lagos", "100001", "NG"), ("Austin", "TX", "73301", "US"),
    ("Tokyo", "東京都", "100-0001", "JP"), ("Köln", "NRW", "50667", "DE"),
)
STREETS = ("Rua Augusta", "Main St.", "ul. Długa")
DOMAINS = ("example.com", "mail.test", "Example.ORG")
INVALID_EMAILS = ("not-an-email", "ann@", "@example.com", "two@@example.com", "spaces in@x.com")
INVALID_BIRTHDATES = ("1990-13-45", "31/12/1990", "1990-02-30", "yesterday", "19900101x")
PLANS = ("free", "pro", "business", "enterprise")
NOTES = ("VIP", "Met at the fair", "Prefers email")
EXTRA_TRAIT_VALUES: tuple[Any, ...] = (True, False, 0, 42, 3.5, "yes", "blue", None, ["a", "b"])
ExternalId = list[str]  # [type, id, source_id, created_at], as stored

# Random bytes mapped onto base62 in one C call: ids are the hot spot of a big world.
_BASE62_TABLE = bytes(ord(BASE62[b % 62]) for b in range(256))
_DAYS = [(EPOCH + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(5 * 365)]




class Profile:
    """One profile; traits and external ids stored marshalled, loaded when read."""

    __slots__ = ("segment_id", "_traits", "_ids")

    def __init__(self, segment_id: str, traits: dict[str, Any],
                 external_ids: list[ExternalId]) -> None:
        self.segment_id = segment_id
        self._traits = marshal.dumps(traits)
        self._ids = marshal.dumps(external_ids)

    @property
    def traits(self) -> dict[str, Any]:
        return marshal.loads(self._traits)

    @property
    def external_ids(self) -> list[dict[str, str]]:
        return [{"id": value, "type": kind, "source_id": source, "collection": "users",
                 "created_at": created, "encoding": "none"}
                for kind, value, source, created in marshal.loads(self._ids)]

    def id_pairs(self) -> list[tuple[str, str]]:
        """(type, id) of each external id, in order."""
        return [(kind, value) for kind, value, _, _ in marshal.loads(self._ids)]

    def to_json(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "traits": self.traits,
                "external_ids": self.external_ids}


class AddedProfile(Profile):
    """A profile added by hand (`POST /admin/world/profiles`): traits any JSON object,
    external ids rows served exactly as given (any JSON: a test's malformed rows too)."""

    __slots__ = ()

    @property
    def external_ids(self) -> list[Any]:
        return marshal.loads(self._ids)

    def id_pairs(self) -> list[tuple[str, str]]:
        return [(row["type"], row["id"]) for row in marshal.loads(self._ids)
                if isinstance(row, dict) and isinstance(row.get("type"), str)
                and isinstance(row.get("id"), str)]


def added_profile(raw: Any) -> AddedProfile:
    """{"segment_id", "traits", "external_ids"} as a profile; ValueError naming what is
    wrong (the API could not serve it: a profile id is a non-empty string, traits an
    object of JSON values, external ids a list)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a profile is an object, got {type(raw).__name__}")
    segment_id, traits = raw.get("segment_id"), raw.get("traits", {})
    rows = raw.get("external_ids", [])
    if not isinstance(segment_id, str) or not segment_id:
        raise ValueError(f"segment_id must be a non-empty string, got {segment_id!r}")
    if not isinstance(traits, dict) or not isinstance(rows, list):
        raise ValueError(f"{segment_id}: traits must be an object, external_ids a list")
    return AddedProfile(segment_id, traits, rows)


def _ascii(text: str) -> str:
    """A plausible email local part for a unicode name."""
    out = "".join(c for c in text.lower() if c in string.ascii_lowercase)
    return out or "user"


_ASCII = {name: _ascii(name) for name in FIRST_NAMES + LAST_NAMES}
_TWO_DIGITS = [f"{n:02d}" for n in range(60)]
_THREE_DIGITS = [f"{n:03d}" for n in range(1000)]


class _Generator:
    """The draws that make the profiles, in the order that defines them (drawers of
    fixed ranges made once: sandbox/worlds/draws.py)."""

    def __init__(self, seed: int) -> None:
        self.draws = draws = Draws(f"segment-profiles:{seed}")
        self.chance = draws.random
        self.bits = draws.rng.getrandbits
        self.first, self.last = draws.picker(FIRST_NAMES), draws.picker(LAST_NAMES)
        self.source = draws.picker(SOURCE_IDS)
        self.invalid_email, self.domain = draws.picker(INVALID_EMAILS), draws.picker(DOMAINS)
        self.area, self.number = draws.ranged(100, 998), draws.ranged(1000, 9998)
        self.country_code = draws.ranged(1, 98)
        self.invalid_birthdate = draws.picker(INVALID_BIRTHDATES)
        self.year, self.month = draws.ranged(1960, 2007), draws.ranged(1, 12)
        self.day = draws.ranged(1, 28)
        self.city, self.house = draws.picker(CITIES), draws.ranged(1, 399)
        self.street = draws.picker(STREETS)
        self.plan, self.score = draws.picker(PLANS), draws.ranged(0, 99)
        self.long_note, self.note = draws.ranged(95, 199), draws.picker(NOTES)
        self.trait_count, self.extra = draws.ranged(15, 40), draws.picker(EXTRA_TRAIT_VALUES)
        self.many_anonymous, self.few_anonymous = draws.ranged(10, 14), draws.ranged(0, 2)

    def base62(self, length: int) -> str:
        return self.draws.rng.randbytes(length).translate(_BASE62_TABLE).decode()

    def timestamp(self) -> str:
        bits = self.bits(64)
        two = _TWO_DIGITS
        return (f"{_DAYS[bits % len(_DAYS)]}T{two[(bits >> 12) % 24]}:{two[(bits >> 17) % 60]}"
                f":{two[(bits >> 23) % 60]}.{_THREE_DIGITS[(bits >> 29) % 1000]}Z")

    def profile(self, i: int) -> Profile:
        segment_id = "use_" + self.base62(27)
        traits = self.traits(i)
        return Profile(segment_id, traits, self.external_ids(i, traits))

    def traits(self, i: int) -> dict[str, Any]:
        chance = self.chance
        traits: dict[str, Any] = {}
        first, last = self.names(traits)
        email = self.email(first, last, i)
        if email is not None:
            traits["email"] = email
        if chance() < 0.6:
            area, number = self.area(), self.number()
            traits["phone"] = f"+{self.country_code()} {area} {number}"
        birthdate = self.birthdate()
        if birthdate is not None:
            traits["birthdate"] = birthdate
        self.address(traits)
        if chance() < 0.3:
            traits["metadata"] = {"plan": self.plan(), "score": self.score(),
                                  "beta": chance() < 0.5}
        if chance() < 0.04:  # over-long: beyond the 1000-char limits of the downstream APIs
            traits["description"] = "Long note. " * self.long_note()
        elif chance() < 0.2:
            traits["description"] = self.note()
        traits["created_at"] = self.timestamp()
        if chance() < 0.2:  # a share with 15-40 traits: the traits cursor has several pages
            for n in range(self.trait_count() - len(traits)):
                traits[f"custom_{n:02d}"] = self.extra()
        return traits

    def names(self, traits: dict[str, Any]) -> tuple[str, str]:
        first, last = self.first(), self.last()
        style = self.chance()
        if style < 0.6:
            traits["first_name"], traits["last_name"] = first, last
        elif style < 0.75:
            traits["firstName"], traits["lastName"] = first, last
        elif style < 0.95:
            traits["name"] = f"{first} {last}"
        # else: no name at all
        if 0.6 <= style < 0.65:
            traits["name"] = f"{first} {last}"  # both name and the camelCase parts
        return first, last

    def email(self, first: str, last: str, i: int) -> str | None:
        roll = self.chance()
        if roll < 0.04:
            return None
        if roll < 0.09:
            return self.invalid_email()
        tag = "+news" if roll > 0.95 else ""  # '+' must be sent as %2B in profile ids
        return f"{_ASCII[first]}.{_ASCII[last]}{i}{tag}@{self.domain()}"

    def birthdate(self) -> str | None:
        roll = self.chance()
        if roll < 0.15:
            return None
        if roll < 0.22:
            return self.invalid_birthdate()
        year, month, day = self.year(), self.month(), self.day()
        if roll < 0.27:  # full ISO-8601 timestamps are valid dates too
            return f"{year}-{month:02d}-{day:02d}T00:00:00.000Z"
        return f"{year}-{month:02d}-{day:02d}"

    def address(self, traits: dict[str, Any]) -> None:
        city, state, postal, country = self.city()
        street = f"{self.house()} {self.street()}"
        roll = self.chance()
        if roll < 0.3:
            traits["address"] = {"street": street, "city": city, "state": state,
                                 "postal_code": postal, "country": country}
        elif roll < 0.45:
            traits.update(city=city, state=state, country=country, street=street)
            traits["postalCode" if self.chance() < 0.3 else "postal_code"] = postal
        elif roll < 0.5:
            traits["address"] = {"city": city}  # partial nested address

    def external_id(self, kind: str, value: str) -> ExternalId:
        return [kind, value, self.source(), self.timestamp()]

    def external_ids(self, i: int, traits: dict[str, Any]) -> list[ExternalId]:
        chance = self.chance
        ids: list[ExternalId] = []
        anonymous = 1 + (self.many_anonymous() if chance() < 0.03 else self.few_anonymous())
        for _ in range(anonymous):  # some have so many that `user_id` is on a later page
            ids.append(self.external_id("anonymous_id", self.base62(22)))
        email = traits.get("email")
        if isinstance(email, str) and "@" in email and chance() < 0.8:
            ids.insert(self.draws.below(len(ids) + 1), self.external_id("email", email.lower()))
        if chance() >= 0.05:  # ~5 % have no user_id at all
            ids.append(self.external_id("user_id", f"u-{i}"))
        return ids


def generate_profiles(seed: int, count: int) -> list[Profile]:
    """`count` profiles for `seed`: same input, same output (and a prefix for smaller counts)."""
    generator = _Generator(seed)
    with building():
        return [generator.profile(i) for i in range(1, count + 1)]


class ProfileWorld:
    """Profiles plus the lookups the API needs: by position and by `type:value` id."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed, self.count = seed, count
        self.profiles = generate_profiles(seed, count)
        self._by_segment_id = {p.segment_id: p for p in self.profiles}
        # id type -> lowercased value -> profile, for the other id types; each is built
        # on its first lookup (the fleet reads by segment_id only).
        self._by_external_id: dict[str, dict[str, Profile]] = {}
        self.added = 0  # profiles added by hand (sandbox/worlds/added.py's GIS twin)

    def add(self, raw: list[Any]) -> list[AddedProfile]:
        """Profiles built by hand, listed after the generated ones in the order given. A
        segment_id listed already is listed again (the same id on two pages); lookups
        find the profile added last. ValueError: nothing added."""
        profiles = [added_profile(p) for p in raw]
        self.profiles.extend(profiles)
        self._by_segment_id.update((p.segment_id, p) for p in profiles)
        self._by_external_id.clear()  # rebuilt on the next lookup, the new rows included
        self.added += len(profiles)
        return profiles

    def find(self, kind: str, value: str) -> Profile | None:
        if kind == "segment_id":
            return self._by_segment_id.get(value)
        index = self._by_external_id.get(kind)
        if index is None:
            index = self._by_external_id[kind] = self._index(kind)
        return index.get(value.lower())  # lookups are case-insensitive on the value

    def _index(self, kind: str) -> dict[str, Profile]:
        index: dict[str, Profile] = {}
        for profile in self.profiles:
            for other, value in profile.id_pairs():
                if other == kind:
                    index.setdefault(value.lower(), profile)  # the first profile wins
        return index

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "count": self.count, "added": self.added,
                "profiles": [p.to_json() for p in self.profiles]}
