"""The customer.io Track simulator over HTTP: auth, vendor-schema checks, limits, batch, dedup."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from ulid import ULID

from sandbox import credentials, specs
from sandbox.customerio import BATCH, IDENTIFY, TRACK, body_validator

SHARED_SPEC = Path("/work/shared/specs/customerio-track-api.openapi.json")
AUTH = (credentials.CUSTOMERIO_SITE_ID, credentials.CUSTOMERIO_API_KEY)


@pytest.fixture
def cio(sandbox_env) -> requests.Session:
    session = requests.Session()
    session.auth = AUTH
    return session


def url(sandbox, path: str) -> str:
    return f"{sandbox.url}/customerio{path}"


def put(session, sandbox, person: str, body: Any) -> requests.Response:
    return session.put(url(sandbox, f"/api/v1/customers/{quote(person, safe='')}"), json=body,
                       timeout=10)


def event(session, sandbox, person: str, body: Any) -> requests.Response:
    return session.post(url(sandbox, f"/api/v1/customers/{quote(person, safe='')}/events"),
                        json=body, timeout=10)


def errors_of(response: requests.Response) -> list[str]:
    assert response.status_code == 400, response.text
    return response.json()["meta"]["errors"]


# --- the spec copy -------------------------------------------------------------------------
def test_packaged_spec_is_the_shared_one() -> None:
    if not SHARED_SPEC.exists():
        pytest.skip("the shared spec is not on this machine")
    assert (specs.SPEC_DIR / specs.CUSTOMERIO_TRACK).read_bytes() == SHARED_SPEC.read_bytes()


SAMPLES: list[tuple[tuple[str, str], str, dict[str, Any]]] = [
    (IDENTIFY, "/api/v1/customers/42", {"email": "a@b.org", "created_at": 1700000000,
                                        "first_name": "Zoë", "interviewed": True}),
    (IDENTIFY, "/api/v1/customers/42", {"nps_score": None}),
    (IDENTIFY, "/api/v1/customers/42", {"created_at": "2024-01-01T00:00:00Z"}),
    (IDENTIFY, "/api/v1/customers/42", {"email": "not an email"}),
    (TRACK, "/api/v1/customers/42/events", {"name": "GVapplied", "id": str(ULID()),
                                            "timestamp": 1700000000, "data": {"lc": "x"}}),
    (TRACK, "/api/v1/customers/42/events", {"name": "GVapplied", "timestamp": "1700000000"}),
    (TRACK, "/api/v1/customers/42/events", {"timestamp": 1700000000}),
    (BATCH, "/api/v2/batch", {"batch": [{"type": "person", "identifiers": {"id": "1"},
                                         "action": "identify", "attributes": {"a": 1}}]}),
    (BATCH, "/api/v2/batch", {"batch": [{"type": "person", "identifiers": {"id": "1"},
                                         "action": "event", "name": "x",
                                         "timestamp": "soon"}]}),
]


@pytest.mark.slow
def test_compiled_validators_agree_with_openapi_core() -> None:
    """The fast validators decide exactly as openapi-core on the quirk-fixed spec."""
    from openapi_core.testing import MockRequest

    openapi = specs.openapi(specs.CUSTOMERIO_TRACK)  # spec validation on, like the vendor's
    basic = "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()
    for operation, path, body in SAMPLES:
        request = MockRequest("http://localhost", operation[1], path, data=json.dumps(body),
                              content_type="application/json",
                              headers={"Authorization": basic})
        try:
            openapi.validate_request(request)
            core_valid = True
        except Exception:  # openapi-core raises one class per problem
            core_valid = False
        checker = body_validator(*operation)
        assert checker.is_valid(body) == core_valid, (path, body)
        assert (not list(checker.iter_errors(body))) == core_valid, (path, body)


# --- auth ----------------------------------------------------------------------------------
def test_wrong_or_missing_credentials_get_401(sandbox_env) -> None:
    sb = sandbox_env
    target = url(sb, "/api/v1/customers/1")
    for auth in (("sandbox-site", "wrong"), ("other-site", credentials.CUSTOMERIO_API_KEY),
                 None):
        response = requests.put(target, json={"a": 1}, auth=auth, timeout=10)
        assert response.status_code == 401
        assert response.json() == {"meta": {"error": "Unauthorized request"}}
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    batch = requests.post(url(sb, "/api/v2/batch"), json={"batch": []}, auth=("a", "b"),
                          timeout=10)
    assert batch.status_code == 401
    assert sb.admin.stats()["rejected"]["customerio"]["auth"] == 4
    assert sb.admin.customerio_profiles()["profiles"] == {}


# --- identify and track --------------------------------------------------------------------
def test_identify_merges_attributes_per_person(sandbox_env, cio) -> None:
    sb = sandbox_env
    assert put(cio, sb, "42", {"email": "a@b.org", "created_at": 1700000000,
                               "status": "open"}).json() == {}
    assert put(cio, sb, "42", {"status": "applied", "_timestamp": 1700000100}).status_code == 200
    assert put(cio, sb, "a/b ü+1", {"first_name": "Zoë"}).status_code == 200
    assert put(cio, sb, "ghost", {"first_name": "x", "_update": True}).status_code == 200
    seen = sb.admin.customerio_profiles()
    assert seen["profiles"] == {
        "42": {"email": "a@b.org", "created_at": 1700000000, "status": "applied"},
        "a/b ü+1": {"first_name": "Zoë"}}
    assert seen["identifies"] == {"42": 2, "a/b ü+1": 1}


def test_malformed_identify_and_events_get_the_vendor_400(sandbox_env, cio) -> None:
    sb = sandbox_env
    assert "nps_score" in errors_of(put(cio, sb, "1", {"nps_score": None}))[0]
    assert "created_at" in errors_of(put(cio, sb, "1", {"created_at": "2024-01-01"}))[0]
    assert errors_of(put(cio, sb, "1", [1, 2]))
    raw = cio.put(url(sb, "/api/v1/customers/1"), data=b"{not json", timeout=10)
    assert errors_of(raw) == ["request body is not valid JSON"]

    assert "timestamp" in errors_of(event(cio, sb, "1", {"name": "GVapplied",
                                                           "timestamp": "1700000000"}))[0]
    assert "ULID" in errors_of(event(cio, sb, "1", {"name": "GVapplied", "id": "42"}))[0]
    assert "name" in errors_of(event(cio, sb, "1", {"timestamp": 1700000000}))[0]

    assert sb.admin.stats()["rejected"]["customerio"]["schema"] == 7
    assert sb.admin.customerio_profiles()["profiles"] == {}
    assert sb.admin.customerio_events()["events"] == {}


def test_events_are_kept_per_person_and_repeated_ids_ignored(sandbox_env, cio) -> None:
    sb = sandbox_env
    first, second = str(ULID()), str(ULID())
    body = {"name": "GVapplied", "id": first, "timestamp": 1700000000, "data": {"lc": "S"}}
    assert event(cio, sb, "7", body).status_code == 200
    assert event(cio, sb, "7", body).status_code == 200  # accepted, but ignored
    assert event(cio, sb, "7", {**body, "id": second, "name": "GVaccepted"}).status_code == 200
    assert event(cio, sb, "8", {"name": "GTeapplied"}).status_code == 200  # no id: no dedup
    seen = sb.admin.customerio_events()
    assert seen["duplicates"] == 1
    assert [(e["id"], e["name"], e["timestamp"], e["data"]) for e in seen["events"]["7"]] == [
        (first, "GVapplied", 1700000000, {"lc": "S"}),
        (second, "GVaccepted", 1700000000, {"lc": "S"})]
    assert seen["events"]["8"][0]["id"] is None
    assert all(e["received_at"] > 1700000000 for e in seen["events"]["7"])


def test_size_limits(sandbox_env, cio) -> None:
    sb = sandbox_env
    assert put(cio, sb, "1", {"bio": "x" * 1000}).status_code == 200
    assert "1000 bytes" in errors_of(put(cio, sb, "1", {"bio": "é" * 501}))[0]
    assert errors_of(put(cio, sb, "1", {"k" * 151: "v"}))
    assert errors_of(put(cio, sb, "x" * 151, {"a": "v"}))
    assert errors_of(event(cio, sb, "1", {"name": "n" * 101}))
    assert errors_of(event(cio, sb, "1", {"name": "big", "data": {"blob": "x" * 110_000}}))

    item = {"type": "person", "identifiers": {"id": "1"}, "action": "identify",
            "attributes": {"bio": "x" * 900}}
    too_big = cio.post(url(sb, "/api/v2/batch"), json={"batch": [item] * 600}, timeout=10)
    assert too_big.status_code == 413
    assert sb.admin.stats()["rejected"]["customerio"]["size"] == 6
    assert sb.admin.customerio_profiles()["identifies"] == {"1": 1}


# --- batch ---------------------------------------------------------------------------------
def person(pid: str, action: str, **fields: Any) -> dict[str, Any]:
    return {"type": "person", "identifiers": {"id": pid}, "action": action, **fields}


def test_batch_applies_valid_items_and_reports_the_rest_with_207(sandbox_env, cio) -> None:
    sb = sandbox_env
    good_event = str(ULID())
    batch = [
        person("1", "identify", attributes={"first_name": "Ann", "nps_score": 9}),
        person("2", "identify", attributes={"first_name": None}),
        person("1", "event", id=good_event, name="GVapplied", timestamp=1700000000,
               attributes={"lc": "S"}),
        person("3", "event", name="GVapplied", timestamp="yesterday"),
        person("4", "event", id="not-a-ulid", name="GVapplied", timestamp=1700000000),
        person("5", "identify", attributes={"bio": "x" * 1200}),
        person("6", "identify", attributes={"first_name": "Bo"}),
    ]
    response = cio.post(url(sb, "/api/v2/batch"), json={"batch": batch}, timeout=10)
    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [(e["batch_index"], e["reason"], e["field"]) for e in errors] == [
        (1, "invalid", "attributes.first_name"), (3, "invalid", "timestamp"),
        (4, "invalid", "id"), (5, "too_large", "attributes")]
    assert all(e["message"] for e in errors)
    profiles = sb.admin.customerio_profiles()["profiles"]
    assert profiles == {"1": {"first_name": "Ann", "nps_score": 9}, "6": {"first_name": "Bo"}}
    events = sb.admin.customerio_events()["events"]
    assert list(events) == ["1"] and events["1"][0]["id"] == good_event

    ok = cio.post(url(sb, "/api/v2/batch"), json={"batch": [batch[0]]}, timeout=10)
    assert ok.status_code == 200 and ok.json() == {}
    malformed = cio.post(url(sb, "/api/v2/batch"), json={"people": []}, timeout=10)
    assert malformed.status_code == 400 and malformed.json()["errors"][0]["field"] == "batch"
    stats = sb.admin.stats()
    assert stats["requests"]["customerio"] == {"POST /api/v2/batch": 3}


# --- workspaces, region, the refusal knob ---------------------------------------------------
def test_each_workspace_keeps_its_own_people(sandbox_env, cio) -> None:
    sb = sandbox_env
    other = requests.Session()
    other.auth = ("sandbox-site-2", credentials.CUSTOMERIO_WORKSPACES["sandbox-site-2"])
    assert put(cio, sb, "1", {"first_name": "Ann"}).status_code == 200
    assert put(other, sb, "2", {"first_name": "Bo"}).status_code == 200
    # One workspace's key does not open the other.
    crossed = requests.put(url(sb, "/api/v1/customers/3"), json={"a": 1}, timeout=10,
                           auth=("sandbox-site-2", credentials.CUSTOMERIO_API_KEY))
    assert crossed.status_code == 401
    assert sb.admin.customerio_profiles()["profiles"] == {"1": {"first_name": "Ann"}}
    assert sb.admin.customerio_profiles("sandbox-site-2")["profiles"] == {
        "2": {"first_name": "Bo"}}


def test_region_answers_with_valid_credentials_only(sandbox_env, cio) -> None:
    sb = sandbox_env
    region = cio.get(url(sb, "/api/v1/accounts/region"), timeout=10)
    assert region.status_code == 200 and region.json()["data_center"] == "us"
    wrong = requests.get(url(sb, "/api/v1/accounts/region"), auth=("sandbox-site", "x"),
                         timeout=10)
    assert wrong.status_code == 401


def test_refused_people_get_a_400_and_a_207_item_error(sandbox_env, cio) -> None:
    sb = sandbox_env
    sb.admin.customerio_refuse(["7"])
    assert errors_of(put(cio, sb, "7", {"first_name": "Ann"}))
    assert errors_of(event(cio, sb, "7", {"name": "GVapplied", "timestamp": 1700000000}))
    response = cio.post(url(sb, "/api/v2/batch"), json={"batch": [
        person("7", "identify", attributes={"first_name": "Ann"}),
        person("8", "identify", attributes={"first_name": "Bo"})]}, timeout=10)
    assert response.status_code == 207
    assert [e["batch_index"] for e in response.json()["errors"]] == [0]
    assert sb.admin.customerio_profiles()["profiles"] == {"8": {"first_name": "Bo"}}
    sb.admin.reset()  # a reset forgets the knob
    assert put(cio, sb, "7", {"first_name": "Ann"}).status_code == 200
