"""The Segment Profile API simulator, over HTTP the way the fleet's client talks to it."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote

import pytest
import requests

from sandbox import credentials
from sandbox.worlds.segment import ProfileWorld, generate_profiles

AUTH = (credentials.SEGMENT_ACCESS_TOKEN, "")
BASE62 = set(string.digits + string.ascii_letters)


def base_url(sandbox, space: str = credentials.SEGMENT_SPACE_ID) -> str:
    return f"{sandbox.url}/segment/v1/spaces/{space}/collections/users/profiles"


def walk(session: requests.Session, url: str, params: dict[str, Any], key: str) -> list[Any]:
    """Follow `cursor.next` while `has_more`; return every page's `key` value."""
    pages, cursor = [], None
    for _ in range(1000):
        query = dict(params, **({"next": cursor} if cursor else {}))
        response = session.get(url, params=query, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[key])
        assert body["cursor"]["limit"] == params.get("limit", 10)
        if not body["cursor"]["has_more"]:
            assert body["cursor"]["next"] == ""
            return pages
        cursor = body["cursor"]["next"]
    raise AssertionError("the cursor never ended")


@pytest.fixture
def seg(sandbox_env) -> requests.Session:
    session = requests.Session()
    session.auth = AUTH
    return session


@pytest.fixture
def world(sandbox_env) -> list[dict[str, Any]]:
    return sandbox_env.admin.world_profiles()


# --- the world -------------------------------------------------------------------------
def test_profiles_are_deterministic_and_messy() -> None:
    first, again = generate_profiles(7, 2000), generate_profiles(7, 2000)
    assert [p.to_json() for p in first] == [p.to_json() for p in again]
    assert [p.to_json() for p in generate_profiles(7, 50)] == [p.to_json() for p in first[:50]]
    assert generate_profiles(8, 1)[0].segment_id != first[0].segment_id
    assert all(p.segment_id.startswith("use_") and len(p.segment_id) == 31
               and set(p.segment_id[4:]) <= BASE62 for p in first)
    assert len({p.segment_id for p in first}) == 2000

    def share(test) -> float:
        return sum(1 for p in first if test(p)) / len(first)

    no_user_id = share(lambda p: all(e["type"] != "user_id" for e in p.external_ids))
    assert 0.02 < no_user_id < 0.09
    assert share(lambda p: len(p.traits) > 10) > 0.1
    assert share(lambda p: isinstance(p.traits.get("address"), dict)) > 0.1
    assert share(lambda p: "city" in p.traits) > 0.05
    assert share(lambda p: p.traits.get("birthdate") in ("1990-13-45", "31/12/1990")) > 0
    assert share(lambda p: p.traits.get("email") == "not-an-email") > 0
    assert share(lambda p: len(str(p.traits.get("description", ""))) > 1000) > 0.01
    assert share(lambda p: isinstance(p.traits.get("metadata"), dict)) > 0.1
    names = " ".join(str(p.traits.get("first_name", "")) + str(p.traits.get("last_name", ""))
                     for p in first)
    assert "Zoë" in names and "Łukasz" in names and "東京" in names
    assert share(lambda p: len(p.external_ids) > 10) > 0


def test_lookup_by_any_external_id() -> None:
    world = ProfileWorld(3, 100)
    profile = next(p for p in world.profiles
                   if any(e["type"] == "email" for e in p.external_ids))
    email = next(e["id"] for e in profile.external_ids if e["type"] == "email")
    assert world.find("email", email.upper()) is profile
    assert world.find("segment_id", profile.segment_id) is profile
    assert world.find("segment_id", profile.segment_id.lower()) is None  # ids are exact


# --- auth and space ----------------------------------------------------------------------
@pytest.mark.parametrize("auth", [None, ("wrong-token", ""),
                                  ("", credentials.SEGMENT_ACCESS_TOKEN)])
def test_wrong_credentials_get_401(sandbox_env, auth) -> None:
    response = requests.get(base_url(sandbox_env), auth=auth, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_error"
    assert sandbox_env.admin.stats()["rejected"]["segment"]["auth"] == 1


def test_other_space_is_not_found(seg, sandbox_env) -> None:
    response = seg.get(base_url(sandbox_env, "spa_other"), timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- paging ------------------------------------------------------------------------------
def test_profile_list_cursor_walk_returns_every_id_once(seg, sandbox_env, world) -> None:
    pages = walk(seg, base_url(sandbox_env), {"limit": 100}, "data")
    ids = [item["segment_id"] for page in pages for item in page]
    assert len(pages) == 3  # 300 profiles
    assert ids == [p["segment_id"] for p in world]
    assert len(set(ids)) == len(ids)
    listed = sandbox_env.admin.requests(api="segment")
    assert [r["query"].get("next", "0") for r in listed] == ["0", "100", "200"]


def test_default_list_page_is_10_and_limit_is_bounded(seg, sandbox_env) -> None:
    body = seg.get(base_url(sandbox_env), timeout=10).json()
    assert len(body["data"]) == 10 and body["cursor"]["next"] == "10"
    for bad in ("101", "0", "abc"):
        response = seg.get(base_url(sandbox_env), params={"limit": bad}, timeout=10)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request_error"


def test_traits_cursor_walks_past_the_first_page(seg, sandbox_env, world) -> None:
    profile = max(world, key=lambda p: len(p["traits"]))
    assert len(profile["traits"]) > 25
    url = f"{base_url(sandbox_env)}/segment_id:{profile['segment_id']}/traits"
    pages = walk(seg, url, {}, "traits")
    assert len(pages) == -(-len(profile["traits"]) // 10)  # default limit 10
    merged = {k: v for page in pages for k, v in page.items()}
    assert merged == profile["traits"]
    assert sum(len(page) for page in pages) == len(merged)  # no repeats
    # A bigger page still honours the cursor; more than 200 is refused.
    assert walk(seg, url, {"limit": 200}, "traits") == [profile["traits"]]
    assert seg.get(url, params={"limit": 201}, timeout=10).status_code == 400


def test_external_ids_by_user_id_and_escaped_email(seg, sandbox_env, world) -> None:
    profile = next(p for p in world if any(e["type"] == "email" and "+" in e["id"]
                                           for e in p["external_ids"]))
    email = next(e["id"] for e in profile["external_ids"] if e["type"] == "email")
    url = f"{base_url(sandbox_env)}/email:{quote(email, safe='@')}/external_ids"
    assert "%2B" in url
    body = seg.get(url, params={"limit": 100}, timeout=10).json()
    assert body["data"] == profile["external_ids"]
    assert set(body["data"][0]) == {"id", "type", "source_id", "collection", "created_at",
                                    "encoding"}
    raw_plus = seg.get(url.replace("%2B", "+"), timeout=10)  # '+' reads as a space
    assert raw_plus.status_code == 404


def test_external_ids_page_and_user_id_on_a_later_page(seg, sandbox_env, world) -> None:
    profile = next(p for p in world if len(p["external_ids"]) > 10
                   and p["external_ids"][-1]["type"] == "user_id")
    user_id = profile["external_ids"][-1]["id"]
    url = f"{base_url(sandbox_env)}/user_id:{user_id}/external_ids"
    pages = walk(seg, url, {}, "data")
    assert len(pages) >= 2
    assert [e for page in pages for e in page] == profile["external_ids"]
    assert pages[0][-1]["type"] != "user_id"


def test_profile_without_user_id_exists(world) -> None:
    assert any(all(e["type"] != "user_id" for e in p["external_ids"]) for p in world)


@pytest.mark.parametrize("profile_id", ["user_id:u-999999", "segment_id:use_nope",
                                        "nonsense", "phone:123"])
def test_unknown_profile_is_404(seg, sandbox_env, profile_id) -> None:
    for part in ("traits", "external_ids"):
        response = seg.get(f"{base_url(sandbox_env)}/{profile_id}/{part}", timeout=10)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found",
                                             "message": "Profile was not found."}}


# --- rate limit and faults ------------------------------------------------------------------
def test_default_budget_is_100_per_second(sandbox_env) -> None:
    assert sandbox_env.admin.limits("segment")["limits"]["rps"] == 100


def test_over_the_budget_gets_429_without_rate_headers(seg, sandbox_env) -> None:
    sandbox_env.admin.limits("segment", rps=5)
    statuses = []
    for _ in range(12):
        response = seg.get(base_url(sandbox_env), timeout=10)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "rate_limit_error"
            assert not [h for h in response.headers
                        if h.lower().startswith(("retry-after", "x-rate", "ratelimit"))]
    limited = statuses.count(429)
    assert statuses[:5] == [200] * 5 and limited >= 5
    stats = sandbox_env.admin.stats()
    assert stats["over_budget"]["segment"] == limited
    assert stats["rejected"]["segment"]["rate"] == limited


def test_injected_faults_apply(seg, sandbox_env) -> None:
    sandbox_env.admin.faults("segment", error_rate=1.0, error_statuses=[503])
    response = seg.get(base_url(sandbox_env), timeout=10)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "server_error"
    sandbox_env.admin.faults("segment", error_rate=0, burst_429=2)
    assert [seg.get(base_url(sandbox_env), timeout=10).status_code for _ in range(3)] \
        == [429, 429, 200]
