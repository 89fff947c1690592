"""`syncfleet migrate explain ID` for real: a migration by the shipped worker (half of
Voucherify's async actions FAILED), then an upserted, a skipped and a failed profile
explained and compared with what the sandbox's Voucherify received."""

from __future__ import annotations

import requests

from tests.segment.test_migration import user_id
from tests.support.cli import syncfleet, syncfleet_json
from tests.support.segment import run_migration


def test_each_profile_s_fate_is_what_voucherify_received(seg_env, fleet):
    admin = seg_env.admin
    code, none_yet = syncfleet_json("migrate", "explain", "u-1")
    assert code == 1 and none_yet["error"]["code"] == "not_found"

    admin.faults("voucherify", fail_async_actions=0.5)
    summary = run_migration(fleet)
    customers = admin.voucherify_customers()["customers"]
    world = {p["segment_id"]: p for p in admin.world_profiles()}
    assert summary["failed"] and summary["skipped"] and customers

    # Upserted: Voucherify holds it; found by its source_id and by its Segment id.
    source = sorted(customers)[0]
    segment_id = next(s for s, p in world.items() if user_id(p) == source)
    code, upserted = syncfleet_json("migrate", "explain", source)
    assert code == 0, upserted
    assert upserted["fate"] == "upserted" and upserted["reason"] is None
    assert (upserted["source_id"], upserted["segment_id"]) == (source, segment_id)
    assert upserted["run_id"] == summary["run_id"]
    assert upserted["run_status"] == summary["status"]
    assert syncfleet_json("migrate", "explain", segment_id)[1] == {**upserted,
                                                                  "query": segment_id}

    # Skipped: no user_id, so never sent; found by its Segment id.
    skipped = summary["skipped"][0]
    assert user_id(world[skipped["segment_id"]]) is None
    code, shown = syncfleet_json("migrate", "explain", skipped["segment_id"])
    assert code == 0 and shown["fate"] == "skipped"
    assert shown["reason"] == "no user_id external id" and shown["source_id"] is None

    # Failed: sent in a bulk Voucherify received, whose async action FAILED; not stored.
    failed = summary["failed"][0]
    code, shown = syncfleet_json("migrate", "explain", failed["source_id"])
    assert code == 0 and shown["fate"] == "failed" and shown["reason"] == failed["reason"]
    assert shown["segment_id"] == failed["segment_id"]
    assert failed["source_id"] not in customers
    bulks = [r for r in admin.requests(api="voucherify", method="POST")
             if r["path"].endswith("/bulk/async")]
    assert any(failed["source_id"] in {c["source_id"] for c in r["body"]} for r in bulks)
    action_id = shown["reason"].split()[2]  # "async action aa_... FAILED: ..."
    actions = requests.get(f"{seg_env.url}/admin/voucherify/actions", timeout=10).json()
    assert {a["id"]: a["status"] for a in actions["actions"]}[action_id] == "FAILED"

    # A table for people; an id the run does not hold: one line, exit 1.
    table = syncfleet("migrate", "explain", source)
    assert table.returncode == 0 and "upserted" in table.stdout
    unknown = syncfleet("migrate", "explain", "nobody-at-all")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.strip() == (f"syncfleet: no profile nobody-at-all (a source_id or "
                                      f"a Segment profile id) in migration run "
                                      f"{summary['run_id']}")
