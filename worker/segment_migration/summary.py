"""The run's summary: what happened to every profile, built from the stored slice records.

Format (JSON, stored at sf:segment:run:{id}:summary; status words of `worker.runs`):

    job ("segment"), kind ("migration"), run_id,
    status ("finished" | "finished_with_errors" | "halted" | "cancelled" | "incomplete"),
    error, dry_run,
    attempt, started_at, finished_at, duration_s,
    profiles_seen, customers_sent, customers_upserted (the async actions' done_count),
    would_send (dry run only), unconfirmed (sent, neither done nor in errors),
    skipped  [{segment_id, reason}]            profiles without a usable identifier
    failed   [{segment_id, source_id?, reason}] per customer or per slice that failed
    warnings [{segment_id, source_id, field, reason}] values dropped before sending
    warnings_by_field {field: n}, slices {total, done, failed: [{slice, error}]},
    parts_redone (slices sent again after their message was lost),
    calls {segment, voucherify} (requests made, all attempts and retries included),
    written_by (what wrote it, added by the run engine: segment.summarize, recovery, cancel)
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from worker import runs
from worker.formats import Record, iso

log = logging.getLogger("worker.segment_migration")


def build_summary(run: Record, results: dict[int, Record], calls: dict[str, int],
                  slices_total: int, status: str | None = None) -> Record:
    """`status`: forced (incomplete), else the run's own verdict (`runs.final_status`)."""
    records = [results[n] for n in sorted(results)]
    skipped = [s for r in records for s in r.get("skipped") or []]
    failed = [f for r in records for f in r.get("failed") or []]
    warnings = [w for r in records for w in r.get("warnings") or []]
    failed_slices = [{"slice": r["slice"], "error": r.get("error")}
                     for r in records if not r.get("ok")]
    summary: Record = {
        "job": run.get("job", "segment"), "kind": run.get("kind", "migration"),
        "run_id": run["run_id"],
        "status": status or runs.final_status(run, len(failed) + len(failed_slices)),
        "error": run.get("error"), "dry_run": run["dry_run"], "attempt": run["attempt"],
        "started_at": run.get("started_at"), "finished_at": iso(),
        "duration_s": round(time.time() - run.get("started_ts", time.time()), 2),
        "profiles_seen": sum(r.get("profiles", 0) for r in records),
        "customers_sent": sum(r.get("sent", 0) for r in records),
        "customers_upserted": sum(r.get("upserted", 0) for r in records),
        "unconfirmed": sum(r.get("unconfirmed", 0) for r in records),
        "skipped": skipped, "failed": failed, "warnings": warnings,
        "warnings_by_field": dict(Counter(w["field"] for w in warnings)),
        "slices": {"total": slices_total, "done": len(records) - len(failed_slices),
                   "failed": failed_slices},
        "parts_redone": run.get("parts_redone", 0),
        "calls": calls,
    }
    if run["dry_run"]:
        summary["would_send"] = sum(r.get("would_send", 0) for r in records)
    return summary


def log_summary(summary: Record) -> None:
    log.info("segment migration run=%s status=%s profiles=%d sent=%d upserted=%d skipped=%d "
             "failed=%d warnings=%d segment_calls=%d voucherify_calls=%d duration=%.1fs%s",
             summary["run_id"], summary["status"], summary["profiles_seen"],
             summary["customers_sent"], summary["customers_upserted"], len(summary["skipped"]),
             len(summary["failed"]), len(summary["warnings"]), summary["calls"]["segment"],
             summary["calls"]["voucherify"], summary["duration_s"],
             f" error={summary['error']}" if summary.get("error") else "")
