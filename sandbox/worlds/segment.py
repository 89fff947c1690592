"""Deterministic Segment profiles: the data the Segment Profile API simulator serves.

`generate_profiles(seed, count)` always yields the same profiles for the same arguments,
and a smaller count yields a prefix of a larger one (one sequential RNG stream). The data
is deliberately messy, the way real Segment spaces are: invalid emails and birthdates,
unicode names, camelCase trait names, nested and flat addresses, over-long values, some
profiles with many traits (several cursor pages at the default limit of 10), some with
many external ids (the `user_id` on a later page) and about 5 % with no `user_id` at all.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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
INVALID_EMAILS = ("not-an-email", "ann@", "@example.com", "two@@example.com", "spaces in@x.com")
INVALID_BIRTHDATES = ("1990-13-45", "31/12/1990", "1990-02-30", "yesterday", "19900101x")
PLANS = ("free", "pro", "business", "enterprise")
EXTRA_TRAIT_VALUES: tuple[Any, ...] = (True, False, 0, 42, 3.5, "yes", "blue", None, ["a", "b"])


@dataclass
class Profile:
    segment_id: str
    traits: dict[str, Any]
    external_ids: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "traits": self.traits,
                "external_ids": self.external_ids}


# Random bytes mapped onto base62 in one C call: ids are the hot spot of a 20k world.
_BASE62_TABLE = bytes(ord(BASE62[b % 62]) for b in range(256))
_DAYS = [(EPOCH + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(5 * 365)]


def _base62(rng: random.Random, length: int) -> str:
    return rng.randbytes(length).translate(_BASE62_TABLE).decode()


def _segment_id(rng: random.Random) -> str:
    return "use_" + _base62(rng, 27)


def _ascii(text: str) -> str:
    """A plausible email local part for a unicode name."""
    out = "".join(c for c in text.lower() if c in string.ascii_lowercase)
    return out or "user"


def _timestamp(rng: random.Random) -> str:
    bits = rng.getrandbits(64)
    day, hour, minute = _DAYS[bits % len(_DAYS)], (bits >> 12) % 24, (bits >> 17) % 60
    second, milli = (bits >> 23) % 60, (bits >> 29) % 1000
    return f"{day}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


def _birthdate(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.22:
        return rng.choice(INVALID_BIRTHDATES)
    year, month, day = rng.randrange(1960, 2008), rng.randrange(1, 13), rng.randrange(1, 29)
    if roll < 0.27:  # full ISO-8601 timestamps are valid dates too
        return f"{year}-{month:02d}-{day:02d}T00:00:00.000Z"
    return f"{year}-{month:02d}-{day:02d}"


def _email(rng: random.Random, first: str, last: str, i: int) -> str | None:
    roll = rng.random()
    if roll < 0.04:
        return None
    if roll < 0.09:
        return rng.choice(INVALID_EMAILS)
    tag = "+news" if roll > 0.95 else ""  # '+' must be sent as %2B in profile ids
    domain = rng.choice(("example.com", "mail.test", "Example.ORG"))
    return f"{_ascii(first)}.{_ascii(last)}{i}{tag}@{domain}"


def _names(rng: random.Random, traits: dict[str, Any]) -> tuple[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    style = rng.random()
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


def _address(rng: random.Random, traits: dict[str, Any]) -> None:
    city, state, postal, country = rng.choice(CITIES)
    street = f"{rng.randrange(1, 400)} {rng.choice(('Rua Augusta', 'Main St.', 'ul. Długa'))}"
    roll = rng.random()
    if roll < 0.3:
        traits["address"] = {"street": street, "city": city, "state": state,
                             "postal_code": postal, "country": country}
    elif roll < 0.45:
        traits.update(city=city, state=state, country=country, street=street)
        traits["postalCode" if rng.random() < 0.3 else "postal_code"] = postal
    elif roll < 0.5:
        traits["address"] = {"city": city}  # partial nested address


def _traits(rng: random.Random, i: int) -> dict[str, Any]:
    traits: dict[str, Any] = {}
    first, last = _names(rng, traits)
    email = _email(rng, first, last, i)
    if email is not None:
        traits["email"] = email
    if rng.random() < 0.6:
        area, number = rng.randrange(100, 999), rng.randrange(1000, 9999)
        traits["phone"] = f"+{rng.randrange(1, 99)} {area} {number}"
    birthdate = _birthdate(rng)
    if birthdate is not None:
        traits["birthdate"] = birthdate
    _address(rng, traits)
    if rng.random() < 0.3:
        traits["metadata"] = {"plan": rng.choice(PLANS), "score": rng.randrange(100),
                              "beta": rng.random() < 0.5}
    if rng.random() < 0.04:  # over-long: beyond the 1000-char limits of the downstream APIs
        traits["description"] = "Long note. " * rng.randrange(95, 200)
    elif rng.random() < 0.2:
        traits["description"] = rng.choice(("VIP", "Met at the fair", "Prefers email"))
    traits["created_at"] = _timestamp(rng)
    if rng.random() < 0.2:  # a share with 15-40 traits: the traits cursor has several pages
        for n in range(rng.randrange(15, 41) - len(traits)):
            traits[f"custom_{n:02d}"] = rng.choice(EXTRA_TRAIT_VALUES)
    return traits


def _external_id(rng: random.Random, kind: str, value: str) -> dict[str, str]:
    return {"id": value, "type": kind, "source_id": rng.choice(SOURCE_IDS),
            "collection": "users", "created_at": _timestamp(rng), "encoding": "none"}


def _external_ids(rng: random.Random, i: int, traits: dict[str, Any]) -> list[dict[str, str]]:
    ids: list[dict[str, str]] = []
    anonymous = 1 + (rng.randrange(10, 15) if rng.random() < 0.03 else rng.randrange(0, 3))
    for _ in range(anonymous):  # some have so many that `user_id` is on a later page
        ids.append(_external_id(rng, "anonymous_id", _base62(rng, 22)))
    email = traits.get("email")
    if isinstance(email, str) and "@" in email and rng.random() < 0.8:
        ids.insert(rng.randrange(len(ids) + 1), _external_id(rng, "email", email.lower()))
    if rng.random() >= 0.05:  # ~5 % have no user_id at all
        ids.append(_external_id(rng, "user_id", f"u-{i}"))
    return ids


def generate_profiles(seed: int, count: int) -> list[Profile]:
    """`count` profiles for `seed`: same input, same output (and a prefix for smaller counts)."""
    rng = random.Random(f"segment-profiles:{seed}")
    profiles = []
    for i in range(1, count + 1):
        segment_id = _segment_id(rng)
        traits = _traits(rng, i)
        profiles.append(Profile(segment_id, traits, _external_ids(rng, i, traits)))
    return profiles


class ProfileWorld:
    """Profiles plus the lookups the API needs: by position and by `type:value` id."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed, self.count = seed, count
        self.profiles = generate_profiles(seed, count)
        self._by_id: dict[tuple[str, str], Profile] = {}
        for profile in self.profiles:
            self._by_id[("segment_id", profile.segment_id)] = profile
            for ext in profile.external_ids:
                # Lookups are case-insensitive on the value; the first profile wins.
                self._by_id.setdefault((ext["type"], ext["id"].lower()), profile)

    def find(self, kind: str, value: str) -> Profile | None:
        if kind == "segment_id":
            return self._by_id.get((kind, value))
        return self._by_id.get((kind, value.lower()))

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "count": self.count,
                "profiles": [p.to_json() for p in self.profiles]}
