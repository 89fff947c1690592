"""allPeople and allOpportunityApplication over the GIS world: filters, sorts, pages.

A page costs what it returns, not the size of the world. The filters on attributes that
never change (an LC or MC, a person or opportunity id) pick a group of the world's
RecordIndex (sandbox/worlds/index.py); `last_interaction` and a sort on updated_at are a
bisection of that group ordered by updated_at. That is every query the fleet sends
(worker/clients/gis.py: an LC, `last_interaction.from`, updated_at ascending, a moving
lower bound). The other filters (status, creation dates, programmes, `q`) and sorts
look at the group's records one by one; their answer is kept until the world changes,
so a walk through its pages filters once.

Errors are GraphQL errors with the field's data null, raised in this order: a bad date,
a bad sort, then `per_page` / `page` out of range.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError

from sandbox.worlds.gis import APPLICATION_GROUPS, PEOPLE_GROUPS, World
from sandbox.worlds.index import GroupKey, RecordIndex

MAX_PER_PAGE = 500
SORT_FIELDS = {"updated_at": "updated_ts", "created_at": "created_ts", "id": "id"}

Test = Callable[[Any], bool]


@dataclass
class ListQuery:
    """What one list query asks for, in terms of the index."""

    groups: list[tuple[str, Any]]  # equality filters on attributes that never change
    updated: tuple[int | None, int | None] | None  # last_interaction, inclusive
    tests: list[Test] = field(default_factory=list)  # the other filters, record by record
    sort: str | None = None  # a record attribute (SORT_FIELDS); None = id order
    descending: bool = False
    key: tuple[Any, ...] = ()  # the query's identity, to keep a filtered answer

    def by_bisection(self) -> bool:
        """Whether an order by updated_at answers it without looking at each record."""
        return not self.tests and self.sort == "updated_ts"


# --- parsing the arguments ------------------------------------------------------------
def _ts(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphQLError(f"Invalid date for {name}: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _range(rng: dict[str, Any] | None, name: str) -> tuple[int | None, int | None] | None:
    """A DateRange as Unix seconds, both ends inclusive and optional."""
    if not rng:
        return None
    return _ts(rng.get("from"), f"{name}.from"), _ts(rng.get("to"), f"{name}.to")


def _within(bounds: tuple[int | None, int | None], value: int) -> bool:
    low, high = bounds
    return (low is None or low <= value) and (high is None or value <= high)


def _sort_field(field_name: str) -> str:
    if field_name not in SORT_FIELDS:
        raise GraphQLError(f"Invalid sort field: {field_name}")
    return SORT_FIELDS[field_name]


def _groups(filters: dict[str, Any], groupings: dict[str, Any]) -> list[tuple[str, Any]]:
    """The filters that name a group of the index (a None value filters nothing)."""
    return [(name, filters[name]) for name in groupings if filters.get(name) is not None]


def _key(kind: str, filters: dict[str, Any], *rest: Any) -> tuple[Any, ...]:
    return (kind, json.dumps(filters, sort_keys=True, default=str), *rest)


def people_query(filters: dict[str, Any], sort: str | None, q: str | None) -> ListQuery:
    query = ListQuery(groups=_groups(filters, PEOPLE_GROUPS),
                      updated=_range(filters.get("last_interaction"), "last_interaction"),
                      key=_key("people", filters, sort, q))
    if (status := filters.get("status")) is not None:
        query.tests.append(lambda p: p.status == status)
    if (registered := _range(filters.get("registered"), "registered")) is not None:
        query.tests.append(lambda p: _within(registered, p.created_ts))
    if q:
        needle = q.lower()
        query.tests.append(lambda p: needle in p.full_name.lower() or needle in (p.email or ""))
    if sort:
        query.sort, query.descending = _sort_field(sort.lstrip("+-")), sort.startswith("-")
    return query


def applications_query(filters: dict[str, Any], sort: str | None) -> ListQuery:
    query = ListQuery(groups=_groups(filters, APPLICATION_GROUPS),
                      updated=_range(filters.get("last_interaction"), "last_interaction"),
                      key=_key("applications", filters, sort))
    if (created := _range(filters.get("created_at"), "created_at")) is not None:
        query.tests.append(lambda a: _within(created, a.created_ts))
    if (programmes := filters.get("programmes")) is not None:
        ids = set(programmes)
        query.tests.append(lambda a: a.opportunity.programme.id in ids)
    if (statuses := filters.get("statuses")) is not None:
        wanted = set(statuses)
        query.tests.append(lambda a: a.status in wanted)
    if sort:
        for prefix, descending in (("ASC_", False), ("DESC_", True)):
            if sort.startswith(prefix):
                query.sort = _sort_field(sort[len(prefix):])
                query.descending = descending
                break
        else:
            raise GraphQLError(f"Invalid sort: {sort} (use ASC_<field> or DESC_<field>)")
    return query


# --- answering --------------------------------------------------------------------------
def page_of(index: RecordIndex[Any], query: ListQuery, page: int,
            per_page: int) -> dict[str, Any]:
    """One page of the answer and its paging block."""
    if per_page < 1 or per_page > MAX_PER_PAGE:
        raise GraphQLError(f"per_page must be between 1 and {MAX_PER_PAGE}")
    if page < 1:
        raise GraphQLError("page must be 1 or more")
    start = (page - 1) * per_page
    if query.by_bisection():
        records, total = _bisected(index, query, start, per_page)
    else:
        answer = index.remember(query.key, lambda: _filtered(index, query))
        records, total = answer[start:start + per_page], len(answer)
    index.examined += len(records)
    return {"data": records,
            "paging": {"total_items": total, "total_pages": math.ceil(total / per_page),
                       "current_page": page}}


def _group(index: RecordIndex[Any], query: ListQuery) -> tuple[GroupKey, list[Test]]:
    """The smallest group the equality filters name; the other filters become tests."""
    if not query.groups:
        return None, []
    sizes = [(len(index.group(g)), i) for i, g in enumerate(query.groups)]
    chosen = query.groups[min(sizes)[1]]
    return chosen, [_member(index, g) for g in query.groups if g is not chosen]


def _member(index: RecordIndex[Any], group: tuple[str, Any]) -> Test:
    attribute, value = group
    values = index.groupings[attribute]
    return lambda record: value in values(record)


def _bisected(index: RecordIndex[Any], query: ListQuery, start: int,
              count: int) -> tuple[list[Any], int]:
    """A page of one group ordered by updated_at, within the updated range."""
    key, others = _group(index, query)
    if others:  # two equality filters: rare, answered record by record
        answer = index.remember(query.key, lambda: _filtered(index, query))
        return answer[start:start + count], len(answer)
    ordered = index.ordered(key)
    low, high = ordered.span(*(query.updated or (None, None)))
    total = high - low
    if not query.descending:
        first = min(high, low + start)
        return ordered.records[first:min(high, first + count)], total
    last = max(low, high - start)  # descending: count back from the newest
    return ordered.records[max(low, last - count):last][::-1], total


def _filtered(index: RecordIndex[Any], query: ListQuery) -> list[Any]:
    """The whole answer, record by record (kept by the index until records change)."""
    key, others = _group(index, query)
    if query.updated is None:
        candidates, order = index.group(key), None  # in id order
    else:
        ordered = index.ordered(key)
        low, high = ordered.span(*query.updated)
        candidates, order = ordered.records[low:high], "updated_ts"
    index.examined += len(candidates)
    tests = others + query.tests
    found = [r for r in candidates if all(test(r) for test in tests)]
    if query.sort != order:
        sort = query.sort
        found.sort(key=(lambda r: r.id) if sort is None else (lambda r: (getattr(r, sort), r.id)))
    if query.descending:
        found.reverse()
    return found


# --- the resolvers (sandbox/gis_graphql.py attaches them to the schema) -------------------
def all_people(_: Any, info: Any, page: int = 1, per_page: int = 25, sort: str | None = None,
               q: str | None = None, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    world: World = info.context
    query = people_query(filters or {}, sort, q)
    return page_of(world.people_index, query, page, per_page)


def all_applications(_: Any, info: Any, page: int = 1, per_page: int = 25,
                     sort: str | None = None,
                     filters: dict[str, Any] | None = None) -> dict[str, Any]:
    world: World = info.context
    query = applications_query(filters or {}, sort)
    return page_of(world.application_index, query, page, per_page)
