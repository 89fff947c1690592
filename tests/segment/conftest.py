"""Fixtures of the Segment -> Voucherify tests."""

from __future__ import annotations

import pytest

from tests.support.segment import PROFILES


@pytest.fixture
def seg_env(sandbox_env, monkeypatch):
    """The sandbox with a small profile world, generous Segment budgets (the budget tests
    set their own), small slices: several per run."""
    sandbox_env.admin.reset({"seed": 1, "profiles": PROFILES, "people": 10,
                             "applications": 10})
    sandbox_env.admin.limits("segment", rps=400)
    for name, value in {"SEGMENT_MAX_RPS": "400", "SEGMENT_SLICE_SIZE": "20",
                        "VOUCHERIFY_MAX_RPM": "600"}.items():
        monkeypatch.setenv(name, value)
    return sandbox_env
