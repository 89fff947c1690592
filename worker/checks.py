"""`syncfleet check`: can the fleet reach Redis, and does each configured credential
work? One cheap read-only call per API; a failure names the variable to fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis

from worker import store
from worker.clients.customerio import CustomerIo
from worker.clients.gis import GisClient
from worker.clients.segment import SegmentClient
from worker.clients.voucherify import VoucherifyClient
from worker.http import ApiError, AuthError
from worker.settings import MissingSetting, Settings


@dataclass
class Check:
    name: str
    status: str  # ok | failed | not configured
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# name -> (credential variables, base URL variable, the one cheap call)
APIS: dict[str, tuple[tuple[str, ...], str, Callable[[Settings], None]]] = {
    "gis": (("GIS_ACCESS_TOKEN", "GIS_HOME_LC_ID"), "GIS_API_URL",
            lambda s: GisClient(s).check(s.gis_lcs[0])),
    "customerio": (("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY"), "CUSTOMERIO_TRACK_URL",
                   lambda s: CustomerIo(s).check()),
    "segment": (("SEGMENT_ACCESS_TOKEN", "SEGMENT_SPACE_ID"), "SEGMENT_PROFILES_URL",
                lambda s: SegmentClient(s).check()),
    "voucherify": (("VOUCHERIFY_APPLICATION_ID", "VOUCHERIFY_SECRET_KEY"),
                   "VOUCHERIFY_API_URL", lambda s: VoucherifyClient(s).check_credentials()),
}


def run_checks(settings: Settings) -> list[Check]:
    redis_check = _redis(settings)
    checks = [redis_check]
    for name, (variables, url_variable, call) in APIS.items():
        checks.append(_api(settings, name, variables, url_variable, call)
                      if not redis_check.failed else
                      Check(name, "failed", "not tried: the fleet's budgets live in Redis"))
    return checks


def _redis(settings: Settings) -> Check:
    try:
        store.client().ping()
    except redis.RedisError as exc:
        return Check("redis", "failed", f"unreachable at {store.target().describe()}: {exc}")
    return Check("redis", "ok", "reachable")


def _api(settings: Settings, name: str, variables: tuple[str, ...], url_variable: str,
         call: Callable[[Settings], None]) -> Check:
    configured = [v for v in variables if getattr(settings, v.lower()) not in (None, "")]
    if not configured:
        return Check(name, "not configured", f"set {' and '.join(variables)} to use it")
    try:
        call(settings)
    except MissingSetting as exc:
        return Check(name, "failed", f"{exc.variable} is not set (the other "
                     f"{len(variables) - 1} {'is' if len(variables) == 2 else 'are'} set)")
    except AuthError as exc:
        return Check(name, "failed", f"{exc.status}: check {' and '.join(variables)}")
    except ApiError as exc:
        return Check(name, "failed", f"{exc}: check {url_variable} and "
                     f"{' and '.join(variables)}")
    return Check(name, "ok", "credentials accepted")
