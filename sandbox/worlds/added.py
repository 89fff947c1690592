"""Records added to a world by hand (`POST /admin/world/people|applications`): served as
given, found like generated ones.

A test that needs a record the generator never makes (a malformed one, an odd id, the
same id twice with different `updated_at`) builds it as JSON and adds it. The record is
served exactly as given: it is a Mapping, and GraphQL reads a Mapping's keys (both the
compiled plans of sandbox/gis_graphql.py and graphql-core), so a query gets the fields it
asks for, serialized with the schema's scalar types (a number in a String field is served
as its text, "7" in an Int field as 7). Values the schema cannot carry (a string where it
has an object, text in a Boolean, a missing `id`) are refused when the record is added
(`schema_problems`), as GIS itself could never serve them.

The indexes (sandbox/worlds/index.py) and list filters read attributes, as they do of
generated records: `id` is the record's place in id order (after every generated record,
in the order added: `ADDED_BASE + n`; the id served is the record's own `"id"`),
`updated_ts` / `created_ts` its `updated_at` / `created_at` (`updated_at` must be a
valid ISO-8601 time: GIS sets it, and lists sort and filter on it), and the groups of
the equality filters. What GIS knows but does not serve decides those groups: a person's
`home_committee` is its served `home_lc.id` and that office's `parent.id`; an
application's `person_id`, `opportunity_id`, `person_home_lc`, `person_home_mc`,
`opportunity_home_lc`, `opportunity_home_mc` and `programmes` come from its served
`person` and `opportunity`. A top-level key named like the filter (an int, or a list of
ints) decides instead: how a test puts an application whose served `person` is null in
LC 1340's walk. Such keys are not in the schema, so never served.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from graphql import (
    GraphQLID,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)

ADDED_BASE = 10**15  # above every generated id: added records come last in id order


def _int(value: Any) -> int | None:
    """A filter value as GraphQL's Int filters compare it (None: matches no filter)."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ints(value: Any) -> tuple[int, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    return tuple(v for v in map(_int, values) if v is not None)


def _ts(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return int(moment.timestamp())
    except (OverflowError, ValueError, OSError):
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Ref:
    """What a list filter reads of a nested record: an id (int or None), an office's
    parent, an opportunity's LC and programme."""

    __slots__ = ("id", "parent", "home_lc", "programme")

    def __init__(self, id: int | None = None, parent: Ref | None = None,
                 home_lc: Ref | None = None, programme: Ref | None = None) -> None:
        self.id = id
        self.parent = parent
        self.home_lc = home_lc
        self.programme = programme


def _office(served: Any, lc_override: Any = None, mc_override: Any = None) -> Ref:
    """An office as the filters see it: `lc_override` / `mc_override` (from top-level
    keys) when given, else the served `id` and `parent.id`."""
    office = _object(served)
    lc = _int(lc_override) if lc_override is not None else _int(office.get("id"))
    mc = _int(mc_override) if mc_override is not None else \
        _int(_object(office.get("parent")).get("id"))
    return Ref(lc, Ref(mc) if mc is not None else None)


class AddedRecord(Mapping[str, Any]):
    """A hand-built record: its JSON as a Mapping (what GraphQL serves) and the
    attributes the indexes and filters read."""

    __slots__ = ("data", "id", "updated_ts", "created_ts", "status", "overrides")

    kind = "record"

    def __init__(self, data: dict[str, Any], seq: int) -> None:
        self.data = data
        self.id = ADDED_BASE + seq
        updated = _ts(data.get("updated_at"))
        if updated is None:
            raise ValueError(f"{self.kind} {data.get('id')!r}: updated_at must be an "
                             f"ISO-8601 time (lists sort and filter on it), got "
                             f"{data.get('updated_at')!r}")
        self.updated_ts = updated
        created = _ts(data.get("created_at"))
        self.created_ts = updated if created is None else created
        status = data.get("status") or data.get("current_status")
        self.status = status if isinstance(status, str) else None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __hash__(self) -> int:  # records are told apart by identity, like generated ones
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def given_id(self) -> str:
        """The id GraphQL serves (an ID is a string: 7 and 7.0 are served "7")."""
        return GraphQLID.serialize(self.data.get("id"))

    def to_json(self) -> dict[str, Any]:
        return self.data


class AddedPerson(AddedRecord):
    __slots__ = ("full_name", "email", "home_lc")

    kind = "person"

    def __init__(self, data: dict[str, Any], seq: int) -> None:
        super().__init__(data, seq)
        full_name, email = data.get("full_name"), data.get("email")
        self.full_name = full_name if isinstance(full_name, str) else ""
        self.email = email if isinstance(email, str) else None
        committees = data.get("home_committee")
        if committees is not None:  # the LC first, then its MC, as a generated person
            ids = _ints(committees)
            self.home_lc = Ref(ids[0] if ids else None, Ref(ids[1]) if len(ids) > 1 else None)
        else:
            self.home_lc = _office(data.get("home_lc"))


class AddedApplication(AddedRecord):
    __slots__ = ("person", "opportunity")

    kind = "application"

    def __init__(self, data: dict[str, Any], seq: int) -> None:
        super().__init__(data, seq)
        person, opportunity = _object(data.get("person")), _object(data.get("opportunity"))
        pid = data["person_id"] if "person_id" in data else person.get("id")
        self.person = Ref(_int(pid), home_lc=_office(
            person.get("home_lc"), data.get("person_home_lc"), data.get("person_home_mc")))
        oid = data["opportunity_id"] if "opportunity_id" in data else opportunity.get("id")
        programme = _object(opportunity.get("programme")).get("id")
        if "programmes" in data:
            programme = data["programmes"]
        self.opportunity = Ref(_int(oid), home_lc=_office(
            opportunity.get("home_lc"), data.get("opportunity_home_lc"),
            data.get("opportunity_home_mc")), programme=Ref(_int(programme)))


def schema_problems(value: Any, kind: Any, path: str) -> list[str]:
    """What of `value` the GraphQL type `kind` cannot serve (empty: all of it can).
    Keys that are not fields of an object type are never served, so never a problem."""
    if isinstance(kind, GraphQLNonNull):
        if value is None:
            return [f"{path}: null where the schema requires a value"]
        kind = kind.of_type
    if value is None:
        return []
    if isinstance(kind, GraphQLList):
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where the schema has a list"]
        return [p for i, item in enumerate(value)
                for p in schema_problems(item, kind.of_type, f"{path}[{i}]")]
    if isinstance(kind, GraphQLObjectType):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where the schema has {kind.name}"]
        return [p for name, field in kind.fields.items() if name in value
                for p in schema_problems(value[name], field.type, f"{path}.{name}")]
    if isinstance(kind, GraphQLScalarType):
        try:
            kind.serialize(value)
        except Exception as exc:  # graphql-core's own wording
            return [f"{path}: {exc}"]
        return []
    return [f"{path}: {kind} is not served by the sandbox"]  # pragma: no cover
