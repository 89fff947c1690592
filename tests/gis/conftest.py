"""Fixtures of the GIS -> customer.io tests."""

from __future__ import annotations

import pytest

from tests.support.gis import WORLD
from worker.settings import get_settings


@pytest.fixture
def gis_world(sandbox_env, monkeypatch):
    """The sandbox with a small LC world; settings re-read from the env."""
    sandbox_env.admin.reset(WORLD)
    monkeypatch.setenv("GIS_BATCH_THRESHOLD", "150")
    monkeypatch.setenv("GIS_BATCH_SIZE", "100")
    get_settings.cache_clear()
    yield sandbox_env
    get_settings.cache_clear()
