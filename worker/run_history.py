"""The runs kept, listed and forgotten (no Celery here).

    sf:runs    zset "{job}:{run id}" -> start time (written by `worker.runs` at start)

The latest runs of every job, newest first (or those started since a time): a run is
listed by its summary once it has one, else by its record; a run whose keys have expired
leaves the index when a listing meets it. A GIS run is kept `GIS_RUNS_KEPT_DAYS` (its
keys expire, its index entry goes when a later run ends) and, once it has its summary
(written `slim` by the engine), as that one key (`compact`); `forget` deletes a run at once.
"""

from __future__ import annotations

import json
import time

from worker import store
from worker.formats import Record, loads_fields
from worker.runs import Runs, run_key


def _index() -> str:
    return store.key("runs")


def recent(n: int | None = 10, job: str | None = None, since: float | None = None
           ) -> list[Record]:
    """The latest `n` runs (of `job`, or of every job; started at `since` or later; no
    `n`: all of them), newest first. Read a page of the index at a time, each page's runs
    in one or two pipelines (`_read`): a handful of round trips for thousands of runs."""
    r = store.client()
    out: list[Record] = []
    start_at, page = 0, 4 * n if n else 500
    while n is None or len(out) < n:
        names = r.zrevrangebyscore(_index(), "+inf", since if since is not None else "-inf",
                                   start=start_at, num=page)
        if not names:
            break
        start_at += len(names)
        wanted = [name for name in names if not job or name.startswith(f"{job}:")]
        while wanted and (n is None or len(out) < n):
            # No more runs read than are still wanted: a run gone makes room for the next.
            ahead = len(wanted) if n is None else n - len(out)
            batch, wanted = wanted[:ahead], wanted[ahead:]
            found = _read(batch)
            gone = [name for name, run in zip(batch, found, strict=True) if run is None]
            if gone:  # its keys expired: unlisted, and the next page starts that much sooner
                r.zrem(_index(), *gone)
                start_at -= len(gone)
            out += [run for run in found if run is not None]
    return out


def _read(names: list[str]) -> list[Record | None]:
    """The runs of index entries ("{job}:{id}"), in their order: each by its summary once
    it has one, else by its record, None when neither is left. One pipeline of GETs, then
    one of HGETALLs for the runs without a summary (running ones), if any."""
    split = [name.partition(":")[::2] for name in names]
    with store.client().pipeline(transaction=False) as pipe:
        for run_job, run_id in split:
            pipe.get(run_key(run_job, run_id, "summary"))
        summaries = pipe.execute()
    # As `runs.stored_summary`: the run id and job its key names are put back.
    found: list[Record | None] = [
        {"job": run_job, "run_id": run_id, **json.loads(raw)} if raw else None
        for (run_job, run_id), raw in zip(split, summaries, strict=True)]
    running = [i for i, run in enumerate(found) if run is None]
    if running:
        with store.client().pipeline(transaction=False) as pipe:
            for i in running:
                pipe.hgetall(run_key(*split[i]))
            records = pipe.execute()
        for i, raw in zip(running, records, strict=True):
            record = loads_fields(raw)
            found[i] = {"job": split[i][0], **record} if record is not None else None
    return found


def forget_older(job: str, seconds: float) -> int:
    """Unlist the runs of `job` started more than `seconds` ago (their keys expire by
    their TTL); returns how many."""
    r = store.client()
    old = [name for name in r.zrangebyscore(_index(), "-inf", time.time() - seconds)
           if name.startswith(f"{job}:")]
    if old:
        r.zrem(_index(), *old)
    return len(old)


def compact(runs: Runs, run_id: str, own: tuple[str, ...] = ()) -> None:
    """An ended run as one key, its summary, which the engine wrote slim already
    (`Runs(kept=slim)`): the record (which the summary holds), its walks, checkpoints and
    parts, and the job's `own` per-run keys (the summary holds what they said) are
    deleted. The summary is neither read nor written again."""
    r = store.client()
    walked = r.smembers(runs.key(run_id, "walked"))
    r.delete(runs.key(run_id), *(runs.key(run_id, name) for name in
                                 ("walks", "walked", "launched", "finished", "pending", *own)),
             *(runs.key(run_id, "walk", name) for name in walked))


# Left out of a kept summary: its key names the run and job (`stored_summary` puts them
# back); the rest only served the run while it ran (its start time is in `started_at`).
LEFT_OUT = ("run_id", "job", "started_ts", "mode", "since_ts", "marks_before")


def slim(summary: Record) -> Record:
    """The summary as history keeps it: without what its key says or only the running
    run needed, and without empty values (readers take a missing one as empty)."""
    return {k: v for k, v in summary.items()
            if k not in LEFT_OUT and v is not None and v != [] and v != {}}


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
        if run_job == job and run_id.endswith(suffix) and (found := _read([name])[0]):
            return found
    return None
