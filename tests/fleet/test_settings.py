"""Bad configuration gives a named, helpful error and never prints a secret."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tests.support import ROOT
from worker.settings import WHERE_TO_GET, MissingSetting, SettingsError, get_settings

SECRET = "tok_live_9f8e7d6c5b4a3210"


@pytest.mark.parametrize("variable", sorted(WHERE_TO_GET))
def test_missing_credential_names_the_variable_and_where_to_get_it(variable):
    with pytest.raises(MissingSetting) as caught:
        get_settings().require(variable)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable} is not set")
    assert WHERE_TO_GET[variable] in str(caught.value)


def test_no_credentials_at_all_is_a_valid_configuration():
    # The worker starts without any (the compose test starts one that way, for real).
    settings = get_settings()
    assert settings.secret_values() == []


def test_a_configured_credential_is_returned_plain(monkeypatch):
    monkeypatch.setenv("CUSTOMERIO_API_KEY", SECRET)
    assert get_settings().secret("CUSTOMERIO_API_KEY") == SECRET
    assert SECRET not in repr(get_settings())  # SecretStr hides it from reprs


def test_empty_value_means_unset(monkeypatch):
    monkeypatch.setenv("GIS_HOME_LC_ID", "")
    monkeypatch.setenv("SEGMENT_ACCESS_TOKEN", "")
    with pytest.raises(MissingSetting, match="SEGMENT_ACCESS_TOKEN"):
        get_settings().require("SEGMENT_ACCESS_TOKEN")
    with pytest.raises(MissingSetting, match="GIS_HOME_LC_ID"):
        get_settings().require("GIS_HOME_LC_ID")


@pytest.mark.parametrize(("variable", "value"), [
    ("GIS_SCAN_INTERVAL", "abc"),
    ("GIS_SCAN_INTERVAL", "-30"),
    ("CUSTOMERIO_MAX_RPS", "-5"),
    ("LOG_LEVEL", "LOUD"),
    # A secret pasted into the wrong variable must not be echoed back.
    ("GIS_HOME_LC_ID", SECRET),
    ("DRY_RUN", SECRET),
])
def test_malformed_variable_is_named_and_its_value_is_not_printed(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        get_settings()
    message = str(caught.value)
    assert variable in message and ".env.example" in message
    assert value not in message
    assert caught.value.__suppress_context__  # pydantic's error (with the input) stays hidden


def test_visibility_timeout_must_outlast_a_task_and_its_countdown(monkeypatch):
    # A retried task waits its countdown as an unacknowledged message, then runs: both
    # must fit in the visibility timeout, or the broker hands it out twice.
    monkeypatch.setenv("VISIBILITY_TIMEOUT", "30")
    monkeypatch.setenv("TASK_TIME_LIMIT", "25")
    monkeypatch.setenv("MAX_RETRY_COUNTDOWN", "10")
    with pytest.raises(SettingsError, match="VISIBILITY_TIMEOUT") as caught:
        get_settings()
    assert "TASK_TIME_LIMIT + MAX_RETRY_COUNTDOWN (35s)" in str(caught.value)
    monkeypatch.setenv("VISIBILITY_TIMEOUT", "36")
    get_settings.cache_clear()
    assert get_settings().visibility_timeout == 36


def test_the_defaults_bring_a_dead_workers_work_back_within_a_minute():
    settings = get_settings()
    # Redelivery after the visibility timeout, plus at most one 5 s sweep, plus the
    # task's own run: under 60 s with the defaults.
    assert settings.visibility_timeout + 5 + settings.task_time_limit <= 60
    assert settings.visibility_timeout > settings.task_time_limit + settings.max_retry_countdown


def test_hard_limit_must_exceed_soft_limit(monkeypatch):
    monkeypatch.setenv("TASK_SOFT_TIME_LIMIT", "700")
    with pytest.raises(SettingsError, match="TASK_TIME_LIMIT must be greater"):
        get_settings()


def test_worker_refuses_bad_configuration_without_leaking_secrets(tmp_path):
    """`celery -A worker worker` with a malformed variable: a named error, no secret."""
    env = {**os.environ, "GIS_SCAN_INTERVAL": "abc", "CUSTOMERIO_API_KEY": SECRET,
           "VOUCHERIFY_MAX_RPM": SECRET}
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "worker", "worker"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "GIS_SCAN_INTERVAL" in output and "VOUCHERIFY_MAX_RPM" in output
    assert SECRET not in output


def test_a_read_that_began_before_a_clear_is_not_kept(monkeypatch):
    # A worker's heartbeat thread reads the settings while a test changes them: the read
    # that saw the old environment must not be what everyone reads after the clear.
    from worker import settings as module

    load, reading, finish = module.load_settings, threading.Event(), threading.Event()

    def slow_load():
        value = load()
        reading.set()
        finish.wait(10)
        return value

    monkeypatch.setenv("GIS_HOME_LC_ID", "1340")
    get_settings.cache_clear()
    monkeypatch.setattr(module, "load_settings", slow_load)
    stale = threading.Thread(target=get_settings)
    stale.start()
    assert reading.wait(10)
    monkeypatch.setenv("GIS_HOME_LC_ID", "2001,2101")
    get_settings.cache_clear()
    monkeypatch.setattr(module, "load_settings", load)
    finish.set()
    stale.join(10)
    assert get_settings().gis_lcs == [2001, 2101]
    assert get_settings() is get_settings()
