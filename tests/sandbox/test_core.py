"""The sandbox's shared machinery over HTTP: recording, counts, reset, budgets, faults, CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sandbox import credentials
from sandbox.__main__ import config_from, parser

ROOT = Path(__file__).resolve().parents[2]
CIO_AUTH = (credentials.CUSTOMERIO_SITE_ID, credentials.CUSTOMERIO_API_KEY)
GIS_QUERY = "{allPeople(per_page: 3) { data { id } paging { total_items } }}"


@pytest.fixture
def cio(sandbox_env) -> requests.Session:
    session = requests.Session()
    session.auth = CIO_AUTH
    return session


def identify(session: requests.Session, sandbox, person: str = "42", **kwargs) -> requests.Response:
    return session.put(f"{sandbox.url}/customerio/api/v1/customers/{person}",
                       json={"first_name": "Ann"}, timeout=kwargs.pop("timeout", 10), **kwargs)


def gis_query(sandbox, **kwargs) -> requests.Response:
    return requests.post(f"{sandbox.url}/gis/graphql", json={"query": GIS_QUERY},
                         headers={"Authorization": credentials.GIS_ACCESS_TOKEN}, timeout=10,
                         **kwargs)


# --- recording and counts ------------------------------------------------------------------
def test_recording_counts_and_clearing(sandbox_env, cio) -> None:
    sb = sandbox_env
    assert identify(cio, sb, "7").status_code == 200
    assert requests.put(f"{sb.url}/customerio/api/v1/customers/8", json={},
                        auth=("sandbox-site", "wrong"), timeout=10).status_code == 401
    assert gis_query(sb, params={"debug": "1"}).status_code == 200

    recorded = sb.admin.requests()
    assert [(r["api"], r["method"], r["path"], r["status"]) for r in recorded] == [
        ("customerio", "PUT", "/customerio/api/v1/customers/7", 200),
        ("customerio", "PUT", "/customerio/api/v1/customers/8", 401),
        ("gis", "POST", "/gis/graphql", 200)]
    assert recorded[0]["identity"] == credentials.CUSTOMERIO_SITE_ID
    assert recorded[0]["body"] == {"first_name": "Ann"}
    assert recorded[1]["identity"] is None
    assert recorded[2]["query"] == {"debug": "1"}
    assert recorded[2]["body"] == {"query": GIS_QUERY}
    assert all(abs(r["ts"] - time.time()) < 60 for r in recorded)
    assert [r["api"] for r in sb.admin.requests(api="gis")] == ["gis"]

    stats = sb.admin.stats()
    assert stats["requests"]["customerio"] == {"PUT /api/v1/customers/{identifier}": 2}
    assert stats["requests"]["gis"] == {"POST /graphql": 1}
    assert stats["rejected"]["customerio"]["auth"] == 1

    sb.admin.clear_requests()
    assert sb.admin.requests() == []
    assert sb.admin.stats()["requests"]["customerio"] == {}
    assert sb.admin.stats()["rejected"]["customerio"]["auth"] == 0


def test_reset_restores_faults_limits_and_state(sandbox_env, cio) -> None:
    sb = sandbox_env
    sb.admin.faults("customerio", error_rate=1.0)
    sb.admin.limits("customerio", rps=1)
    assert identify(cio, sb).status_code in (500, 502, 503)
    sb.admin.reset()
    assert sb.admin.requests() == []
    for person in ("1", "2", "3"):
        assert identify(cio, sb, person).status_code == 200
    assert set(sb.admin.customerio_profiles()["profiles"]) == {"1", "2", "3"}
    sb.admin.reset()
    assert sb.admin.customerio_profiles()["profiles"] == {}


def test_unknown_fault_knob_and_api_are_refused(sandbox_env) -> None:
    response = requests.post(f"{sandbox_env.url}/admin/faults",
                             json={"api": "customerio", "eror_rate": 1}, timeout=10)
    assert response.status_code == 400 and "eror_rate" in response.text
    response = requests.post(f"{sandbox_env.url}/admin/limits", json={"api": "nope", "rps": 1},
                             timeout=10)
    assert response.status_code == 400


# --- budgets -------------------------------------------------------------------------------
def test_rate_budget_answers_429_with_retry_after_and_counts_over_budget(sandbox_env, cio,
                                                                          sandbox_clock) -> None:
    sb = sandbox_env
    sb.admin.limits("customerio", rps=5)
    statuses = [identify(cio, sb, str(i)) for i in range(12)]
    ok = [r for r in statuses if r.status_code == 200]
    limited = [r for r in statuses if r.status_code == 429]
    assert len(ok) == 5 and len(limited) == 7
    assert all(r.headers["Retry-After"] == "1" for r in limited)
    stats = sb.admin.stats()
    assert stats["over_budget"]["customerio"] == 7
    assert stats["rejected"]["customerio"]["rate"] == 7
    # the 429s were refused: only the accepted identifies reached the profiles
    assert len(sb.admin.customerio_profiles()["profiles"]) == 5
    # requests sent while a Retry-After was running are counted as early
    assert stats["early_after_429"]["customerio"] >= 6

    sandbox_clock.advance(0.9)  # still inside the second: still refused
    assert identify(cio, sb, "early").status_code == 429
    sandbox_clock.advance(0.15)  # the window moved on: the budget is back
    assert identify(cio, sb, "late").status_code == 200


def test_requests_spaced_within_budget_are_never_refused(sandbox_env, cio) -> None:
    sb = sandbox_env
    sb.admin.limits("customerio", rps=20)
    for i in range(25):
        assert identify(cio, sb, str(i)).status_code == 200
        time.sleep(0.06)
    assert sb.admin.stats()["over_budget"]["customerio"] == 0


# --- faults --------------------------------------------------------------------------------
def test_latency_fault_delays_answers(sandbox_env, cio) -> None:
    # The latency is a lower bound on the answer's time, so only "at least" is asserted
    # while it is on; once cleared, an answer takes far less than the latency was (a
    # busy machine may slow a loopback request, not by seconds).
    sb = sandbox_env
    sb.admin.faults("customerio", latency_ms=1500, latency_jitter_ms=100)
    started = time.monotonic()
    assert identify(cio, sb).status_code == 200
    assert time.monotonic() - started >= 1.5
    sb.admin.clear_faults("customerio")
    started = time.monotonic()
    identify(cio, sb)
    assert time.monotonic() - started < 1.5


def test_a_request_waiting_in_its_latency_leaves_no_trace_after_a_reset(sandbox_env,
                                                                        cio) -> None:
    # What a test leaves behind (a call still hanging in a latency fault) must not show
    # up in the next test's recording or data.
    from concurrent.futures import ThreadPoolExecutor

    from tests.support import wait_for

    sb = sandbox_env
    sb.admin.faults("customerio", latency_ms=3000)
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(identify, cio, sb, "99")
        wait_for(lambda: sb.admin.stats()["in_flight"]["customerio"] == 1,
                 "the request to be in flight", 10)
        sb.admin.reset()
        assert late.result(timeout=30).status_code == 503
    assert sb.admin.stats()["in_flight"]["customerio"] == 0
    assert sb.admin.requests() == []
    assert sb.admin.customerio_profiles()["profiles"] == {}


def test_error_rate_answers_a_share_of_5xx_without_side_effects(sandbox_env, cio) -> None:
    sb = sandbox_env
    sb.admin.faults("customerio", error_rate=0.5)
    statuses = [identify(cio, sb, str(i)).status_code for i in range(200)]
    errors = [s for s in statuses if s >= 500]
    assert 60 <= len(errors) <= 140
    assert set(errors) <= {500, 502, 503} and len(set(errors)) >= 2
    # a 5xx never stored anything: exactly the 200s made profiles
    assert len(sb.admin.customerio_profiles()["profiles"]) == statuses.count(200)

    sb.admin.faults("customerio", error_rate=1.0, error_statuses=[503])
    response = identify(cio, sb)
    assert response.status_code == 503 and response.json() == {
        "meta": {"errors": ["sandbox: injected server error"]}}


def test_burst_429_then_recovery(sandbox_env, cio, sandbox_clock) -> None:
    sb = sandbox_env
    sb.admin.faults("customerio", burst_429=3, retry_after=2)
    responses = [identify(cio, sb, str(i)) for i in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 429, 200]
    assert all(r.headers["Retry-After"] == "2" for r in responses[:3])
    stats = sb.admin.stats()
    assert stats["rejected"]["customerio"]["rate"] == 3
    assert stats["over_budget"]["customerio"] == 0  # a burst is not the client's fault
    assert stats["early_after_429"]["customerio"] == 3  # all sent within the Retry-After
    assert stats["ignored_retry_after"]["customerio"] == 0  # ...but right after each 429


def test_ignored_retry_after_counts_only_requests_a_client_had_time_to_hold(
        sandbox_env, cio, sandbox_clock) -> None:
    sb = sandbox_env
    sb.admin.faults("customerio", burst_429=1, retry_after=2)
    assert identify(cio, sb, "1").status_code == 429
    assert identify(cio, sb, "2").status_code == 200  # at once: could have been in flight
    sandbox_clock.advance(0.3)
    assert identify(cio, sb, "3").status_code == 200  # 0.3 s later: ignored the 429
    sandbox_clock.advance(2)
    assert identify(cio, sb, "4").status_code == 200  # after the Retry-After: fine
    stats = sb.admin.stats()
    assert stats["early_after_429"]["customerio"] == 2
    assert stats["ignored_retry_after"]["customerio"] == 1


def test_timeout_fault_never_answers(sandbox_env, cio) -> None:
    sb = sandbox_env
    sb.admin.faults("customerio", timeout_rate=1.0)
    with pytest.raises(requests.ReadTimeout):
        identify(cio, sb, timeout=0.5)
    recorded = sb.admin.requests(api="customerio")
    assert len(recorded) == 1 and recorded[0]["status"] is None
    assert sb.admin.customerio_profiles()["profiles"] == {}


def test_truncated_body_fault(sandbox_env) -> None:
    sb = sandbox_env
    sb.admin.faults("gis", truncated_rate=1.0)
    response = gis_query(sb)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        response.json()
    assert response.text.startswith('{"data"')


def test_non_json_body_fault(sandbox_env) -> None:
    sb = sandbox_env
    sb.admin.faults("gis", non_json_rate=1.0)
    response = gis_query(sb)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    with pytest.raises(ValueError):
        response.json()


def test_html_error_page_fault(sandbox_env, cio) -> None:
    sb = sandbox_env
    sb.admin.faults("customerio", html_error_rate=1.0)
    response = identify(cio, sb)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text
    assert sb.admin.customerio_profiles()["profiles"] == {}


def test_faults_are_per_api(sandbox_env, cio) -> None:
    sb = sandbox_env
    sb.admin.faults("gis", error_rate=1.0)
    assert identify(cio, sb).status_code == 200
    assert gis_query(sb).status_code >= 500


def test_faults_and_limits_given_at_start_come_back_on_reset() -> None:
    from sandbox.testing import SandboxServer

    with SandboxServer(people=5, applications=5, profiles=5, customerio_rps=2,
                       faults={"gis": {"error_rate": 1.0}}) as sb:
        assert gis_query(sb).status_code >= 500
        sb.admin.clear_faults("gis")
        assert gis_query(sb).status_code == 200
        sb.admin.reset()
        assert gis_query(sb).status_code >= 500
        session = requests.Session()
        session.auth = CIO_AUTH
        codes = [identify(session, sb, str(i)).status_code for i in range(4)]
        assert codes == [200, 200, 429, 429]


# --- CLI -----------------------------------------------------------------------------------
def test_cli_flags_become_faults_and_limits() -> None:
    args = parser().parse_args([
        "--people", "10", "--customerio-error-rate", "0.2", "--customerio-error-statuses",
        "502,503", "--voucherify-rpm", "60", "--voucherify-bulk-per-hour", "10",
        "--gis-burst-429", "3", "--segment-rps", "0"])
    config = config_from(args)
    assert config.people == 10
    assert config.faults == {"customerio": {"error_rate": 0.2, "error_statuses": [502, 503]},
                             "gis": {"burst_429": 3}}
    assert config.limits["voucherify"] == {"rpm": 60, "bulk_per_hour": 10}
    assert config.limits["segment"] == {"rps": None}  # 0 = unlimited


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_python_m_sandbox_serves_and_prints_the_env() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--people", "20",
         "--applications", "40", "--profiles", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("export VOUCHERIFY_API_URL"):
                break
        text = "".join(lines)
        url = f"http://127.0.0.1:{port}"
        assert f"export CUSTOMERIO_TRACK_URL={url}/customerio" in text
        assert f"export GIS_ACCESS_TOKEN={credentials.GIS_ACCESS_TOKEN}" in text
        deadline = time.monotonic() + 15
        while True:
            try:
                stats = requests.get(f"{url}/admin/stats", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "python -m sandbox never answered"
                time.sleep(0.1)
        assert stats.status_code == 200
        people = requests.get(f"{url}/admin/world/people", timeout=5).json()["people"]
        assert len(people) == 20
        # Its own process keeps the collector's full walks short (sandbox/pauses.py): the
        # world is frozen out of them, so they cannot bunch the arrival stamps.
        assert stats.json()["gc_frozen"] > 1000
    finally:
        proc.terminate()
        proc.wait(10)


def test_rate_window_counts_requests_at_their_arrival_in_any_order() -> None:
    # The pipeline checks the budget after a latency fault, so requests reach the check
    # out of arrival order; the window counts each at its arrival (what a real gateway
    # sees), at most `limit` in any span holding it.
    from sandbox.windows import Window

    window = Window(3, 1.0, "requests-per-second")  # span 0.97 s (WINDOW_GRACE)
    for arrived in (1.0, 1.1):
        assert window.wait(arrived) is None
        window.record(arrived)
    assert window.wait(0.5) is None  # checked late: 0.5, 1.0, 1.1 share a span of 3
    window.record(0.5)
    assert window.wait(0.6) is not None  # (0.6, 1.0, 1.1 and 0.5): 4 in one span
    assert window.wait(1.2) is not None
    assert window.wait(1.48) is None  # 0.5 has left every span holding 1.48
    assert window.remaining(1.2) == 0 and window.remaining(1.48) == 1
