"""The runs kept, listed and forgotten (no Celery here).

    sf:runs    zset "{job}:{run id}" -> start time (written by `worker.runs` at start)

The latest runs of every job, newest first: a run is listed by its summary once it has
one, else by its record; a run whose keys have expired leaves the index when a listing
meets it. A GIS run's keys expire after a week; `forget` deletes a run at once.
"""

from __future__ import annotations

from worker import store
from worker.formats import Record
from worker.runs import Runs, stored_record, stored_summary


def _index() -> str:
    return store.key("runs")


def recent(n: int = 10, job: str | None = None) -> list[Record]:
    """The latest `n` runs (of `job`, or of every job), newest first."""
    r = store.client()
    out: list[Record] = []
    start_at = 0
    while len(out) < n:
        names = r.zrevrange(_index(), start_at, start_at + 4 * n - 1)
        if not names:
            break
        start_at += len(names)
        for name in names:
            run_job, _, run_id = name.partition(":")
            if job and run_job != job:
                continue
            found = stored_summary(run_job, run_id) or stored_record(run_job, run_id)
            if found is None:
                r.zrem(_index(), name)
                continue
            out.append({"job": run_job, **found})
            if len(out) == n:
                break
    return out


def keep_newest(job: str, keep: int) -> None:
    """Keep the `keep` newest runs of `job` listed (their keys expire by their TTL)."""
    r = store.client()
    names = [n for n in r.zrevrange(_index(), 0, -1) if n.startswith(f"{job}:")]
    if len(names) > keep:
        r.zrem(_index(), *names[keep:])


def forget(runs: Runs, run_id: str) -> bool:
    """Delete an ended run (halted, cancelled, finished: it has its summary) with all
    its keys, and unlist it; False when it is unknown or has not ended (a halted or
    cancelled run ends once what it had in flight has reported)."""
    if runs.summary(run_id) is None:
        return False
    r = store.client()
    doomed = [runs.key(run_id), *r.scan_iter(f"{_glob_escape(runs.key(run_id))}:*",
                                             count=1000)]
    with r.pipeline(transaction=False) as pipe:
        for i in range(0, len(doomed), 500):
            pipe.delete(*doomed[i:i + 500])
        pipe.zrem(_index(), f"{runs.job}:{run_id}")
        pipe.zrem(runs.open_index(), run_id)
        pipe.execute()
    return True


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def ending_with(job: str, suffix: str, before: float, look_at: int = 5000) -> Record | None:
    """The run of `job` whose id ends with `suffix` (a record's run reference, see
    worker/gis_sync/state.py) among the `look_at` runs started at or before `before`,
    newest first; None once it is no longer kept."""
    r = store.client()
    names = r.zrevrangebyscore(_index(), before + 1, "-inf", start=0, num=look_at)
    for name in names:
        run_job, _, run_id = name.partition(":")
        if run_job == job and run_id.endswith(suffix):
            found = stored_summary(run_job, run_id) or stored_record(run_job, run_id)
            if found is not None:
                return {"job": run_job, **found}
    return None
