"""Segment profile (traits + external ids) -> Voucherify customer. Pure: no I/O.

The mapping follows the original migration tool (see the API contract), with the
validation it lacked: every value is checked before it is sent, an invalid value is
dropped with a warning (the customer is still sent), and a profile without a usable
`source_id` is skipped and reported: never sent with a null `source_id`. No nulls are
sent at all (Voucherify's customer fields are not nullable).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

# The Voucherify OpenAPI file sets no maxLength on customer fields; these limits are the
# downstream APIs' documented 1000-character value limit and RFC 5321's 254 for email.
MAX_LENGTH = 1000
MAX_EMAIL_LENGTH = 254
OLDEST_BIRTH_YEAR = 1900
SYSTEM_METADATA = {"source": "segment"}

EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")

NAME_KEYS = ("name",)
FIRST_NAME_KEYS = ("first_name", "firstName")
LAST_NAME_KEYS = ("last_name", "lastName")
BIRTHDATE_KEYS = ("birthdate", "birthday")
# Voucherify address field <- trait names (nested `address` object or top level).
ADDRESS_KEYS: dict[str, tuple[str, ...]] = {
    "line_1": ("line_1", "street", "line1"),
    "line_2": ("line_2", "line2"),
    "city": ("city",),
    "state": ("state",),
    "postal_code": ("postal_code", "postalCode"),
    "country": ("country",),
}
# Traits the mapping consumes; the others go to metadata (when enabled).
MAPPED_TRAITS = frozenset({
    *NAME_KEYS, *FIRST_NAME_KEYS, *LAST_NAME_KEYS, *BIRTHDATE_KEYS, "email", "phone",
    "description", "address", "metadata", *(k for keys in ADDRESS_KEYS.values() for k in keys),
})


@dataclass
class Mapped:
    """One profile's outcome: a customer to send, or the reason it was skipped."""

    segment_id: str
    customer: dict[str, Any] | None = None
    skipped: str | None = None
    warnings: list[dict[str, str]] = field(default_factory=list)

    @property
    def source_id(self) -> str | None:
        return self.customer["source_id"] if self.customer else None

    def warn(self, field_name: str, reason: str) -> None:
        self.warnings.append({"segment_id": self.segment_id, "source_id": self.source_id or "",
                              "field": field_name, "reason": reason})


def find_source_id(external_ids: list[dict[str, Any]], id_type: str) -> Any:
    """The first external id of `id_type` (Segment lists the newest first), as given."""
    for row in external_ids:
        # Property tests: a row that is no object (null) raised AttributeError here.
        if isinstance(row, dict) and row.get("type") == id_type \
                and row.get("id") not in (None, ""):
            return row["id"]
    return None


def customer(segment_id: str, traits: dict[str, Any], external_ids: list[dict[str, Any]],
             source_id_type: str = "user_id", extra_traits_to_metadata: bool = True,
             today: date | None = None) -> Mapped:
    """Map one profile. `today` is for tests (a birthdate in the future is invalid)."""
    out = Mapped(segment_id)
    source_id = find_source_id(external_ids, source_id_type)
    if source_id is None:
        out.skipped = f"no {source_id_type} external id"
        return out
    text = _as_text(source_id)  # property tests: an object or a blank id was sent as one
    problem = (f"not a string ({type(source_id).__name__})" if text is None else
               "blank" if not text else _string_problem(text, MAX_LENGTH))
    source_id = text or ""
    if problem:
        out.skipped = f"invalid {source_id_type} as source_id: {problem}"
        return out
    out.customer = {"source_id": source_id}
    _set(out, "name", _name(out, traits))
    _set(out, "email", _checked(out, "email", traits.get("email"), _email_problem))
    _set(out, "phone", _checked(out, "phone", traits.get("phone")))
    _set(out, "description", _checked(out, "description", traits.get("description")))
    _set(out, "birthdate", _birthdate(out, traits, today or datetime.now(UTC).date()))
    _set(out, "address", _address(out, traits))
    _set(out, "metadata", _metadata(out, traits, extra_traits_to_metadata))
    out.customer["system_metadata"] = dict(SYSTEM_METADATA)
    return out


def _set(out: Mapped, name: str, value: Any) -> None:
    if value not in (None, "", {}):
        assert out.customer is not None
        out.customer[name] = value


def _as_text(value: Any) -> str | None:
    """Strings as they are, numbers as text; None for anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _string_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"longer than {limit} characters ({len(value)})"
    return None


def _email_problem(value: str) -> str | None:
    if len(value) > MAX_EMAIL_LENGTH:
        return f"longer than {MAX_EMAIL_LENGTH} characters ({len(value)})"
    if not EMAIL.match(value):
        return f"not a valid email address: {value[:80]!r}"
    return None


def _checked(out: Mapped, name: str, raw: Any,
             extra_check: Callable[[str], str | None] | None = None) -> str | None:
    """A string field: absent -> None; wrong type, too long or invalid -> warning + None."""
    if raw is None:
        return None
    text = _as_text(raw)
    if text is None:
        out.warn(name, f"not a string ({type(raw).__name__})")
        return None
    problem = _string_problem(text, MAX_LENGTH) or (extra_check(text) if extra_check else None)
    if problem:
        out.warn(name, problem)
        return None
    return text or None


def _first(traits: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if traits.get(key) not in (None, ""):
            return traits[key]
    return None


def _name(out: Mapped, traits: dict[str, Any]) -> str | None:
    name = _first(traits, NAME_KEYS)
    if name is None:
        parts = [_name_part(out, traits, keys) for keys in (FIRST_NAME_KEYS, LAST_NAME_KEYS)]
        name = " ".join(p for p in parts if p) or None
    return _checked(out, "name", name)


def _name_part(out: Mapped, traits: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """A first or last name; one that is not text is named (property tests: an object
    here was dropped without a warning)."""
    raw = _first(traits, keys)
    text = _as_text(raw)
    if raw is not None and text is None:
        out.warn(next(k for k in keys if traits.get(k) is raw), f"not a string "
                 f"({type(raw).__name__})")
    return text


def parse_birthdate(value: Any, today: date) -> tuple[str | None, str | None]:
    """(YYYY-MM-DD, None) for a valid ISO-8601 date or timestamp, else (None, reason)."""
    if not isinstance(value, str) or not value.strip():
        return None, f"not a date string ({type(value).__name__})"
    text = value.strip()
    try:
        if len(text) > 10 and text[10] in "Tt ":
            parsed = datetime.fromisoformat(text.replace("z", "Z")).date()
        else:
            parsed = date.fromisoformat(text)
    except ValueError:
        return None, f"not a valid ISO-8601 date: {text[:40]!r}"
    if parsed.year < OLDEST_BIRTH_YEAR or parsed > today:
        return None, f"implausible birthdate: {parsed.isoformat()}"
    return parsed.isoformat(), None


def _birthdate(out: Mapped, traits: dict[str, Any], today: date) -> str | None:
    for key in BIRTHDATE_KEYS:
        if traits.get(key) in (None, ""):
            continue
        value, problem = parse_birthdate(traits[key], today)
        if problem:
            out.warn("birthdate", problem)
        return value
    return None


def _address(out: Mapped, traits: dict[str, Any]) -> dict[str, str] | None:
    nested = traits.get("address")
    if isinstance(nested, str):
        nested = {"line_1": nested}
    elif nested is not None and not isinstance(nested, dict):
        out.warn("address", f"not an object ({type(nested).__name__})")
        nested = None
    address: dict[str, str] = {}
    for target, keys in ADDRESS_KEYS.items():
        raw = _first(nested or {}, keys)
        if raw is None:
            raw = _first(traits, keys)
        value = _checked(out, f"address.{target}", raw)
        if value:
            address[target] = value
    return address or None


def _clean(out: Mapped, path: str, value: Any) -> Any:
    """A metadata value without nulls or over-long strings; None = drop it."""
    if value is None:
        return None
    if isinstance(value, str):
        problem = _string_problem(value, MAX_LENGTH)
        if problem:
            out.warn(path, problem)
            return None
        return value
    if isinstance(value, dict):
        cleaned = {str(k): _clean(out, f"{path}.{k}", v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v is not None}
    if isinstance(value, list):
        return [v for v in (_clean(out, f"{path}[]", v) for v in value) if v is not None]
    return value


def _metadata(out: Mapped, traits: dict[str, Any], extra: bool) -> dict[str, Any] | None:
    metadata: dict[str, Any] = {}
    if extra:  # custom traits have no Voucherify field: metadata is where they belong
        metadata.update({k: v for k, v in traits.items() if k not in MAPPED_TRAITS})
    own = traits.get("metadata")
    if isinstance(own, dict):
        metadata.update(own)
    elif own is not None:
        out.warn("metadata", f"not an object ({type(own).__name__})")
    cleaned = _clean(out, "metadata", metadata)
    return cleaned or None
