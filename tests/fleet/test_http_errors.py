"""Errors survive the trip through a task result: Celery rebuilds them as `cls(*args)`."""

from __future__ import annotations

import pytest

from worker.http import AuthError, ClientError, RateLimited, TransientError
from worker.ratelimit import NoBudget
from worker.settings import MissingSetting


@pytest.mark.parametrize("error", [
    AuthError("gis", "401 on POST /graphql: check GIS_ACCESS_TOKEN", 401, {"error": "x"}),
    ClientError("voucherify", "400 on POST /v1/customers", 400),
    TransientError("segment", "timed out: GET /v1/spaces"),
    RateLimited("customerio", 2.5),
    MissingSetting("GIS_ACCESS_TOKEN"),
    NoBudget("voucherify", 12.5),
])
def test_error_is_rebuilt_from_a_json_result(fleet_app, error):
    backend = fleet_app.backend
    rebuilt = backend.exception_to_python(backend.prepare_exception(error, "json"))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)


def test_missing_setting_names_the_variable_once():
    message = str(MissingSetting("GIS_ACCESS_TOKEN"))
    assert message.count("is not set") == 1 and "expa.aiesec.org" in message


def test_missing_setting_reaches_the_caller_whole(fleet_app, fleet_worker):
    """A real worker, no GIS credential: the caller reads the same helpful message."""
    result = fleet_app.send_task("gis.scan")
    with pytest.raises(MissingSetting) as caught:
        result.get(timeout=30)
    assert str(caught.value) == str(MissingSetting("GIS_ACCESS_TOKEN"))
