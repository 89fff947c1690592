"""Indexes over a world's records, so that a page of a list costs the same in a world of
5,000 records as in one of 600,000.

A list query starts from a *group*: the records that share one value of an attribute
that never changes (a person's LC, an opportunity's MC, a person id), or every record.
`RecordIndex.group` maps each value to its group in id order (one pass over the records
the first time an attribute is asked for). `Ordered` is a group sorted by
(updated_ts, id), the times kept in an array beside it, so the records changed within a
time range are a slice found by bisection. When records change (`POST /admin/advance`),
`RecordIndex.changed` moves them to their new place in every `Ordered` built so far.

`examined` counts the records that index work and list queries looked at one by one;
tests assert on it (a page must not look at more than it returns), benchmarks time it.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from operator import attrgetter
from typing import Any, Generic, Protocol, TypeVar


class Indexed(Protocol):
    """What an index needs of a record."""

    id: int
    updated_ts: int


R = TypeVar("R", bound=Indexed)
ORDER = attrgetter("updated_ts", "id")
ID = attrgetter("id")
# A group smaller than this is sorted again when asked for (cheaper than keeping one
# Ordered per person id); larger ones are kept and maintained.
KEEP_ORDERED = 64
KEEP_ANSWERS = 64  # answers filtered record by record, kept until records change

GroupKey = tuple[str, Hashable] | None  # (attribute, value), or None: every record
Grouping = Callable[[Any], Iterable[Hashable]]  # the values of one attribute of a record


class Ordered(Generic[R]):
    """One group ordered by (updated_ts, id), with its times to bisect."""

    __slots__ = ("records", "stamps")

    def __init__(self, records: Iterable[R]) -> None:
        self._fill(sorted(records, key=ORDER))

    def _fill(self, records: list[R]) -> None:
        self.records = records
        self.stamps = array("q", [r.updated_ts for r in records])

    def __len__(self) -> int:
        return len(self.records)

    def span(self, low: int | None, high: int | None) -> tuple[int, int]:
        """[start, end) of the records with low <= updated_ts <= high (None: open)."""
        start = 0 if low is None else bisect_left(self.stamps, low)
        end = len(self.stamps) if high is None else bisect_right(self.stamps, high)
        return start, max(start, end)

    def move(self, changed: list[R]) -> None:
        """Put records of this group whose updated_ts changed back in order: the others
        keep theirs, so it is one merge, not a sort."""
        gone = {id(r) for r in changed}
        kept = [r for r in self.records if id(r) not in gone]
        merged: list[R] = []
        start = 0
        for record in sorted(changed, key=ORDER):
            at = bisect_right(kept, ORDER(record), lo=start, key=ORDER)
            merged += kept[start:at]
            merged.append(record)
            start = at
        merged += kept[start:]
        self._fill(merged)


class RecordIndex(Generic[R]):
    """Groups of one kind of record (people or applications) and their orders."""

    def __init__(self, records: list[R], groupings: Mapping[str, Grouping]) -> None:
        self.records = records  # in id order
        self.groupings = groupings
        self._groups: dict[str, dict[Hashable, list[R]]] = {}
        self._ordered: dict[GroupKey, Ordered[R]] = {}
        self._answers: dict[Hashable, list[R]] = {}
        self.examined = 0

    def group(self, key: GroupKey) -> list[R]:
        """The records of a group, in id order."""
        if key is None:
            return self.records
        attribute, value = key
        groups = self._groups.get(attribute)
        if groups is None:
            groups = self._groups[attribute] = self._split(attribute)
        return groups.get(value, [])

    def _split(self, attribute: str) -> dict[Hashable, list[R]]:
        values = self.groupings[attribute]
        groups: defaultdict[Hashable, list[R]] = defaultdict(list)
        for record in self.records:
            for value in values(record):
                groups[value].append(record)
        self.examined += len(self.records)
        return dict(groups)

    def ordered(self, key: GroupKey) -> Ordered[R]:
        """The group ordered by (updated_ts, id)."""
        found = self._ordered.get(key)
        if found is None:
            members = self.group(key)
            found = Ordered(members)
            self.examined += len(members)
            if len(members) >= KEEP_ORDERED:
                self._ordered[key] = found
        return found

    def remember(self, key: Hashable, build: Callable[[], list[R]]) -> list[R]:
        """An answer computed record by record (`build`), kept until records change: a
        walk through its pages computes it once."""
        found = self._answers.get(key)
        if found is None:
            if len(self._answers) >= KEEP_ANSWERS:
                self._answers.clear()
            found = self._answers[key] = build()
        return found

    def add(self, records: list[R]) -> None:
        """New records (sandbox/worlds/added.py): put in id order into the records and
        every group split so far, then into every order built so far (as `changed`)."""
        for record in records:
            insort(self.records, record, key=ID)
            for attribute, groups in self._groups.items():
                for value in self.groupings[attribute](record):
                    insort(groups.setdefault(value, []), record, key=ID)
        self.changed(records)

    def changed(self, records: Iterable[R]) -> None:
        """Records that changed (their updated_ts too, maybe): every answer kept is
        forgotten, every order re-places them."""
        self._answers.clear()
        moved: defaultdict[GroupKey, list[R]] = defaultdict(list)
        for record in records:
            if None in self._ordered:
                moved[None].append(record)
            for attribute, values in self.groupings.items():
                for value in values(record):
                    if (attribute, value) in self._ordered:
                        moved[attribute, value].append(record)
        for key, members in moved.items():
            ordered = self._ordered[key]
            ordered.move(members)
            self.examined += len(ordered)
