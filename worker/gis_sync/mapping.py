"""GIS person -> customer.io attributes, field by field (pure: no Celery, Redis or HTTP).

Follows docs/api-contracts.md, section 4: `email` and `created_at` (Unix seconds) go with
the first identify; the other attributes are kept up to date. customer.io takes strings,
integers and booleans, values up to 1000 bytes, never null.

Only a person without a usable id is unusable (`Malformed`). Every other field is checked
on its own: a missing one is simply not sent; a bad one (the wrong type, an impossible
date, a URL that is none, a value over 1000 bytes) is dropped with a warning naming the
GIS field, and the rest of the person is sent. A person without an email is identified
by id (customer.io needs none).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from worker.gis_sync.ladder import Malformed, to_unix

MAX_VALUE_BYTES = 1000
MAX_ID_BYTES = 150  # customer.io refuses longer identifiers
OLDEST_YEAR = 1900
# An address customer.io takes (its spec says format: email): a dot-atom ASCII local part
# of at most 64 characters, a domain of letter-digit-hyphen labels with a letter TLD, 254
# in all. Stricter than RFC 5322 (no quoted locals, no IP literals) on purpose: an address
# customer.io refuses would cost the person's whole identify.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"(?=.{{3,254}}$)(?=[^@]{{1,64}}@)"
                   rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
URL = re.compile(r"^https?://\S+$", re.IGNORECASE)

Value = str | int | bool
Parser = Callable[[Any], tuple[Value | None, str | None]]


@dataclass
class MappedPerson:
    id: str
    attributes: dict[str, Value]  # kept up to date
    first: dict[str, Value]  # sent once, with the first identify
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (GIS field, reason)


def record_id(value: Any, what: str = "id") -> str:
    """A record's id as customer.io can use it, or Malformed (the record is unusable)."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list | float):
        raise Malformed(f"no usable {what} ({_kind(value)})")
    text = str(value)  # as given, spaces included: GIS's id, wherever it is read
    if not text.strip():
        raise Malformed(f"no {what}")
    if len(text.encode()) > MAX_ID_BYTES:
        raise Malformed(f"{what} longer than {MAX_ID_BYTES} bytes")
    return text


def _kind(value: Any) -> str:
    return "missing" if value is None else type(value).__name__


# --- one parser per kind of field: (value to send, None) or (None, why it is dropped) ---------

def text(raw: Any) -> tuple[Value | None, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None, f"not text ({_kind(raw)})"
    value = raw.strip() if isinstance(raw, str) else str(raw)
    if len(value.encode()) > MAX_VALUE_BYTES:
        return None, f"longer than {MAX_VALUE_BYTES} bytes ({len(value.encode())})"
    return (value or None), None


def email(raw: Any) -> tuple[Value | None, str | None]:
    value, problem = text(raw)
    if problem or value is None:
        return value, problem
    return (value, None) if EMAIL.fullmatch(str(value)) else (None, "not an email address")


def url(raw: Any) -> tuple[Value | None, str | None]:
    value, problem = text(raw)
    if problem or value is None:
        return value, problem
    return (value, None) if URL.match(str(value)) else (None, "not an http(s) URL")


def integer(raw: Any) -> tuple[Value | None, str | None]:
    if isinstance(raw, bool):
        return None, "not a number (bool)"
    whole = (isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())
             or (isinstance(raw, str) and re.fullmatch(r"\s*-?\d{1,12}\s*", raw)))
    if not whole:
        return None, f"not a whole number ({_kind(raw)})"
    value = int(raw)
    return (value, None) if abs(value) < 2**31 else (None, "out of range")


def boolean(raw: Any) -> tuple[Value | None, str | None]:
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true", None
    return None, f"not true or false ({_kind(raw)})"


def birthday(raw: Any, today: date | None = None) -> tuple[Value | None, str | None]:
    if not isinstance(raw, str) or not raw.strip():
        return None, f"not a date ({_kind(raw)})"
    try:
        parsed = date.fromisoformat(raw.strip()[:10])
    except ValueError:
        return None, f"not a date: {raw.strip()[:40]!r}"
    today = today or datetime.now(UTC).date()
    if parsed.year < OLDEST_YEAR or parsed > today:
        return None, f"implausible date: {parsed.isoformat()}"
    return parsed.isoformat(), None


OLDEST_UNIX = int(datetime(OLDEST_YEAR, 1, 1, tzinfo=UTC).timestamp())


def unix_time(raw: Any) -> tuple[Value | None, str | None]:
    value = to_unix(raw) if isinstance(raw, str) else None
    if value is None:
        return None, f"not a date-time ({_kind(raw)})"
    if value < OLDEST_UNIX:
        return None, f"implausible date-time: {str(raw).strip()[:40]!r}"
    return value, None


# customer.io attribute -> (GIS field path, parser)
FIELDS: dict[str, tuple[tuple[str, ...], Parser]] = {
    "email": (("email",), email),
    "first_name": (("first_name",), text),
    "last_name": (("last_name",), text),
    "full_name": (("full_name",), text),
    "birthday": (("dob",), birthday),
    "interviewed": (("interviewed",), boolean),
    "photo": (("profile_photo",), url),
    "status": (("status",), text),
    "cv": (("cv_url",), url),
    "nps_score": (("nps_score",), integer),
    "can_apply": (("permissions", "can_apply"), boolean),
    "home_lc": (("home_lc", "name"), text),
    "home_lc_country": (("home_lc", "parent", "name"), text),
}
FIRST_IDENTIFY: dict[str, tuple[tuple[str, ...], Parser]] = {
    "created_at": (("created_at",), unix_time),
}


def map_person(person: Any) -> MappedPerson:
    """The person's attributes, each field on its own; Malformed only when the person
    has no usable id."""
    if not isinstance(person, dict):
        raise Malformed(f"not a record ({_kind(person)})")
    out = MappedPerson(record_id(person.get("id")), {}, {})
    for target, fields in ((out.attributes, FIELDS), (out.first, FIRST_IDENTIFY)):
        for name, (path, parse) in fields.items():
            raw, where, problem = dig(person, path)
            if problem is None and raw is not None:
                value, problem = parse(raw)
                if value is not None:
                    target[name] = value
            if problem and (where, problem) not in out.warnings:  # each field named once
                out.warnings.append((where, problem))
    return out


def dig(record: dict[str, Any], path: tuple[str, ...]) -> tuple[Any, str, str | None]:
    """(value at `path`, the field it came from, a problem or None). A step that is not
    an object is the problem of that step's field; a missing step is no problem."""
    value: Any = record
    for depth, part in enumerate(path):
        if value is None:
            return None, ".".join(path), None
        if not isinstance(value, dict):
            return None, ".".join(path[:depth]), f"not an object ({_kind(value)})"
        value = value.get(part)
    return value, ".".join(path), None


def home_lc_of(person: dict[str, Any]) -> int | None:
    """The id of the person's home LC, None when GIS shows none usable."""
    home = person.get("home_lc")
    lc = home.get("id") if isinstance(home, dict) else None
    try:
        return int(lc) if lc is not None and not isinstance(lc, bool) else None
    except (TypeError, ValueError):
        return None


def person_of(application: dict[str, Any]) -> str | None:
    person = application.get("person") or {}
    pid = (person.get("id") if isinstance(person, dict) else None) or \
        application.get("person_id")
    return str(pid) if pid not in (None, "") and not isinstance(pid, dict | list) else None
