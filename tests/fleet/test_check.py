"""`syncfleet check` as a person runs it (a subprocess) against Redis and the sandbox: one
cheap read-only call per configured API, a table, and an exit status that says whether
the fleet can work; a failure names the variable to fix."""

from __future__ import annotations

import re

from tests.support.cli import syncfleet, syncfleet_json

APIS = ("gis", "customerio", "segment", "voucherify")


def rows(output: str) -> dict[str, tuple[str, str]]:
    """what -> (status, detail) from the table (a detail may wrap onto a second line)."""
    found = re.findall(r"│ (redis|gis|customerio|segment|voucherify) +│ (.+?) +│ (.+?) +│",
                       output)
    return {name: (status, detail) for name, status, detail in found}


def test_every_configured_credential_is_tried_once_and_nothing_is_written(sandbox_env):
    sandbox_env.admin.clear_requests()
    done = syncfleet("check")
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    assert {name: status for name, (status, _) in table.items()} == {
        "redis": "ok", **{api: "ok" for api in APIS}}
    # One read per API, never a write (GIS reads with a GraphQL query, over POST).
    for api in APIS:
        requests = sandbox_env.admin.requests(api=api)
        assert len(requests) == 1, (api, requests)
        if api == "gis":
            assert requests[0]["body"]["query"].lstrip().startswith("query")
        else:
            assert requests[0]["method"] == "GET", (api, requests)
    assert sandbox_env.admin.requests(api="customerio")[0]["path"].endswith(
        "/api/v1/accounts/region")


def test_a_wrong_key_fails_the_check_naming_the_variable(sandbox_env):
    done = syncfleet("check", CUSTOMERIO_API_KEY="not-the-key")
    assert done.returncode == 1
    status, detail = rows(done.stdout)["customerio"]
    assert status == "failed" and "401" in detail
    assert "1 failed: customerio: " in done.stdout and "CUSTOMERIO_API_KEY" in done.stdout
    assert "not-the-key" not in done.stdout + done.stderr  # a secret is never printed
    assert {n: s for n, (s, _) in rows(done.stdout).items() if n != "customerio"} == {
        "redis": "ok", "gis": "ok", "segment": "ok", "voucherify": "ok"}

    code, report = syncfleet_json("check", VOUCHERIFY_SECRET_KEY="wrong")
    assert code == 1 and report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "failed"]
    assert [c["name"] for c in failed] == ["voucherify"]
    assert "VOUCHERIFY_SECRET_KEY" in failed[0]["detail"]


def test_half_a_configuration_names_the_missing_variable(sandbox_env):
    code, report = syncfleet_json("check", SEGMENT_SPACE_ID="")
    assert code == 1
    segment = next(c for c in report["checks"] if c["name"] == "segment")
    assert segment["status"] == "failed"
    assert segment["detail"].startswith("SEGMENT_SPACE_ID is not set")


def test_an_unconfigured_api_is_not_a_failure(sandbox_env):
    code, report = syncfleet_json("check", SEGMENT_ACCESS_TOKEN="", SEGMENT_SPACE_ID="")
    assert code == 0 and report["ok"] is True
    segment = next(c for c in report["checks"] if c["name"] == "segment")
    assert segment["status"] == "not configured"
    assert "SEGMENT_ACCESS_TOKEN" in segment["detail"]
    assert sandbox_env.admin.requests(api="segment") == []


def test_redis_down_fails_the_check_naming_redis_url(sandbox_env):
    from redis_server import free_port  # scripts/, on the path of the tests (conftest)

    code, report = syncfleet_json("check", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert code == 1
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["redis"]["status"] == "failed" and "REDIS_URL" in by_name["redis"]["detail"]
    assert all(by_name[api]["detail"].startswith("not tried") for api in APIS)
