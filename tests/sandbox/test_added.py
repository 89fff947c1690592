"""Records added by hand (POST /admin/world/people|applications|profiles): served as given
and found by the list and single-record queries exactly like generated ones, read here
with the fleet's own clients (their walks, paging and encoding)."""

from __future__ import annotations

import pytest
import requests

from sandbox.worlds.added import ADDED_BASE
from sandbox.worlds.gis import World
from tests.support.clock import RUN_START, ago, iso
from worker.clients.gis import GisClient
from worker.clients.segment import SegmentClient
from worker.settings import get_settings

HOME = 1340
SMALL = {"seed": 5, "people": 30, "applications": 60, "profiles": 25}


def person(pid: str, hours: float, **fields):
    return {"id": pid, "email": f"p{len(pid)}@example.org", "first_name": "Ann",
            "last_name": "Lee", "home_lc": {"id": str(HOME), "name": "Sandbox LC",
                                            "parent": {"id": "1500", "name": "Sandboxia"}},
            "created_at": iso(ago(days=30)), "updated_at": iso(ago(hours=hours)), **fields}


def application(aid: str, hours: float, person_record, **fields):
    return {"id": aid, "status": "applied", "person": person_record,
            "opportunity": {"id": "900003", "programme": {"id": "7", "short_name": "GV",
                                                          "short_name_display": "GV"},
                            "home_lc": {"id": "2001"}},
            "created_at": iso(ago(hours=hours + 1)), "updated_at": iso(ago(hours=hours)),
            **fields}


@pytest.fixture
def gis(sandbox_env, monkeypatch):
    sandbox_env.admin.reset(SMALL)
    monkeypatch.setenv("GIS_PAGE_SIZE", "7")  # several pages: the moving lower bound
    get_settings.cache_clear()
    return GisClient(get_settings())


def test_added_people_are_walked_found_and_served_as_given(sandbox_env, gis):
    admin = sandbox_env.admin
    generated = admin.world_people()
    twin = next(p for p in generated if p["home_lc"]["id"] == str(HOME))
    odd = person("a/b+c%20 d", 2, first_name=42, nps_score="7", dob="1999-02-30",
                 email=None, last_name="\u202eשלום 👩‍👩‍👧 e\u0301\x07")
    older = person("p-dup", 5, first_name="Old")
    newer = person("p-dup", 1, first_name="New")
    newer_twin = {**twin, "updated_at": iso(ago(minutes=30)), "first_name": "Renamed"}
    away = person("elsewhere", 1, home_lc={"id": "2001", "name": "Lisboa"})
    orphan = person("no-lc", 1, home_lc=None, home_committee=HOME)
    assert admin.add_people([odd, older, newer, newer_twin, away, orphan])["added"] == 6

    walked = list(gis.people(HOME))
    ids = [p["id"] for p in walked]
    home = [p for p in generated if p["home_lc"]["id"] == str(HOME)]
    assert len(walked) == len(home) + 5  # every added one of the LC, each duplicate too
    assert ids.count("p-dup") == 2 and ids.count(twin["id"]) == 2
    assert "elsewhere" not in ids and "no-lc" in ids
    # Oldest change first, across generated and added records alike.
    assert [p["updated_at"] for p in walked] == sorted(p["updated_at"] for p in walked)
    served = next(p for p in walked if p["id"] == "a/b+c%20 d")
    # The schema's scalar types: a number in a String field is its text, "7" an Int.
    assert (served["first_name"], served["nps_score"], served["dob"], served["email"]) == (
        "42", 7, "1999-02-30", None)
    assert served["last_name"] == odd["last_name"]
    assert next(p for p in walked if p["id"] == "no-lc")["home_lc"] is None

    assert gis.person("a/b+c%20 d")["first_name"] == "42"
    assert gis.person("p-dup")["first_name"] == "New"  # the one added last
    assert gis.person(twin["id"])["first_name"] == "Renamed"
    assert gis.person("nobody") is None
    since = list(gis.people(HOME, since=iso(ago(hours=3))))
    assert {"p-dup", "a/b+c%20 d", "no-lc", twin["id"]} <= {p["id"] for p in since}
    assert [p["first_name"] for p in since if p["id"] == "p-dup"] == ["New"]

    world = admin.world_people()
    assert world[:len(generated)] == generated and world[len(generated):] == [
        odd, older, newer, newer_twin, away, orphan]


def test_added_applications_land_in_every_group_of_their_walks(sandbox_env, gis):
    admin = sandbox_env.admin
    owner = person("a/b", 3, dob="not a date")
    admin.add_people([owner])
    apps = [
        application("8/0+0%0 1", 2, owner),  # outgoing: the person's LC is 1340
        application("no-person", 1, None, person_home_lc=HOME),
        application("unknown", 1, owner, status="on_hold_legacy"),
        application("xpx", 1, owner, opportunity={
            "id": "1", "programme": {"id": "99", "short_name": "XPX"},
            "home_lc": {"id": "2001"}}),
        application("incoming", 1, {**owner, "home_lc": {"id": "2001", "name": "Lisboa"}},
                    opportunity={"id": "900000", "programme": {"id": "8", "short_name": "GTa"},
                                 "home_lc": {"id": str(HOME)}}),
    ]
    admin.add_applications(apps)
    outgoing = [a["id"] for a in gis.applications(person_home_lc=HOME)]
    incoming = [a["id"] for a in gis.applications(opportunity_home_lc=HOME)]
    added = {"8/0+0%0 1", "no-person", "unknown", "xpx"}
    assert added <= set(outgoing) and "incoming" not in outgoing
    assert "incoming" in incoming and not added & set(incoming)
    served = gis.application("no-person")
    assert served["person"] is None and served["status"] == "applied"
    assert gis.application("8/0+0%0 1")["person"]["dob"] == "not a date"
    # The other filters and sorts read added records too.
    by_status = gis.query(
        "query($f: ApplicationFilter) { allOpportunityApplication(per_page: 500, "
        "sort: \"DESC_created_at\", filters: $f) { data { id } } }",
        {"f": {"person_home_lc": HOME, "statuses": ["on_hold_legacy"]}})
    found = [a["id"] for a in by_status["allOpportunityApplication"]["data"]]
    assert "unknown" in found and "8/0+0%0 1" not in found
    by_programme = gis.query(
        "query($f: ApplicationFilter) { allOpportunityApplication(per_page: 500, "
        "filters: $f) { data { id } } }", {"f": {"programmes": [99]}})
    assert [a["id"] for a in by_programme["allOpportunityApplication"]["data"]][-1] == "xpx"
    assert {a["id"] for a in admin.world_applications()} >= added | {"incoming"}

    # advance() moves generated records only; a reset forgets the added ones.
    admin.advance(share=0.5, people_share=0.5, seed=3)
    assert gis.application("unknown")["status"] == "on_hold_legacy"
    admin.reset(SMALL)
    assert gis.application("no-person") is None
    assert "a/b" not in {p["id"] for p in admin.world_people()}


@pytest.mark.parametrize(("record", "problem"), [
    ({"home_lc": "Sandbox LC"}, "people[1].home_lc: str where the schema has Office"),
    ({"interviewed": "yes"}, "people[1].interviewed: Boolean cannot represent"),
    ({"nps_score": "nine"}, "people[1].nps_score: Int cannot represent"),
    ({"id": None}, "people[1].id: null where the schema requires a value"),
    ({"updated_at": "yesterday"}, "updated_at must be an ISO-8601 time"),
])
def test_what_the_schema_cannot_serve_is_refused_and_nothing_is_added(
        sandbox_env, record, problem):
    admin = sandbox_env.admin
    before = len(admin.world_people())
    with pytest.raises(requests.HTTPError) as refused:
        admin.add_people([person("fine", 1), person("bad", 1, **record)])
    assert refused.value.response.status_code == 400
    assert problem in refused.value.response.json()["error"]
    assert len(admin.world_people()) == before


def test_added_records_sort_after_the_generated_ones_in_id_order():
    world = World(5, 30, 60, RUN_START)
    world.add([person("1", 1), person("zz", 1)], [])
    assert [p.id for p in world.people[-2:]] == [ADDED_BASE, ADDED_BASE + 1]
    assert world.find_person("1").given_id == "1" and world.find_person("zz") is not None


# --- Segment -----------------------------------------------------------------------------
@pytest.fixture
def segment(sandbox_env):
    sandbox_env.admin.reset(SMALL)
    return SegmentClient(get_settings())


def test_added_profiles_are_listed_paged_and_served_as_given(sandbox_env, segment,
                                                              monkeypatch):
    admin = sandbox_env.admin
    traits = {f"t{n:02d}": value for n, value in enumerate(
        [None, True, False, 0, -7, 2**53, 3.25, "", "x" * 10_000, [], {}, [1, "a", None],
         {"a": {"b": [None, {}]}}, "\u202e\x00\x1f", "👩‍👩‍👧e\u0301"])}
    rows = [{"id": "u/1+2%3 4", "type": "user_id"}, None, {"id": 5, "type": "email"}, []]
    odd = {"segment_id": "use_odd+id% x", "traits": traits, "external_ids": rows}
    first = {"segment_id": "use_dup", "traits": {"email": "old@example.org"},
             "external_ids": [{"id": "u-dup", "type": "user_id"}]}
    again = {**first, "traits": {"email": "new@example.org"}}
    assert admin.add_profiles([odd, first, again])["count"] == SMALL["profiles"] + 3

    listed = [sid for page, _ in segment.walk_profile_ids() for sid in page]
    assert len(listed) == SMALL["profiles"] + 3
    assert listed[-3:] == ["use_odd+id% x", "use_dup", "use_dup"]  # the same id twice
    monkeypatch.setattr(segment, "traits_limit", 4)  # several pages of traits
    assert segment.traits("use_odd+id% x") == traits
    assert segment.external_ids("use_odd+id% x") == rows
    assert segment.traits("use_dup") == {"email": "new@example.org"}  # the one added last
    session = requests.Session()
    session.auth = (sandbox_env.env()["SEGMENT_ACCESS_TOKEN"], "")
    by_user_id = session.get(f"{segment.api.base_url}{segment.base}/user_id:u-dup/traits",
                             timeout=10)
    assert by_user_id.json()["traits"] == {"email": "old@example.org"}  # the first wins

    world = admin.world_profiles()
    assert world[-3:] == [odd, first, again]
    admin.reset(SMALL)  # same seed and size: the generated profiles, without the added
    assert len(admin.world_profiles()) == SMALL["profiles"]


@pytest.mark.parametrize("bad", [{"segment_id": ""}, {"segment_id": "use_x", "traits": []},
                                 {"segment_id": "use_x", "external_ids": {}}, "use_x"])
def test_a_profile_the_api_could_not_serve_is_refused(sandbox_env, bad):
    with pytest.raises(requests.HTTPError) as refused:
        sandbox_env.admin.add_profiles([bad])
    assert refused.value.response.status_code == 400
