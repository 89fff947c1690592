"""The one place where whatever went wrong becomes the CLI's one line and exit status.

`describe` turns an exception into a `CliError` (a machine name, a message naming the
cause and the fix, an exit status); `worker.cli.main` shows it. Commands raise their own
`CliError`s (`display.fail_line`) and let everything else through to here: no
try/except around each call.
"""

from __future__ import annotations

import os
import traceback

from worker.cli.display import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
)

DEBUG = "SYNCFLEET_DEBUG"  # set to 1 to see the traceback of an unexpected error


def describe(exc: BaseException) -> CliError:
    import redis
    from celery.exceptions import TimeoutError as CeleryTimeout
    from kombu.exceptions import OperationalError

    from worker.settings import MissingSetting, SettingsError

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, SettingsError | MissingSetting):
        return CliError(str(exc), "configuration", EXIT_USAGE)
    if isinstance(exc, redis.AuthenticationError):
        return CliError(f"Redis at {_where()} refused the login: check REDIS_PASSWORD (or the "
                        f"password in REDIS_URL) ({exc})", "configuration", EXIT_USAGE)
    if isinstance(exc, redis.RedisError | OperationalError):
        return unreachable(exc)
    if isinstance(exc, CeleryTimeout):
        return CliError(f"timed out: {exc}", "timeout", EXIT_TIMEOUT)
    api = api_error(exc)
    if api is not None:
        return api
    if os.environ.get(DEBUG):
        traceback.print_exception(exc)
    return CliError(f"unexpected error: {type(exc).__name__}: {exc} (set {DEBUG}=1 to see "
                    "where)", "internal", EXIT_FAILED)


def api_error(exc: BaseException) -> CliError | None:
    """A command that reads an API itself (`gis explain`): a refused credential is
    configuration; no answer (5xx, a timeout, a 429, no budget left) is unavailable."""
    from worker.http import ApiError, AuthError, ClientError
    from worker.ratelimit import NoBudget

    if isinstance(exc, AuthError):
        return CliError(str(exc), "credential", EXIT_USAGE)
    if isinstance(exc, ClientError):
        return CliError(str(exc), "refused", EXIT_FAILED)
    if isinstance(exc, ApiError | NoBudget):
        what = str(exc) if isinstance(exc, ApiError) else f"{exc.service}: no budget left now"
        return CliError(f"{what}; try again shortly", "unavailable", EXIT_UNAVAILABLE)
    return None


def unreachable(exc: BaseException) -> CliError:
    from worker import store

    cause = str(exc).rstrip(". ")
    return CliError(f"Redis unreachable at {_where()}: {cause}; start Redis or fix "
                    f"{store.target().setting}", "unavailable", EXIT_UNAVAILABLE)


def _where() -> str:
    """Where Redis is, as the settings say (never a password)."""
    from worker import store

    return store.target().describe()


def require_redis() -> None:
    """Redis answers, or the command stops at once with 'unavailable'."""
    import redis

    from worker import store

    try:
        store.client().ping()
    except redis.AuthenticationError:
        raise
    except redis.RedisError as exc:
        raise unreachable(exc) from None
