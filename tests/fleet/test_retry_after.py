"""`retry_after_seconds`: every header form a 429 may carry, and garbage in it."""

from __future__ import annotations

import email.utils
import time

from worker.http import retry_after_seconds


def test_seconds_and_http_date() -> None:
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after_seconds({"Retry-After": date}) <= 30


def test_voucherify_unix_seconds() -> None:
    assert 5 < retry_after_seconds({"X-Rate-Limit-Retry": str(time.time() + 7)}) <= 7


def test_unreadable_retry_after_falls_back_instead_of_raising() -> None:
    # A 429 with a broken header is still a 429 (retried later), not a crash of the task.
    assert retry_after_seconds({"Retry-After": "soon"}) == 1.0
    later = str(time.time() + 7)
    assert 5 < retry_after_seconds({"Retry-After": "soon", "X-Rate-Limit-Retry": later}) <= 7
