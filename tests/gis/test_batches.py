"""customer.io batch splitting and the scan's record bundles (pure functions)."""

from __future__ import annotations

import json

from worker.clients.customerio import ITEM_MAX_BYTES, identify_item, split_batches
from worker.gis_sync.changes import bundles, lower_bound, newest


def test_split_batches_stays_under_the_request_limit_and_keeps_indexes():
    items = [identify_item(str(i), {"bio": "x" * 900}) for i in range(1200)]
    chunks, errors = split_batches(items, max_bytes=100_000)
    assert not errors
    assert [i for chunk in chunks for i, _ in chunk] == list(range(1200))
    for chunk in chunks:
        body = json.dumps({"batch": [item for _, item in chunk]}, separators=(",", ":"))
        assert len(body.encode()) < 100_000


def test_split_batches_refuses_items_over_32_kb():
    big = identify_item("1", {f"a{i}": "y" * 999 for i in range(40)})
    chunks, errors = split_batches([identify_item("0", {}), big, identify_item("2", {})])
    assert [e.index for e in errors] == [1] and str(ITEM_MAX_BYTES) in errors[0].reason
    assert [i for chunk in chunks for i, _ in chunk] == [0, 2]


def test_bundles_keep_a_persons_applications_with_the_person():
    people = [{"id": str(i)} for i in range(10)]
    apps = [{"id": f"a{i}", "person": {"id": str(i % 10)}} for i in range(30)]
    chunks = bundles(people, apps, size=8)
    for ps, aps in chunks:
        ids = {p["id"] for p in ps}
        assert all(a["person"]["id"] in ids for a in aps)
    assert sum(len(ps) + len(aps) for ps, aps in chunks) == 40


def test_marks_move_to_the_newest_update_minus_overlap():
    records = [{"updated_at": "2026-01-01T00:00:00Z"}, {"updated_at": "2026-01-03T00:00:00Z"}]
    assert newest(records, "2026-01-02T00:00:00Z") == "2026-01-03T00:00:00Z"
    assert newest([], "2026-01-02T00:00:00Z") == "2026-01-02T00:00:00Z"


def test_a_record_stamped_in_the_future_moves_the_mark_to_now_only():
    from tests.support.clock import ago, iso

    now = ago(seconds=0)
    future = [{"updated_at": "3000-01-01T00:00:00Z"}, {"updated_at": iso(ago(days=1))}]
    mark = newest(future, iso(ago(days=2)), now=now.timestamp())
    assert mark == iso(now)
    assert lower_bound("2026-01-01T00:10:00Z", 600) == "2026-01-01T00:00:00Z"
    assert lower_bound(None, 600) is None
