"""The GIS list queries in-process: indexes give exactly the pages a scan of the whole
world gives (before and after `advance`), a page looks at no more records than it
returns whatever the world's size, and compiled plans answer exactly as graphql-core."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import execute_sync

from sandbox.gis_graphql import GisGraphql
from sandbox.worlds.gis import World
from sandbox.worlds.gis_records import iso
from sandbox.worlds.index import ORDER, Ordered

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)  # a fixed anchor: advance stamps now + 1
HOME = 1340
PEOPLE = """query($page: Int, $per: Int, $sort: String, $filters: PeopleFilter) {
  allPeople(page: $page, per_page: $per, sort: $sort, filters: $filters) {
    data { id updated_at status home_lc { id parent { id } } }
    paging { total_items total_pages current_page }
  }
}"""
APPS = """query($page: Int, $per: Int, $sort: String, $filters: ApplicationFilter) {
  allOpportunityApplication(page: $page, per_page: $per, sort: $sort, filters: $filters) {
    data { id status updated_at created_at person { id home_lc { id } }
           opportunity { id home_lc { id } programme { id } } }
    paging { total_items total_pages current_page }
  }
}"""
ROOT = {PEOPLE: "allPeople", APPS: "allOpportunityApplication"}


def ask(graphql: GisGraphql, world: World, query: str, **variables: Any) -> dict[str, Any]:
    answer = graphql.answer(query, variables, None, world)
    assert not answer.rejected and "errors" not in answer.body, answer.body
    return answer.body["data"][ROOT[query]]


def client_walk(graphql: GisGraphql, world: World, query: str, sort: str,
                filters: dict[str, Any], per: int) -> tuple[list[str], list[int]]:
    """The fleet's walk (worker/clients/gis.py): updated_at ascending, the lower bound
    moved to the last updated_at of each full page. Ids read, and what each page cost."""
    index = world.people_index if query is PEOPLE else world.application_index
    ids: list[str] = []
    seen: set[str] = set()
    costs: list[int] = []
    lower, page = None, 1
    while True:
        window = dict(filters, **({"last_interaction": {"from": lower}} if lower else {}))
        before = index.examined
        rows = ask(graphql, world, query, page=page, per=per, sort=sort,
                   filters=window)["data"]
        costs.append(index.examined - before)
        ids += [r["id"] for r in rows if r["id"] not in seen]
        seen.update(r["id"] for r in rows)
        if len(rows) < per:
            return ids, costs
        last = rows[-1]["updated_at"]
        lower, page = (last, 1) if last != lower else (lower, page + 1)


# --- a reference: the whole world filtered and sorted for every page ---------------------
def reference(records: list[Any], keep: Any, sort: str | None, descending: bool,
              low: int | None, high: int | None) -> list[str]:
    found = [r for r in records if keep(r) and (low is None or low <= r.updated_ts)
             and (high is None or r.updated_ts <= high)]
    if sort:
        found.sort(key=lambda r: (getattr(r, sort), r.id), reverse=descending)
    return [str(r.id) for r in found]


def all_pages(graphql: GisGraphql, world: World, query: str, per: int,
              **variables: Any) -> list[str]:
    ids, page = [], 1
    while True:
        listing = ask(graphql, world, query, page=page, per=per, **variables)
        ids += [r["id"] for r in listing["data"]]
        if page >= listing["paging"]["total_pages"]:
            assert len(ids) == listing["paging"]["total_items"]
            return ids
        page += 1


CASES = [  # (query, filters, record test, sort argument, sort attribute, descending)
    (PEOPLE, {"home_committee": HOME}, lambda p: p.home_lc.id == HOME,
     "+updated_at", "updated_ts", False),
    (PEOPLE, {"home_committee": 1500}, lambda p: p.home_lc.parent.id == 1500,
     "-updated_at", "updated_ts", True),
    (PEOPLE, {}, lambda p: True, "created_at", "created_ts", False),
    (PEOPLE, {"status": "open"}, lambda p: p.status == "open", None, None, False),
    (APPS, {"person_home_lc": HOME}, lambda a: a.person.home_lc.id == HOME,
     "ASC_updated_at", "updated_ts", False),
    (APPS, {"opportunity_home_lc": HOME}, lambda a: a.opportunity.home_lc.id == HOME,
     "DESC_updated_at", "updated_ts", True),
    (APPS, {}, lambda a: True, "ASC_updated_at", "updated_ts", False),
    (APPS, {"person_home_mc": 1500, "statuses": ["approved", "applied"]},
     lambda a: a.person.home_lc.parent.id == 1500 and a.status in ("approved", "applied"),
     "ASC_updated_at", "updated_ts", False),
    (APPS, {"opportunity_home_mc": 1500, "person_home_lc": 2001},
     lambda a: a.opportunity.home_lc.parent.id == 1500 and a.person.home_lc.id == 2001,
     "DESC_id", "id", True),
]


def check_every_case(graphql: GisGraphql, world: World, rng: random.Random) -> None:
    for query, filters, keep, sort, attribute, descending in CASES:
        records = world.people if query is PEOPLE else world.applications
        stamps = sorted(r.updated_ts for r in records)
        for _ in range(2):
            low, high = sorted(rng.sample(stamps, 2))
            for bounds in ((None, None), (low, None), (None, high), (low, high)):
                window = {k: iso(v) for k, v in zip(("from", "to"), bounds, strict=True)
                          if v is not None}
                variables = {"sort": sort, "filters": {**filters, "last_interaction": window}}
                for per in (13, 500):
                    got = all_pages(graphql, world, query, per, **variables)
                    want = reference(records, keep, attribute, descending, *bounds)
                    assert got == want, (filters, sort, bounds, per)


def test_pages_equal_a_scan_of_the_whole_world_before_and_after_advance() -> None:
    world, graphql, rng = World(4, 400, 1200, NOW), GisGraphql(), random.Random(4)
    check_every_case(graphql, world, rng)  # builds the indexes
    for share, seed in ((0.3, 1), (0.05, 2), (0.5, 3)):
        world.advance(share, share, seed)  # moves records inside the indexes built
        check_every_case(graphql, world, rng)


def test_a_walk_after_advance_reads_every_record_once_in_order() -> None:
    world, graphql = World(5, 800, 2400, NOW), GisGraphql()
    filters = {"person_home_lc": HOME}
    client_walk(graphql, world, APPS, "ASC_updated_at", filters, 50)
    moved = set(world.advance(0.2, 0.1, 7)["applications_moved"])
    ids, _ = client_walk(graphql, world, APPS, "ASC_updated_at", filters, 50)
    mine = sorted((a for a in world.applications if a.person.home_lc.id == HOME), key=ORDER)
    assert ids == [str(a.id) for a in mine]
    assert moved & set(ids) and set(ids[-len(moved & set(ids)):]) == moved & set(ids)


@pytest.mark.parametrize("query, sort, filters", [
    (PEOPLE, "+updated_at", {"home_committee": HOME}),
    (APPS, "ASC_updated_at", {"person_home_lc": HOME}),
    (APPS, "ASC_updated_at", {"opportunity_home_lc": HOME}),
])
def test_a_page_looks_at_what_it_returns_whatever_the_world_size(query, sort,
                                                                 filters) -> None:
    per = 100
    for people in (500, 5000):
        world, graphql = World(1, people, 3 * people, NOW), GisGraphql()
        index = world.people_index if query is PEOPLE else world.application_index
        ids, costs = client_walk(graphql, world, query, sort, filters, per)
        assert len(ids) > 4 * per
        # The first page builds the group and its order (once); every other page looks
        # at the records it returns and at no other.
        assert costs[0] <= len(index.records) + len(ids) + per
        assert all(cost <= per for cost in costs[1:]), costs
        again, costs = client_walk(graphql, world, query, sort, filters, per)
        assert again == ids and all(cost <= per for cost in costs)


def test_ordered_move_puts_changed_records_back_in_order() -> None:
    class Rec:
        def __init__(self, id: int, ts: int) -> None:
            self.id, self.updated_ts = id, ts

    rng = random.Random(3)
    records = [Rec(i, rng.randrange(50)) for i in range(400)]
    ordered = Ordered(records)
    for _ in range(20):
        changed = rng.sample(records, rng.randrange(1, 60))
        for record in changed:
            record.updated_ts = rng.randrange(-10, 70)
        ordered.move(changed)
        assert ordered.records == sorted(records, key=ORDER)
        assert list(ordered.stamps) == [r.updated_ts for r in ordered.records]


# --- compiled plans --------------------------------------------------------------------
FLEET_FIELDS = """id email first_name last_name full_name dob interviewed profile_photo status
  cv_url nps_score permissions { can_apply } home_lc { id name parent { id name } }
  created_at updated_at"""
SAME_ANSWERS = [
    (f"query($f: ApplicationFilter) {{ allOpportunityApplication(per_page: 500, "
     f"sort: \"ASC_updated_at\", filters: $f) {{ data {{ id status current_status "
     f"created_at updated_at date_matched date_approved date_realized "
     f"experience_start_date experience_end_date matched_or_rejected_at "
     f"person {{ {FLEET_FIELDS} }} opportunity {{ id title programme {{ id short_name "
     f"short_name_display }} home_lc {{ id full_name tag }} home_mc {{ id }} }} }} "
     f"paging {{ total_items total_pages current_page }} }} }}",
     {"f": {"person_home_lc": HOME}}),
    (f"{{ allPeople(per_page: 300, sort: \"-updated_at\") {{ data {{ {FLEET_FIELDS} "
     f"home_mc {{ id full_name }} last_active_at }} }} }}", None),
    ("query($id: ID!) { person(id: $id) { id full_name home_mc { name } } "
     "other: getApplication(id: \"8000011\") { id person { id } } }", {"id": "3000007"}),
    ('{ person(id: "1") { id } getApplication(id: "x") { id } currentPerson { email } }',
     None),
    ("query Named { allPeople(page: 2, per_page: 3) { paging { total_items } "
     "data { id } } }", None),
]
GRAPHQL_CORE_ONLY = [
    "{ allPeople(per_page: 2) { ...F } } fragment F on PersonList { data { id } }",
    "{ allPeople(per_page: 2) { data { id @include(if: true) } } }",
    "{ allPeople(per_page: 2) { data { id id } } }",
    "{ allPeople(per_page: 2) { __typename data { id } } }",
    "query A { currentPerson { id } } query B { currentPerson { email } }",
]


@pytest.fixture(scope="module")
def small_world() -> World:
    return World(2, 300, 900, NOW)


def graphql_core(graphql: GisGraphql, world: World, query: str,
                 variables: dict[str, Any] | None, operation: str | None = None) -> Any:
    """graphql-core's answer, shaped as the simulator sends it (no `data` at all when
    the request itself is wrong)."""
    prepared = graphql.prepared(query)
    result = execute_sync(graphql.schema, prepared.document, context_value=world,
                          variable_values=variables, operation_name=operation)
    if result.errors and result.data is None:
        return {"errors": [e.formatted for e in result.errors]}
    return result.formatted


@pytest.mark.parametrize("query, variables", SAME_ANSWERS)
def test_plans_answer_exactly_as_graphql_core(small_world, query, variables) -> None:
    graphql = GisGraphql()
    assert graphql.prepared(query).plan(None) is not None
    answer = graphql.answer(query, variables, None, small_world)
    assert answer.body == graphql_core(graphql, small_world, query, variables)
    assert not answer.rejected


@pytest.mark.parametrize("query", GRAPHQL_CORE_ONLY)
def test_other_documents_are_answered_by_graphql_core(small_world, query) -> None:
    graphql = GisGraphql()
    assert graphql.prepared(query).plan("A" if "query A" in query else None) is None
    operation = "A" if "query A" in query else None
    answer = graphql.answer(query, None, operation, small_world)
    assert answer.body == graphql_core(graphql, small_world, query, None, operation)


@pytest.mark.parametrize("variables", [
    {"page": 1, "per": 501},  # a resolver error
    {"page": 0, "per": 5},
    {"page": "one", "per": 5},  # a variable that does not coerce
    {"page": 1, "per": 5, "sort": "sideways"},
    {"page": 1, "per": 5, "filters": {"last_interaction": {"from": "yesterday"}}},
])
def test_errors_read_as_graphql_core_writes_them(small_world, variables) -> None:
    graphql = GisGraphql()
    answer = graphql.answer(APPS, variables, None, small_world)
    assert answer.body == graphql_core(graphql, small_world, APPS, variables)
    assert answer.body["errors"]


# --- memory ------------------------------------------------------------------------------
def test_records_stay_small() -> None:
    """About half a kilobyte a GIS record and under a kilobyte a Segment profile (see
    bench/sandbox_gis_pages.py for the process's RSS): slotted records, values derived
    from ids, histories as tuples, profiles marshalled."""
    import gc
    import tracemalloc

    from sandbox.worlds.segment import ProfileWorld

    gc.collect()
    tracemalloc.start()
    try:
        world = World(1, 2000, 6000, NOW)
        for key in (("home_committee", HOME), None):
            world.people_index.ordered(key)
        for key in (("person_home_lc", HOME), ("opportunity_home_lc", HOME), None):
            world.application_index.ordered(key)
        gis = tracemalloc.get_traced_memory()[0]
        profiles = ProfileWorld(1, 2000)
        both = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert gis / 8000 < 600, gis / 8000  # ~450 bytes, indexes included
    assert (both - gis) / 2000 < 1100, (both - gis) / 2000  # ~850 bytes
    assert len(world.people) == len(profiles.profiles) == 2000
