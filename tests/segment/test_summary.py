"""The run summary and a slice's record: pure functions over stored records."""

from __future__ import annotations

from worker.formats import dumps
from worker.segment_migration.slices import failure_record, outcome
from worker.segment_migration.summary import build_summary

RUN = {"run_id": "r1", "status": "running", "error": None, "dry_run": False, "attempt": 1,
       "started_at": "2026-11-23T06:00:00Z", "started_ts": 0.0}


def test_summary_aggregates_slice_records():
    results = {
        0: {"slice": 0, "ok": True, "profiles": 3, "sent": 2, "upserted": 1,
            "skipped": [{"segment_id": "s3", "reason": "no user_id external id"}],
            "failed": [{"segment_id": "s2", "source_id": "u2", "reason": "invalid_customer"}],
            "warnings": [{"segment_id": "s1", "source_id": "u1", "field": "birthdate",
                          "reason": "x"}]},
        1: {"slice": 1, "ok": False, "error": "gave up", "profiles": 1, "sent": 0,
            "upserted": 0, "skipped": [], "warnings": [],
            "failed": [{"segment_id": "s4", "reason": "gave up"}]},
    }
    summary = build_summary(RUN, results, {"segment": 9, "voucherify": 3}, 2)
    assert summary["status"] == "finished_with_errors"
    assert (summary["profiles_seen"], summary["customers_sent"],
            summary["customers_upserted"]) == (4, 2, 1)
    assert [f["segment_id"] for f in summary["failed"]] == ["s2", "s4"]
    assert summary["warnings_by_field"] == {"birthdate": 1}
    assert summary["slices"] == {"total": 2, "done": 1,
                                 "failed": [{"slice": 1, "error": "gave up"}]}
    assert summary["calls"] == {"segment": 9, "voucherify": 3}
    assert "would_send" not in summary


def test_a_halted_run_says_so():
    summary = build_summary({**RUN, "status": "halted", "error": "401 check X"}, {},
                            {"segment": 1, "voucherify": 0}, 2)
    assert summary["status"] == "halted" and summary["error"] == "401 check X"


def test_a_cancelled_run_says_so_and_a_closed_one_is_incomplete():
    calls = {"segment": 1, "voucherify": 0}
    assert build_summary({**RUN, "status": "cancelled"}, {}, calls, 2)["status"] == \
        "cancelled"
    assert build_summary(RUN, {}, calls, 2, status="incomplete")["status"] == "incomplete"


def test_a_clean_run_is_finished():
    results = {0: {"slice": 0, "ok": True, "profiles": 1, "sent": 1, "upserted": 1,
                   "skipped": [], "failed": [], "warnings": []}}
    summary = build_summary(RUN, results, {"segment": 1, "voucherify": 2}, 1)
    assert summary["status"] == "finished" and summary["finished_at"].endswith("Z")
    assert summary["slices"] == {"total": 1, "done": 1, "failed": []}


def test_per_customer_errors_keep_the_vendors_source_id_only():
    from worker.clients.voucherify import AsyncOutcome
    from worker.segment_migration.slices import SliceRecord, _apply_outcome

    chunk = [{"segment_id": "use_a", "customer": {"source_id": "u-1"}},
             {"segment_id": "use_b", "customer": {"source_id": "u-2"}}]
    outcome = AsyncOutcome(id="aa_1", status="DONE", done_count=0, failed_count=2, errors=[
        {"source_id": "u-1", "key": "invalid_customer", "message": "Invalid email"},
        {"code": 400, "key": "invalid_customer", "message": "no source id given"}])
    record = SliceRecord(0, 2)
    _apply_outcome(record, chunk, outcome)
    assert record.ok and record.upserted == 0 and record.failed == [
        {"segment_id": "use_a", "source_id": "u-1",
         "reason": "invalid_customer: Invalid email"},
        # Never an HTTP code posing as a customer's source id.
        {"segment_id": "", "source_id": "", "reason": "invalid_customer: no source id given"}]


def test_a_slice_returns_its_numbers_not_its_lists():
    # What a slice returns is its chord header's result: the body gets every header's in
    # one message, so a slice of 500 with every profile warned about stays small.
    record = failure_record(7, [f"segment-{n:04}" for n in range(500)], "gave up")
    record["warnings"] = [{"segment_id": f"s{n}", "source_id": f"u{n}", "field": "email",
                           "reason": "not an email address"} for n in range(500)]
    small = outcome(record, "task-1")
    assert small == {"slice": 7, "ok": False, "error": "gave up", "profiles": 500,
                     "sent": 0, "upserted": 0, "skipped": 0, "failed": 500,
                     "warnings": 500, "task_id": "task-1"}
    assert len(dumps(small)) < 200 < 50_000 < len(dumps(record))
