"""The async-action poll schedule (pure: the client's one HTTP call is replaced)."""

from __future__ import annotations

from typing import Any

import pytest

from worker.clients import voucherify
from worker.clients.voucherify import VoucherifyClient


class Pending(VoucherifyClient):
    """An action that is final at the `final_at`-th poll."""

    def __init__(self, final_at: int) -> None:  # no settings, no session: nothing is sent
        self.final_at, self.polls = final_at, 0

    def async_action(self, action_id: str) -> dict[str, Any]:
        self.polls += 1
        status = "DONE" if self.polls >= self.final_at else "IN_PROGRESS"
        return {"id": action_id, "status": status, "result": {"done_count": 1}}


@pytest.mark.parametrize(("first", "expected"), [
    (0.3, [0.3, 0.6, 1.2, 2.4]),
    (0.0, [0.0, 0.3, 0.6, 1.2]),  # an immediate first poll, then the usual growth
])
def test_polls_grow_even_after_an_immediate_first_poll(monkeypatch, first, expected):
    slept: list[float] = []
    monkeypatch.setattr(voucherify.time, "sleep", slept.append)
    outcome = Pending(final_at=4).wait_for("aa_1", first=first)
    assert outcome.status == "DONE"
    assert slept == pytest.approx(expected)
