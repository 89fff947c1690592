"""Flower's configuration file: compose and `make run` point FLOWER_CONF here.

Flower reads this file with tornado's `parse_config_file` (it is executed; every global
named like a Flower option sets that option), after the FLOWER_* environment variables.
A FLOWER_CONF naming a missing file stops Flower at start, so the settings below are never
silently dropped.

1. `/metrics` behind the login. Flower 2.x serves two pages without it: `/healthcheck`
   (kept open: compose's health check uses it) and `/metrics` (Prometheus text: task names,
   worker names, counts). Every other page and the API check the user first; `Metrics.get`
   gets the same check (`tornado.web.authenticated`, as Flower's own pages use): with
   FLOWER_BASIC_AUTH set, no valid login means 401.
2. At most FLOWER_MAX_TASKS (10,000) tasks kept in memory (Flower's default, 100,000, does
   not fit the container's memory limit).
3. The login from a file when FLOWER_BASIC_AUTH_FILE names one (Docker secrets:
   docker-compose.secrets.yml), as the fleet reads its secrets from NAME_FILE.
"""

import os as _os

import tornado.web as _web
from flower.views import monitor as _monitor

if not getattr(_monitor.Metrics.get, "_syncfleet_login", False):
    _monitor.Metrics.get = _web.authenticated(_monitor.Metrics.get)
    _monitor.Metrics.get._syncfleet_login = True

max_tasks = int(_os.environ.get("FLOWER_MAX_TASKS") or 10000)

if _os.environ.get("FLOWER_BASIC_AUTH_FILE"):
    from worker.secret_files import read_secret as _read_secret

    basic_auth = [_read_secret("FLOWER_BASIC_AUTH_FILE", _os.environ["FLOWER_BASIC_AUTH_FILE"])]
    if not basic_auth[0]:
        raise SystemExit("FLOWER_BASIC_AUTH_FILE names an empty file: Flower never runs "
                         "without a login")
    del _read_secret

del _os, _web, _monitor
