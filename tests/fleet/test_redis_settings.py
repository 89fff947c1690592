"""The Redis settings and secrets from files: what each setting turns into for Celery and
redis-py (`worker/redis_target.py`), and the one-line errors of bad values. Pure
functions; the real servers are in test_tls.py, tests/gis/test_failover.py and
tests/fleet/test_compose_secrets.py."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.cli import syncfleet
from worker.redis_target import CONNECT_TIMEOUT, READ_TIMEOUT, RedisTarget, celery_settings
from worker.settings import MissingSetting, SettingsError, get_settings
from worker.store import connect

SECRET = "s3cr3t/with:odd@chars"


def target() -> RedisTarget:
    get_settings.cache_clear()
    return RedisTarget.from_settings(get_settings())


# ---- REDIS_URL, REDIS_PASSWORD ---------------------------------------------------------

def test_a_plain_url_is_broker_backend_and_client_as_given(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/3")
    celery = celery_settings(target(), {"visibility_timeout": 35})
    assert celery["broker_url"] == celery["result_backend"] == "redis://example:6380/3"
    # The timeouts that bound a dead host (worker/redis_target.py), for the broker and
    # the backend as for the fleet's own client.
    assert celery["broker_transport_options"] == {
        "visibility_timeout": 35, "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": READ_TIMEOUT}
    assert (celery["redis_socket_connect_timeout"], celery["redis_socket_timeout"]) == \
        (CONNECT_TIMEOUT, READ_TIMEOUT)
    pool = connect(target()).connection_pool.connection_kwargs
    assert (pool["socket_connect_timeout"], pool["socket_timeout"]) == \
        (CONNECT_TIMEOUT, READ_TIMEOUT)
    assert celery["broker_use_ssl"] is None and celery["redis_backend_use_ssl"] is None


@pytest.mark.parametrize("url", ["redis://h:6379/0?socket_timeout=soon",
                                 "redis://h:6379/0?no_such_option=1",
                                 "redis://h:6379/0?ssl_cert_reqs=none"])
def test_url_options_redis_py_would_refuse_are_refused_by_the_settings(monkeypatch, url):
    monkeypatch.setenv("REDIS_URL", url)
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match=r"REDIS_URL: .*(socket_timeout|no_such_option|"
                                            r"ssl_cert_reqs)"):
        get_settings()


def test_a_url_without_a_host_keeps_its_slashes():
    # REDIS_URL=redis:///0 with REDIS_SENTINELS; without them, redis-py's localhost.
    assert RedisTarget("redis://:pw@/0").address_url == "redis:///0"
    assert RedisTarget("redis://:pw@h:1/2?socket_timeout=3").address_url == \
        "redis://h:1/2?socket_timeout=3"


def test_redis_password_goes_into_every_url_quoted_and_overrides_the_urls(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:old@example:6380/3")
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    where = target()
    assert where.credentials() == {"password": SECRET}
    url = celery_settings(where, {})["broker_url"]
    assert url == "redis://:s3cr3t%2Fwith%3Aodd%40chars@example:6380/3"
    assert SECRET in get_settings().secret_values()  # masked in every log line


@pytest.mark.parametrize("url", ["sentinel://h:26379", "redis-sentinel://h/0",
                                 "http://example", "redis://example:6379/zero"])
def test_a_url_redis_cannot_take_is_one_line_naming_the_variable(monkeypatch, url):
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(SettingsError, match="REDIS_URL: .*REDIS_SENTINELS") as caught:
        get_settings()
    assert url not in str(caught.value)


# ---- Sentinel -----------------------------------------------------------------------------

def test_sentinels_give_celery_one_url_each_and_the_master_in_both_transports(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis:///2")
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379, s2:26380,s3:26381")
    monkeypatch.setenv("REDIS_MASTER_NAME", "fleet")
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "spw")
    where = target()
    assert where.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26381))
    celery = celery_settings(where, {"visibility_timeout": 35})
    assert celery["broker_url"] == celery["result_backend"] == (
        "sentinel://:pw@s1:26379/2;sentinel://:pw@s2:26380/2;sentinel://:pw@s3:26381/2")
    for options in (celery["broker_transport_options"],
                    celery["result_backend_transport_options"]):
        assert options["master_name"] == "fleet" and options["visibility_timeout"] == 35
        assert options["sentinel_kwargs"]["password"] == "spw"
    assert "the master 'fleet' of the sentinels s1:26379" in where.describe()
    assert "pw" not in where.describe()


def test_the_app_is_configured_for_sentinel_from_the_environment():
    env = {**os.environ, "REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_MASTER_NAME": "m1",
           "REDIS_URL": "redis:///0"}
    done = subprocess.run([sys.executable, "-c", "from worker import app; c = app.conf; "
                           "print(c.broker_url, c.result_backend_transport_options"
                           "['master_name'])"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sentinel://127.0.0.1:26379/0", "m1"]


@pytest.mark.parametrize("value", ["s1", "s1:port", "s1:26379;s2:26379", "s1:26379,"])
def test_a_malformed_sentinel_list_is_refused(monkeypatch, value):
    monkeypatch.setenv("REDIS_SENTINELS", value)
    with pytest.raises(SettingsError, match="REDIS_SENTINELS"):
        get_settings()


# ---- TLS ----------------------------------------------------------------------------------

def test_rediss_gives_every_client_the_ca_and_the_client_certificate(monkeypatch, tmp_path):
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("PEM")
    monkeypatch.setenv("REDIS_URL", "rediss://redis.example:6380/0")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", str(files["ca"]))
    monkeypatch.setenv("REDIS_TLS_CERT_FILE", str(files["cert"]))
    monkeypatch.setenv("REDIS_TLS_KEY_FILE", str(files["key"]))
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(files["ca"]),
                "ssl_certfile": str(files["cert"]), "ssl_keyfile": str(files["key"])}
    celery = celery_settings(target(), {})
    assert celery["broker_use_ssl"] == celery["redis_backend_use_ssl"] == expected
    assert celery["broker_url"] == "rediss://redis.example:6380/0"


@pytest.mark.parametrize(("env", "message"), [
    ({"REDIS_TLS_CA_FILE": "{ca}"}, "REDIS_TLS_CA_FILE is set but REDIS_URL is not rediss://"),
    ({"REDIS_URL": "rediss://h/0", "REDIS_TLS_CERT_FILE": "{ca}"},
     "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"),
    ({"REDIS_URL": "rediss://h/0", "REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"},
     "REDIS_TLS_CA_FILE: cannot read /nonexistent/ca.pem"),
])
def test_tls_settings_that_cannot_work_are_named(monkeypatch, tmp_path, env, message):
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(ca=ca))
    with pytest.raises(SettingsError, match=message):
        get_settings()


# ---- secrets from files -------------------------------------------------------------------

def test_a_secret_comes_from_its_file_without_the_trailing_newline(monkeypatch, tmp_path):
    (tmp_path / "key").write_text(SECRET + "\n")
    monkeypatch.setenv("CUSTOMERIO_API_KEY_FILE", str(tmp_path / "key"))
    assert get_settings().secret("CUSTOMERIO_API_KEY") == SECRET
    assert SECRET in get_settings().secret_values()


def test_redis_url_and_password_come_from_files_too(monkeypatch, tmp_path):
    (tmp_path / "url").write_text("redis://:from-file@example:6390/4\n")
    (tmp_path / "password").write_text("pw-file\n")
    monkeypatch.delenv("REDIS_URL")  # the suite's: REDIS_URL and REDIS_URL_FILE exclude
    monkeypatch.setenv("REDIS_URL_FILE", str(tmp_path / "url"))
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "password"))
    where = target()
    assert where.address_url == "redis://example:6390/4"
    assert where.credentials() == {"password": "pw-file"}


def test_an_empty_secret_file_means_unset(monkeypatch, tmp_path):
    (tmp_path / "token").write_text("")
    monkeypatch.setenv("SEGMENT_ACCESS_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(MissingSetting, match="or name a file holding it in "
                                             "SEGMENT_ACCESS_TOKEN_FILE"):
        get_settings().require("SEGMENT_ACCESS_TOKEN")


def test_a_secret_file_in_dot_env_works_like_one_in_the_environment(monkeypatch, tmp_path):
    (tmp_path / "auth").write_text("prom:pass\n")
    env_file = tmp_path / ".env"
    env_file.write_text(f"METRICS_BASIC_AUTH_FILE={tmp_path / 'auth'}\n")
    from worker.settings import Settings

    assert Settings(_env_file=str(env_file)).secret("METRICS_BASIC_AUTH") == "prom:pass"


def test_a_missing_secret_file_is_one_line_naming_the_variable(tmp_path):
    missing = tmp_path / "nope"
    done = syncfleet("runs", GIS_ACCESS_TOKEN_FILE=str(missing))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"syncfleet: Invalid configuration: GIS_ACCESS_TOKEN_FILE="
                                   f"{missing}: cannot read the file (No such file or "
                                   "directory)")


def test_a_secret_and_its_file_together_are_refused(monkeypatch, tmp_path):
    (tmp_path / "key").write_text(SECRET)
    monkeypatch.setenv("VOUCHERIFY_SECRET_KEY", "other")
    monkeypatch.setenv("VOUCHERIFY_SECRET_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(SettingsError, match="VOUCHERIFY_SECRET_KEY and "
                                            "VOUCHERIFY_SECRET_KEY_FILE are both set") as caught:
        get_settings()
    assert SECRET not in str(caught.value)


def test_only_secrets_take_a_file(monkeypatch, tmp_path):
    (tmp_path / "lc").write_text("1340")
    monkeypatch.setenv("GIS_HOME_LC_ID_FILE", str(tmp_path / "lc"))
    assert get_settings().gis_home_lc_id is None
