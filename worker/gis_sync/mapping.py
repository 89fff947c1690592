"""GIS person -> customer.io attributes (pure: no Celery, Redis or HTTP).

Follows docs/api-contracts.md, section 4: `email` and `created_at` (Unix seconds) go with the
first identify; the other attributes are kept up to date. customer.io accepts strings,
integers and booleans only, values up to 1000 bytes: a missing value is omitted (never
null) and a longer string is cut at a character boundary.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from worker.gis_sync.ladder import Malformed, to_unix

MAX_VALUE_BYTES = 1000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# customer.io attribute -> how to read it from a GIS person.
FIELDS: dict[str, tuple[str, ...]] = {
    "first_name": ("first_name",),
    "last_name": ("last_name",),
    "full_name": ("full_name",),
    "birthday": ("dob",),
    "interviewed": ("interviewed",),
    "photo": ("profile_photo",),
    "status": ("status",),
    "cv": ("cv_url",),
    "nps_score": ("nps_score",),
    "can_apply": ("permissions", "can_apply"),
    "home_lc": ("home_lc", "name"),
    "home_lc_country": ("home_lc", "parent", "name"),
}


def validate(person: dict[str, Any]) -> str | None:
    """The reason this person cannot be synced, or None."""
    if not person.get("id"):
        return "no id"
    email = person.get("email")
    if not email or not str(email).strip():
        return "no email"
    if not EMAIL.match(str(email).strip()):
        return "invalid email"
    dob = person.get("dob")
    if dob and not _is_date(str(dob)):
        return f"invalid dob {str(dob)[:40]!r}"
    if person.get("created_at") and to_unix(person["created_at"]) is None:
        return "invalid created_at"
    return None


def attributes(person: dict[str, Any]) -> dict[str, Any]:
    """The attributes kept up to date (everything but the first-identify ones)."""
    reason = validate(person)
    if reason:
        raise Malformed(reason)
    out: dict[str, Any] = {"email": str(person["email"]).strip()}
    for name, path in FIELDS.items():
        value = _clean(_dig(person, path))
        if value is not None:
            out[name] = value
    if "birthday" in out:
        out["birthday"] = str(out["birthday"])[:10]
    return out


def first_identify(person: dict[str, Any]) -> dict[str, Any]:
    """Extra attributes sent once, with the first identify."""
    created = to_unix(person.get("created_at"))
    return {} if created is None else {"created_at": created}


def _dig(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _clean(value: Any) -> str | int | bool | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else str(value)
    text = str(value).strip()
    return truncate(text) if text else None


def truncate(text: str, limit: int = MAX_VALUE_BYTES) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore")


def _is_date(value: str) -> bool:
    try:
        parsed = date.fromisoformat(value[:10])
    except ValueError:
        return False
    return 1900 <= parsed.year <= date.today().year


def person_of(application: dict[str, Any]) -> str | None:
    person = application.get("person") or {}
    pid = person.get("id") or application.get("person_id")
    return str(pid) if pid else None
