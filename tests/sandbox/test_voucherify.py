"""The Voucherify simulator, over HTTP the way the fleet's client talks to it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from sandbox import credentials, specs, voucherify

HEADERS = {"X-App-Id": credentials.VOUCHERIFY_APPLICATION_ID,
           "X-App-Token": credentials.VOUCHERIFY_SECRET_KEY}
RATE_HEADERS = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Retry",
                "X-Rate-Limit-Type")
SHARED_SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"


def customer(i: int, **fields: Any) -> dict[str, Any]:
    return {"source_id": f"u-{i}", "name": f"Zoë {i}", "email": f"zoe{i}@example.com",
            "phone": "+48 600 100 200", "birthdate": "1990-05-17",
            "address": {"city": "Kraków", "country": "PL", "postal_code": "30-001"},
            "metadata": {"plan": "pro"}, "system_metadata": {"source": "segment"}, **fields}


@pytest.fixture
def vf(sandbox_env) -> requests.Session:
    session = requests.Session()
    session.headers.update(HEADERS)
    return session


def url(sandbox, path: str) -> str:
    return f"{sandbox.url}/voucherify{path}"


def settings(sandbox, **values: Any) -> dict[str, Any]:
    response = requests.post(f"{sandbox.url}/admin/voucherify/settings", json=values, timeout=10)
    response.raise_for_status()
    return response.json()["settings"]


def bulk(vf: requests.Session, sandbox, customers: list[dict[str, Any]]) -> str:
    response = vf.post(url(sandbox, "/v1/customers/bulk/async"), json=customers, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["async_action_id"]


def wait_final(vf: requests.Session, sandbox, action_id: str,
               timeout: float = 10) -> tuple[list[str], dict[str, Any]]:
    """Poll the action until DONE/FAILED; return every status seen and the final body."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = vf.get(url(sandbox, f"/v1/async-actions/{action_id}"), timeout=10).json()
        seen.append(body["status"])
        if body["status"] in ("DONE", "FAILED"):
            return seen, body
        time.sleep(0.02)
    raise AssertionError(f"action {action_id} not final after {timeout}s: {seen[-3:]}")


def stored(sandbox) -> dict[str, Any]:
    return sandbox.admin.voucherify_customers()["customers"]


# --- auth --------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"X-App-Id": credentials.VOUCHERIFY_APPLICATION_ID},
                                     {**HEADERS, "X-App-Token": "wrong"}])
def test_wrong_credentials_get_the_vendor_401(sandbox_env, headers) -> None:
    response = requests.post(url(sandbox_env, "/v1/customers/bulk/async"), headers=headers,
                             json=[customer(1)], timeout=10)
    assert response.status_code == 401
    body = response.json()
    assert {k: body[k] for k in ("code", "key", "message")} == \
        {"code": 401, "key": "unauthorized", "message": "Unauthorized"}
    assert body["details"] and body["request_id"].startswith("v-")
    assert sandbox_env.admin.stats()["rejected"]["voucherify"]["auth"] == 1
    assert stored(sandbox_env) == {}


# --- upserts -----------------------------------------------------------------------------
def test_single_upsert_by_source_id_never_duplicates(vf, sandbox_env) -> None:
    first = vf.post(url(sandbox_env, "/v1/customers"), json=customer(1), timeout=10)
    assert first.status_code == 200
    assert first.json()["object"] == "customer" and first.json()["id"].startswith("cust_")
    again = vf.post(url(sandbox_env, "/v1/customers"), json=customer(1, name="Zoë Nowak"),
                    timeout=10)
    assert again.json()["id"] == first.json()["id"]
    customers = stored(sandbox_env)
    assert list(customers) == ["u-1"]
    assert customers["u-1"]["upserts"] == 2 and customers["u-1"]["name"] == "Zoë Nowak"
    fetched = vf.get(url(sandbox_env, "/v1/customers/u-1"), timeout=10)
    assert fetched.status_code == 200 and fetched.json()["name"] == "Zoë Nowak"
    assert vf.get(url(sandbox_env, "/v1/customers/u-404"), timeout=10).status_code == 404


def test_bulk_action_progresses_and_reports_per_customer_errors(vf, sandbox_env,
                                                                sandbox_clock) -> None:
    settings(sandbox_env, enqueued_ms=300, in_progress_ms=300)
    batch = [customer(i) for i in range(10)]
    batch[3]["email"] = "not-an-email"
    batch[7]["email"] = "ann@"
    action_id = bulk(vf, sandbox_env, batch)
    assert action_id.startswith("aa_")

    def status() -> str:
        return vf.get(url(sandbox_env, f"/v1/async-actions/{action_id}"),
                      timeout=10).json()["status"]

    phases = [status()]
    for step in (0.29, 0.02, 0.28, 0.02):  # the sandbox's clock, stepped across each phase
        sandbox_clock.advance(step)
        phases.append(status())
    assert phases == ["ENQUEUED", "ENQUEUED", "IN_PROGRESS", "IN_PROGRESS", "DONE"]
    body = wait_final(vf, sandbox_env, action_id)[1]
    result = body["result"]
    assert (result["done_count"], result["failed_count"]) == (8, 2)
    assert [(e["source_id"], e["key"]) for e in result["errors"]] == \
        [("u-3", "invalid_customer"), ("u-7", "invalid_customer")]
    assert all(e["message"] and "email" in e["details"] for e in result["errors"])
    assert result["reports"] == [] and result["reports_available_till"]
    customers = stored(sandbox_env)
    assert sorted(customers) == sorted(f"u-{i}" for i in range(10) if i not in (3, 7))
    assert customers["u-0"]["address"]["city"] == "Kraków"


def one_of_as_any_of(node: Any) -> Any:
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): one_of_as_any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [one_of_as_any_of(v) for v in node]
    return node


def test_action_body_matches_the_vendor_response_schema(vf, sandbox_env) -> None:
    # The result is a oneOf of overlapping schemas (any bulk result matches several):
    # read it as anyOf, the same quirk docs/api-contracts.md ("Reading the vendor files")
    # names for customer.io.
    spec = one_of_as_any_of(specs.load(specs.VOUCHERIFY_ASYNC_ACTIONS))
    api = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
    action_id = bulk(vf, sandbox_env, [customer(1), customer(2, email="bad")])
    for body in (vf.get(url(sandbox_env, f"/v1/async-actions/{action_id}"), timeout=10).json(),
                 wait_final(vf, sandbox_env, action_id)[1]):
        request = MockRequest("http://sandbox", "get", f"/v1/async-actions/{action_id}",
                              headers=HEADERS)
        response = MockResponse(json.dumps(body).encode(), status_code=200)
        api.validate_response(request, response)
    # ... so check the final result against the CUSTOMERS.BULK_UPDATE schema itself.
    result_schema = specs.inlined(specs.VOUCHERIFY_ASYNC_ACTIONS, "components", "schemas",
                                  "AsyncActionResultCustomersBulkUpdateResponseBody")
    OAS30Validator(result_schema, format_checker=oas30_format_checker).validate(body["result"])


def test_bulk_upsert_twice_is_idempotent(vf, sandbox_env) -> None:
    batch = [customer(i) for i in range(5)]
    for _ in range(2):
        assert wait_final(vf, sandbox_env, bulk(vf, sandbox_env, batch))[1]["status"] == "DONE"
    customers = stored(sandbox_env)
    assert len(customers) == 5
    assert {c["upserts"] for c in customers.values()} == {2}


def test_failed_async_action_fault_stores_nothing(vf, sandbox_env) -> None:
    sandbox_env.admin.faults("voucherify", fail_async_actions=1.0)
    _, body = wait_final(vf, sandbox_env, bulk(vf, sandbox_env, [customer(1), customer(2)]))
    assert body["status"] == "FAILED" and body["result"]["message"]
    assert stored(sandbox_env) == {}


# --- size and schema ---------------------------------------------------------------------
def test_bulk_over_the_cap_gets_413(vf, sandbox_env) -> None:
    endpoint = url(sandbox_env, "/v1/customers/bulk/async")
    assert vf.post(endpoint, json=[customer(i) for i in range(100)],
                   timeout=10).status_code == 202
    response = vf.post(endpoint, json=[customer(i) for i in range(101)], timeout=10)
    assert response.status_code == 413
    assert response.json()["code"] == 413 and response.json()["key"]
    settings(sandbox_env, bulk_cap=5)
    assert vf.post(endpoint, json=[customer(i) for i in range(6)], timeout=10).status_code == 413
    assert sandbox_env.admin.stats()["rejected"]["voucherify"]["size"] == 2


def test_body_over_10_mb_gets_413(vf, sandbox_env) -> None:
    settings(sandbox_env, bulk_cap=10_000)
    big = [customer(i, description="x" * 1000) for i in range(10_500)]
    response = vf.post(url(sandbox_env, "/v1/customers/bulk/async"), json=big, timeout=30)
    assert response.status_code == 413
    assert "bytes" in response.json()["details"]


@pytest.mark.parametrize(("bad", "where"), [
    (customer(2, birthdate="1990-13-45"), "[1].birthdate"),
    (customer(2, birthdate="31/12/1990"), "[1].birthdate"),
    (customer(2, name=None), "[1].name"),
    ({k: v for k, v in customer(2).items() if k != "source_id"}, "'source_id'"),
    (customer(2, metadata="plan=pro"), "[1].metadata"),
])
def test_schema_breaking_customer_gets_the_vendor_400(vf, sandbox_env, bad, where) -> None:
    response = vf.post(url(sandbox_env, "/v1/customers/bulk/async"),
                       json=[customer(1), bad], timeout=10)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 400 and body["key"] == "invalid_payload" and body["message"]
    assert where in body["details"]
    assert sandbox_env.admin.stats()["rejected"]["voucherify"]["schema"] == 1
    assert stored(sandbox_env) == {}


def test_single_upsert_is_checked_against_the_spec_too(vf, sandbox_env) -> None:
    endpoint = url(sandbox_env, "/v1/customers")
    response = vf.post(endpoint, json=customer(1, birthdate="1990-13-45"), timeout=10)
    assert response.status_code == 400 and "birthdate" in response.json()["details"]
    not_json = vf.post(endpoint, data="{", headers={"Content-Type": "application/json"},
                       timeout=10)
    assert not_json.status_code == 400 and not_json.json()["key"] == "invalid_payload"
    as_text = vf.post(endpoint, data="source_id=u-1", timeout=10)
    assert as_text.status_code == 415
    invalid_email = vf.post(endpoint, json=customer(1, email="not-an-email"), timeout=10)
    assert invalid_email.status_code == 400
    assert invalid_email.json()["key"] == "invalid_customer"
    assert stored(sandbox_env) == {}


def test_derived_bulk_validator_agrees_with_openapi_core() -> None:
    api = specs.openapi(specs.VOUCHERIFY_CUSTOMERS)
    bodies = [[customer(1)], [customer(1, birthdate="1990-13-45")], [customer(1, name=None)],
              [{"name": "no source id"}], [customer(1, address=None)], [customer(1, email=5)],
              {"source_id": "not an array"}, [customer(1, birthday="2001-02-03")]]
    for body in bodies:
        request = MockRequest("http://sandbox", "post", voucherify.BULK_PATH, headers=HEADERS,
                              data=json.dumps(body).encode())
        try:
            api.validate_request(request)
            core_ok = True
        except Exception:
            core_ok = False
        assert core_ok == (voucherify.bulk_errors(body) == []), body


def test_spec_copies_are_identical_to_the_shared_files() -> None:
    if not SHARED_SPECS.is_dir():
        pytest.skip(f"{SHARED_SPECS} is not checked out here")
    for name in (specs.VOUCHERIFY_CUSTOMERS, specs.VOUCHERIFY_ASYNC_ACTIONS):
        assert (specs.SPEC_DIR / name).read_bytes() == (SHARED_SPECS / name).read_bytes()


# --- rate limits and faults ----------------------------------------------------------------
def test_every_response_carries_rate_headers(vf, sandbox_env) -> None:
    responses = [
        vf.post(url(sandbox_env, "/v1/customers"), json=customer(1), timeout=10),
        vf.post(url(sandbox_env, "/v1/customers/bulk/async"), json=[customer(2)], timeout=10),
        vf.get(url(sandbox_env, "/v1/async-actions/aa_missing"), timeout=10),
        requests.get(url(sandbox_env, "/v1/async-actions/aa_missing"), timeout=10),  # 401
    ]
    assert [r.status_code for r in responses] == [200, 202, 404, 401]
    for response in responses:
        assert all(h in response.headers for h in RATE_HEADERS), response.headers
    assert responses[0].headers["X-Rate-Limit-Limit"] == "2000"
    remaining = [int(r.headers["X-Rate-Limit-Remaining"]) for r in responses[:3]]
    assert remaining == [1999, 1998, 1997]
    assert int(responses[0].headers["X-Rate-Limit-Retry"]) >= int(time.time())


def test_over_the_rpm_budget_gets_429_with_headers(vf, sandbox_env) -> None:
    sandbox_env.admin.limits("voucherify", rpm=5)
    answers = [vf.get(url(sandbox_env, "/v1/customers/u-1"), timeout=10) for _ in range(7)]
    assert [r.status_code for r in answers] == [404] * 5 + [429] * 2
    limited = answers[-1]
    assert limited.json()["code"] == 429 and limited.json()["message"] == "API limit reached"
    assert limited.json()["key"] == "too_many_requests"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert limited.headers["X-Rate-Limit-Limit"] == "5"
    assert int(limited.headers["X-Rate-Limit-Retry"]) > time.time()
    stats = sandbox_env.admin.stats()
    assert stats["over_budget"]["voucherify"] == 2
    assert stats["early_after_429"]["voucherify"] == 1


def test_bulk_per_hour_budget(vf, sandbox_env) -> None:
    sandbox_env.admin.limits("voucherify", bulk_per_hour=1)
    action_id = bulk(vf, sandbox_env, [customer(1)])
    second = vf.post(url(sandbox_env, "/v1/customers/bulk/async"), json=[customer(2)],
                     timeout=10)
    assert second.status_code == 429 and int(second.headers["Retry-After"]) > 60
    assert wait_final(vf, sandbox_env, action_id)[1]["status"] == "DONE"  # GETs still pass
    assert sandbox_env.admin.stats()["over_budget"]["voucherify"] == 1


def test_injected_faults_apply(vf, sandbox_env) -> None:
    sandbox_env.admin.faults("voucherify", error_rate=1.0, error_statuses=[500])
    response = vf.post(url(sandbox_env, "/v1/customers"), json=customer(1), timeout=10)
    assert response.status_code == 500
    assert response.json()["code"] == 500 and response.json()["request_id"].startswith("v-")
    assert all(h in response.headers for h in RATE_HEADERS)
    sandbox_env.admin.faults("voucherify", error_rate=0, non_json_rate=1.0)
    response = vf.post(url(sandbox_env, "/v1/customers"), json=customer(1), timeout=10)
    with pytest.raises(ValueError):
        response.json()
