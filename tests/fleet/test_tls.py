"""TLS to Redis as an operator meets it: `syncfleet check` against a Redis that speaks only
TLS and wants a client certificate (the `tls_redis` fixture: certificates made at test
time), with the right CA, a wrong one and no client certificate; TLS files without
rediss://. A GIS cold start over TLS: tests/gis/test_tls.py."""

from __future__ import annotations

import sys

from tests.support import ROOT
from tests.support.cli import syncfleet, syncfleet_json

sys.path.insert(0, str(ROOT / "scripts"))
import redis_tls  # noqa: E402


def redis_check(**env: str) -> tuple[int, dict]:
    code, report = syncfleet_json("check", **env)
    return code, next(c for c in report["checks"] if c["name"] == "redis")


def test_check_tells_a_wrong_ca_and_a_missing_client_certificate_apart(
        tls_redis, tmp_path, monkeypatch):
    assert redis_check()[1]["status"] == "ok"

    other = redis_tls.other_authority(tmp_path / "other")
    code, check = redis_check(REDIS_TLS_CA_FILE=str(other))
    assert code == 1 and check["status"] == "failed"
    assert "certificate verify failed" in check["detail"]

    monkeypatch.delenv("REDIS_TLS_CERT_FILE")
    monkeypatch.delenv("REDIS_TLS_KEY_FILE")
    code, check = redis_check()
    assert code == 1 and check["status"] == "failed"  # the server wants a certificate


def test_tls_files_without_rediss_are_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", __file__)
    done = syncfleet("runs")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "REDIS_TLS_CA_FILE is set but REDIS_URL is not rediss://" in done.stderr
