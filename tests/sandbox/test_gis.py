"""The GIS simulator over HTTP: GraphQL, auth, paging walks, filters, refresh, the world."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox import credentials
from sandbox.worlds.gis import World
from sandbox.worlds.gis_records import STEP

SHARED_SCHEMA = Path("/work/shared/gis/schema.graphql")
PACKAGED_SCHEMA = Path(__file__).resolve().parents[2] / "sandbox" / "schema.graphql"
TOKEN = credentials.GIS_ACCESS_TOKEN
HOME = credentials.GIS_HOME_LC_ID

PEOPLE = """query($page: Int, $per: Int, $sort: String, $filters: PeopleFilter) {
  allPeople(page: $page, per_page: $per, sort: $sort, filters: $filters) {
    data { id email updated_at home_lc { id name parent { name } } }
    paging { total_items total_pages current_page }
  }
}"""
APPS = """query($page: Int, $per: Int, $sort: String, $filters: ApplicationFilter) {
  allOpportunityApplication(page: $page, per_page: $per, sort: $sort, filters: $filters) {
    data { id status updated_at date_matched person { id home_lc { id } }
           opportunity { programme { id short_name short_name_display } home_lc { id } } }
    paging { total_items total_pages current_page }
  }
}"""


def gql(sandbox, query: str, variables: dict[str, Any] | None = None,
        token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": token} if token else {}
    return requests.post(f"{sandbox.url}/gis/graphql",
                         json={"query": query, "variables": variables or {}},
                         headers=headers, timeout=10, **kwargs)


def data(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def walk(sandbox, query: str, field: str, per_page: int, **variables: Any) -> list[dict]:
    """Every item of a paged list, checking the paging block on the way."""
    items, page = [], 1
    while True:
        result = data(gql(sandbox, query, {"page": page, "per": per_page, **variables}))[field]
        paging = result["paging"]
        assert paging["current_page"] == page
        assert len(result["data"]) <= per_page
        items += result["data"]
        if page >= paging["total_pages"]:
            assert len(items) == paging["total_items"]
            return items
        page += 1


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- schema, auth --------------------------------------------------------------------------
def test_packaged_schema_is_the_shared_one() -> None:
    if not SHARED_SCHEMA.exists():
        pytest.skip("the shared schema is not on this machine")
    assert PACKAGED_SCHEMA.read_text() == SHARED_SCHEMA.read_text()


def test_token_in_header_or_query_and_wrong_token_gets_401(sandbox_env) -> None:
    sb = sandbox_env
    query = "{ allPeople(per_page: 1) { paging { total_items } } }"
    assert data(gql(sb, query))["allPeople"]["paging"]["total_items"] == 200
    by_query = requests.post(f"{sb.url}/gis/graphql", params={"access_token": TOKEN},
                             json={"query": query}, timeout=10)
    assert data(by_query)["allPeople"]["paging"]["total_items"] == 200

    for response in (gql(sb, query, token="wrong"), gql(sb, query, token=None),
                     requests.post(f"{sb.url}/gis/graphql", params={"access_token": "nope"},
                                   json={"query": query}, timeout=10)):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        assert "invalid_token" in response.headers["WWW-Authenticate"]
    assert sb.admin.stats()["rejected"]["gis"]["auth"] == 3


def test_invalid_queries_get_graphql_errors_with_http_200(sandbox_env) -> None:
    sb = sandbox_env
    unknown_field = gql(sb, "{ allPeople { data { id shoe_size } } }")
    assert unknown_field.status_code == 200
    errors = unknown_field.json()["errors"]
    assert "shoe_size" in errors[0]["message"] and errors[0]["locations"]
    syntax = gql(sb, "{ allPeople { data { id ")
    assert syntax.status_code == 200 and "Syntax Error" in syntax.json()["errors"][0]["message"]
    wrong_type = gql(sb, '{ allPeople(page: "two") { data { id } } }')
    assert wrong_type.status_code == 200 and wrong_type.json()["errors"]
    too_big = gql(sb, "{ allPeople(per_page: 501) { data { id } } }")
    assert too_big.status_code == 200
    assert too_big.json()["data"] == {"allPeople": None}
    assert "per_page" in too_big.json()["errors"][0]["message"]
    assert sb.admin.stats()["rejected"]["gis"]["schema"] == 3


def test_token_expiry_and_refresh(sandbox_env) -> None:
    sb = sandbox_env
    query = "{ currentPerson { id } }"
    assert data(gql(sb, query))["currentPerson"]["id"]
    sb.admin.gis_expire_token()
    expired = gql(sb, query)
    assert expired.status_code == 401 and "expired" in expired.json()["error_description"]

    form = {"grant_type": "refresh_token", "refresh_token": credentials.GIS_REFRESH_TOKEN,
            "client_id": credentials.GIS_CLIENT_ID,
            "client_secret": credentials.GIS_CLIENT_SECRET}
    url = sb.env()["GIS_AUTH_URL"]
    bad_client = requests.post(url, data={**form, "client_secret": "nope"}, timeout=10)
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    bad_grant = requests.post(url, data={**form, "refresh_token": "nope"}, timeout=10)
    assert bad_grant.status_code == 400 and bad_grant.json()["error"] == "invalid_grant"

    fresh = requests.post(url, data=form, timeout=10)
    assert fresh.status_code == 200
    body = fresh.json()
    assert body["access_token"] != TOKEN and body["expires_in"] > 0
    assert body["refresh_token"] == credentials.GIS_REFRESH_TOKEN
    assert data(gql(sb, query, token=body["access_token"]))["currentPerson"]["id"]
    assert gql(sb, query).status_code == 401  # the expired one stays expired
    sb.admin.reset()
    assert gql(sb, query).status_code == 200


# --- paging, filters, sort -----------------------------------------------------------------
def test_people_paging_walk_and_home_committee_filter(sandbox_env) -> None:
    sb = sandbox_env
    truth = sb.admin.world_people()
    home = {p["id"] for p in truth if p["home_lc"]["id"] == str(HOME)}
    assert 0 < len(home) < len(truth)  # people of other LCs exist too
    walked = walk(sb, PEOPLE, "allPeople", 37, filters={"home_committee": HOME})
    assert [p["id"] for p in walked] and len({p["id"] for p in walked}) == len(walked)
    assert {p["id"] for p in walked} == home
    assert all(p["home_lc"] == {"id": str(HOME), "name": "Sandbox LC",
                                "parent": {"name": "Sandboxia"}} for p in walked)
    everyone = walk(sb, PEOPLE, "allPeople", 500)
    assert len(everyone) == len(truth)
    beyond = data(gql(sb, PEOPLE, {"page": 99, "per": 50}))["allPeople"]
    assert beyond["data"] == [] and beyond["paging"]["current_page"] == 99


def test_people_sort_and_last_interaction_filter(sandbox_env) -> None:
    sb = sandbox_env
    ascending = walk(sb, PEOPLE, "allPeople", 100, sort="+updated_at")
    stamps = [p["updated_at"] for p in ascending]
    assert stamps == sorted(stamps)
    descending = walk(sb, PEOPLE, "allPeople", 100, sort="-updated_at")
    assert [p["updated_at"] for p in descending] == sorted(stamps, reverse=True)

    low, high = stamps[len(stamps) // 4], stamps[len(stamps) // 2]
    window = walk(sb, PEOPLE, "allPeople", 50, sort="+updated_at",
                  filters={"last_interaction": {"from": low, "to": high}})
    expected = [p["id"] for p in ascending if low <= p["updated_at"] <= high]
    assert [p["id"] for p in window] == expected and expected


def test_application_walks_by_person_and_opportunity_home_lc(sandbox_env) -> None:
    sb = sandbox_env
    truth = sb.admin.world_applications()
    outgoing = walk(sb, APPS, "allOpportunityApplication", 64,
                    filters={"person_home_lc": HOME}, sort="ASC_updated_at")
    assert {a["id"] for a in outgoing} == {a["id"] for a in truth
                                           if a["person_home_lc"] == str(HOME)}
    assert all(a["person"]["home_lc"]["id"] == str(HOME) for a in outgoing)
    stamps = [a["updated_at"] for a in outgoing]
    assert stamps == sorted(stamps)

    incoming = walk(sb, APPS, "allOpportunityApplication", 500,
                    filters={"opportunity_home_lc": HOME}, sort="DESC_updated_at")
    assert {a["id"] for a in incoming} == {a["id"] for a in truth
                                           if a["opportunity"]["home_lc"]["id"] == str(HOME)}
    assert incoming and all(a["person"]["home_lc"]["id"] != str(HOME) for a in incoming)
    stamps = [a["updated_at"] for a in incoming]
    assert stamps == sorted(stamps, reverse=True)


def test_application_filters(sandbox_env) -> None:
    sb = sandbox_env
    truth = sb.admin.world_applications()
    some = truth[5]
    by_person = walk(sb, APPS, "allOpportunityApplication", 100,
                     filters={"person_id": int(some["person_id"])})
    assert {a["id"] for a in by_person} == {a["id"] for a in truth
                                            if a["person_id"] == some["person_id"]}
    statuses = walk(sb, APPS, "allOpportunityApplication", 100,
                    filters={"statuses": ["approved", "realized"]})
    assert {a["id"] for a in statuses} == {a["id"] for a in truth
                                           if a["status"] in ("approved", "realized")}
    gv = walk(sb, APPS, "allOpportunityApplication", 100, filters={"programmes": [7, 1]})
    assert gv and {a["opportunity"]["programme"]["short_name_display"] for a in gv} == {"GV"}

    stamps = sorted(a["updated_at"] for a in truth)
    low, high = stamps[100], stamps[300]
    window = walk(sb, APPS, "allOpportunityApplication", 100,
                  filters={"last_interaction": {"from": low, "to": high},
                           "person_home_lc": HOME})
    assert {a["id"] for a in window} == {
        a["id"] for a in truth
        if low <= a["updated_at"] <= high and a["person_home_lc"] == str(HOME)}
    bad_sort = gql(sb, APPS, {"sort": "sideways"})
    assert bad_sort.json()["errors"]


def test_single_lookups(sandbox_env) -> None:
    sb = sandbox_env
    app = sb.admin.world_applications()[3]
    got = data(gql(sb, "query($id: ID!) { getApplication(id: $id) { id status person { id } } }",
                   {"id": app["id"]}))["getApplication"]
    assert got == {"id": app["id"], "status": app["status"], "person": {"id": app["person_id"]}}
    query = "query($id: ID!) { person(id: $id) { id full_name permissions { can_apply } } }"
    person = data(gql(sb, query, {"id": app["person_id"]}))["person"]
    assert person["id"] == app["person_id"] and person["full_name"]
    assert data(gql(sb, '{ person(id: "1") { id } }')) == {"person": None}


# --- the world -----------------------------------------------------------------------------
NOW = "2026-06-01T12:00:00+00:00"


def test_world_is_deterministic_for_seed_sizes_and_now(sandbox_env) -> None:
    sb = sandbox_env
    world = {"seed": 5, "people": 40, "applications": 90, "profiles": 10, "now": NOW}
    sb.admin.reset(world)
    first = (sb.admin.world_people(), sb.admin.world_applications())
    sb.admin.reset(world)
    assert (sb.admin.world_people(), sb.admin.world_applications()) == first
    assert len(first[0]) == 40 and len(first[1]) == 90
    sb.admin.reset({**world, "seed": 6})
    assert sb.admin.world_applications() != first[1]


def test_world_histories_follow_the_ladder() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    world = World(3, 300, 2000, now)
    fields = {2: "date_matched", 3: "date_approved", 4: "date_realized",
              5: "experience_end_date"}
    for app in (a.to_json() for a in world.applications):
        history = app["history"]
        ats = [h["at"] for h in history]
        assert ats == sorted(ats) and history[0]["status"] == "open"
        assert app["created_at"] == ats[0] and app["updated_at"] == ats[-1]
        assert ts(app["updated_at"]) <= now
        for entry in history:
            step = STEP.get(entry["status"], 0)
            if step >= 2:  # each step's date field is the time of (the last) entry into it
                last = [h["at"] for h in history if STEP.get(h["status"]) == step][-1]
                assert app[fields[step]] == last, (app["id"], step)
        if STEP.get(app["status"], 0) >= 4:
            assert app["experience_start_date"] == app["date_realized"]

    assert all(a.person.created_ts < a.created_ts for a in world.applications)
    apps = [a.to_json() for a in world.applications]
    recent = sum(now - ts(a["updated_at"]) < timedelta(hours=72) for a in apps)
    assert 0.02 < recent / len(apps) < 0.09  # "about 5%" within the last 72 h
    statuses = {a["status"] for a in apps}
    assert {"withdrawn", "rejected", "break_approved", "completed", "open"} <= statuses
    assert {a["opportunity"]["programme"]["short_name"] for a in apps} >= {
        "GV", "GTa", "GTe", "GCDP", "GIP", "TMP", "TLP"}
    # the malformed records a client must survive
    assert any(s not in STEP and s not in ("break_approved", "approval_broken",
                                           "realization_broken") for s in statuses)
    assert any(a["opportunity"]["programme"]["id"] == "99" for a in apps)
    people = [p.to_json() for p in world.people]
    assert any(p["email"] is None for p in people)
    assert any(p["dob"] in ("1999-02-30", "0000-00-00", "31/12/1998", "not a date")
               for p in people)


def test_advance_moves_applications_and_edits_people(sandbox_env) -> None:
    sb = sandbox_env
    before = {a["id"]: a for a in sb.admin.world_applications()}
    mark = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    time.sleep(0.01)
    result = sb.admin.advance(share=0.1, people_share=0.05, seed=2)
    moved = set(result["applications_moved"])
    assert len(moved) == 60 and len(result["people_edited"]) == 10
    after = {a["id"]: a for a in sb.admin.world_applications()}
    changed = {i for i in after if after[i] != before[i]}
    assert changed == moved
    directions = {"forward": 0, "other": 0}
    for move in result["moves"]:
        old, new = before[move["id"]], after[move["id"]]
        assert new["status"] == move["to"] != old["status"] or len(new["history"]) > len(
            old["history"])
        assert ts(new["updated_at"]) >= mark
        if STEP.get(move["to"], 0) > STEP.get(move["from"], 0) > 0:
            directions["forward"] += 1
            assert new["history"][-1]["at"] == new["updated_at"]
        else:
            directions["other"] += 1
    assert directions["forward"] > directions["other"] > 0  # mostly forward, some not

    since = mark.strftime("%Y-%m-%dT%H:%M:%SZ")
    scanned = walk(sb, APPS, "allOpportunityApplication", 500,
                   filters={"last_interaction": {"from": since}})
    assert {a["id"] for a in scanned} == moved
    people = walk(sb, PEOPLE, "allPeople", 500, filters={"last_interaction": {"from": since}})
    assert {p["id"] for p in people} == set(result["people_edited"])


def test_admin_edits_a_person_who_then_reads_changed_by_id_and_in_lists(sandbox_env) -> None:
    sb = sandbox_env
    person = next(p for p in sb.admin.world_people() if p["home_lc"]["id"] != HOME)
    before = time.time() - 1
    edited = sb.admin.edit_person(person["id"], last_name="Okafor-Edited", nps_score=3)
    assert edited["last_name"] == "Okafor-Edited" and edited["nps_score"] == 3
    assert edited["full_name"] == f"{person['first_name']} Okafor-Edited"
    assert ts(edited["updated_at"]).timestamp() >= int(before)
    # By id in one call of aliased person(id) fields (the fleet's refresh), an unknown
    # id answering null.
    query = ('query($a: ID!, $b: ID!) { p0: person(id: $a) { ...P } p1: person(id: $b) '
             '{ ...P } } fragment P on Person { id last_name nps_score updated_at }')
    found = data(gql(sb, query, {"a": person["id"], "b": "999999999"}))
    assert found["p0"]["last_name"] == "Okafor-Edited" and found["p1"] is None
    # The person's applications did not move (as in GIS).
    apps = [a for a in sb.admin.world_applications() if a["person_id"] == person["id"]]
    assert all(ts(a["updated_at"]).timestamp() < before for a in apps)
    for body, status in (({"email": "x@y.z"}, 400), ({"nps_score": True}, 400),
                         ({}, 400)):
        response = requests.post(f"{sb.url}/admin/world/people/{person['id']}", json=body,
                                 timeout=10)
        assert response.status_code == status, response.text
    assert requests.post(f"{sb.url}/admin/world/people/999999999", json={"status": "open"},
                         timeout=10).status_code == 404
