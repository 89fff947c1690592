"""A migration run on the run engine (`worker.runs`): `SEGMENT`, and everything a crash,
a redelivery, a lost message or a resume needs (no Celery here).

A migration's one walk (`profiles`) reads Segment's profile id list into slices; each
slice is a *part* of the run, named by its number. Keys, besides the engine's (the run
record, summary, walks, parts and the open-runs index `sf:segment:runs:open`, listed in
`worker/runs.py`):

    sf:segment:run:{id}                 the engine's run record: kind, slice_size, dry_run,
                                        space, project, status, error, attempt; live
                                        counters (profiles_listed, profiles_fetched,
                                        customers_confirmed), parts_redone
    sf:segment:run:{id}:walk:profiles   the walk's checkpoint: cursor, slices (planned),
                                        buffer (ids not yet in a slice), listed_all
    sf:segment:run:{id}:finished        the engine's reported parts: slices with an
                                        outcome in this attempt
    sf:segment:run:{id}:summary:{k}     the summary of attempt k, kept when k+1 starts
    sf:segment:run:{id}:slice:{n}       JSON list of the slice's segment ids (the walk)
    sf:segment:run:{id}:results         hash n -> the slice's result record (JSON)
    sf:segment:run:{id}:counts          hash n -> the slice's counts (JSON), for progress
    sf:segment:run:{id}:done            set of slices that completed (kept on resume)
    sf:segment:run:{id}:calls           hash service -> requests made (all attempts)
    sf:segment:run:{id}:mapped:{n}      JSON checkpoint: the slice's mapped customers (a
                                        retry or redelivery does not fetch Segment again)
    sf:segment:run:{id}:actions:{n}     hash position -> "length:sent at:async action id",
                                        and "position:outcome" -> its final outcome (a
                                        redone slice polls what it sent, never sends twice)
    sf:lock:segment:plan:{id}           one walk of a run at a time
    sf:lock:segment:slice:{id}:{n}      one delivery of a slice at a time

A slice is *done* when it completed (its customers were sent and their async actions
reported, even if some customers failed there); a slice that could not complete (retries
exhausted, a 4xx for the whole request, a failed async action, a 401, a cancel) has
reported but is not done, so a resume redoes it.
"""

from __future__ import annotations

import json

from worker import metrics, runs, store
from worker.formats import Record, dumps, iso
from worker.segment_migration.summary import build_summary, log_summary

WALK = "profiles"
MAPPED_TTL = 7 * 24 * 3600  # checkpoints of slices that never finish go away on their own
COUNT_FIELDS = ("profiles", "sent", "upserted", "skipped", "failed", "warnings")
LIVE = ("profiles_listed", "profiles_fetched", "customers_confirmed")


def summarize(run_id: str, status: str | None) -> Record:
    run = SEGMENT.get(run_id) or {"run_id": run_id, "dry_run": False, "attempt": 1}
    walk = SEGMENT.walk(run_id, WALK) or {}
    return build_summary(run, all_results(run_id), calls(run_id), walk.get("slices", 0),
                         status)


SEGMENT = runs.Runs("segment", summarize, ended=log_summary)


def _k(run_id: str, *parts: object) -> str:
    return SEGMENT.key(run_id, *parts)


# --- the run and its walk ----------------------------------------------------------------

def create_run(run_id: str, slice_size: int, dry_run: bool, space: str, project: str
               ) -> bool:
    """Create the run, bound to the Segment space and Voucherify project it migrates
    between, with its walk open; False if the run exists (then it is a resume)."""
    if not SEGMENT.start(run_id, "migration", slice_size=slice_size, dry_run=dry_run,
                         space=space, project=project, attempt=1):
        return False
    SEGMENT.open_walk(run_id, WALK, {"cursor": "0", "slices": 0, "buffer": [],
                                     "listed_all": False})
    return True


def get_run(run_id: str) -> Record | None:
    return SEGMENT.get(run_id)


def walk_checkpoint(run_id: str) -> Record:
    walk = SEGMENT.walk(run_id, WALK)
    if walk:
        return walk
    run = get_run(run_id) or {}  # a run whose record held its walk (before the engine)
    return {"cursor": run.get("cursor", "0"), "slices": run.get("slices", 0),
            "buffer": run.get("buffer", []), "listed_all": run.get("walk_done", False)}


def save_walk(run_id: str, cursor: str | None, slices: int, buffer: list[str],
              listed_all: bool) -> None:
    """The walk's checkpoint: where to continue, and the ids not yet in a slice."""
    SEGMENT.save_walk(run_id, WALK, cursor=cursor or "", slices=slices, buffer=buffer,
                      listed_all=listed_all)


def add_live(run_id: str, **counters: int) -> None:
    """Progress as it happens (profiles listed, fetched; customers confirmed), for a
    progress bar that moves within a slice, not only when a slice ends."""
    SEGMENT.count(run_id, counters)


# --- slices ----------------------------------------------------------------------------

def store_slice_ids(run_id: str, slice_no: int, ids: list[str]) -> None:
    store.client().set(_k(run_id, "slice", slice_no), dumps(ids))


def slice_ids(run_id: str, slice_no: int) -> list[str]:
    raw = store.client().get(_k(run_id, "slice", slice_no))
    return json.loads(raw) if raw else []


def unlaunched(run_id: str, slices: int) -> list[int]:
    """Planned slices not handed over in this attempt (a resume, a redelivered walk)."""
    launched = store.client().smembers(_k(run_id, "launched"))
    return [n for n in range(slices) if str(n) not in launched]


def slice_outcome(run_id: str, slice_no: int) -> Record | None:
    """The stored record if the slice already has an outcome in this attempt."""
    r = store.client()
    if not r.sismember(_k(run_id, "finished"), slice_no):
        return None
    raw = r.hget(_k(run_id, "results"), slice_no)
    return json.loads(raw) if raw else None


def finish_slice(run_id: str, record: Record) -> None:
    """Store a slice's record, counts and markers, and report the part, in one
    transaction: a slice that has reported has its record, and no checkpoint left."""
    n = record["slice"]
    counts = {name: record.get(name) if isinstance(record.get(name), int)
              else len(record.get(name) or []) for name in COUNT_FIELDS}
    with store.client().pipeline(transaction=True) as pipe:
        pipe.hset(_k(run_id, "results"), n, dumps(record))
        pipe.hset(_k(run_id, "counts"), n, dumps(counts))
        if record.get("ok"):
            pipe.sadd(_k(run_id, "done"), n)
        else:
            pipe.srem(_k(run_id, "done"), n)
        pipe.delete(_k(run_id, "mapped", n), _k(run_id, "actions", n))
        SEGMENT.report(run_id, str(n), pipe)
        pipe.execute()
    if "would_send" not in record:  # a dry run sends nothing
        for outcome, n in (("synced", counts["upserted"]), ("skipped", counts["skipped"]),
                           ("failed", counts["failed"])):
            metrics.add("records", n, job="segment", kind="profile", outcome=outcome)


def done_slices(run_id: str) -> set[int]:
    return {int(n) for n in store.client().smembers(_k(run_id, "done"))}


def all_results(run_id: str) -> dict[int, Record]:
    raw = store.client().hgetall(_k(run_id, "results"))
    return {int(n): json.loads(v) for n, v in raw.items()}


def add_calls(run_id: str, segment: int = 0, voucherify: int = 0) -> None:
    with store.client().pipeline(transaction=False) as pipe:
        if segment:
            pipe.hincrby(_k(run_id, "calls"), "segment", segment)
        if voucherify:
            pipe.hincrby(_k(run_id, "calls"), "voucherify", voucherify)
        pipe.execute()


def calls(run_id: str) -> dict[str, int]:
    raw = store.client().hgetall(_k(run_id, "calls"))
    return {"segment": int(raw.get("segment", 0)), "voucherify": int(raw.get("voucherify", 0))}


# --- checkpoints inside a slice --------------------------------------------------------

def save_mapped(run_id: str, slice_no: int, batch: Record, handled: int = 0) -> None:
    """The slice's mapped profiles so far; `handled`: profiles newly done without a
    send (skipped, or gone from Segment), confirmed with the checkpoint, once."""
    with store.client().pipeline(transaction=True) as pipe:
        pipe.set(_k(run_id, "mapped", slice_no), dumps(batch), ex=MAPPED_TTL)
        if handled:
            pipe.hincrby(_k(run_id), "customers_confirmed", handled)
        pipe.execute()


def get_mapped(run_id: str, slice_no: int) -> Record | None:
    raw = store.client().get(_k(run_id, "mapped", slice_no))
    return json.loads(raw) if raw else None


def actions(run_id: str, slice_no: int) -> dict[str, str]:
    return store.client().hgetall(_k(run_id, "actions", slice_no))


def save_action(run_id: str, slice_no: int, name: str, value: str, confirmed: int = 0
                ) -> None:
    """A bulk's async action id, or (`confirmed`: its customers done or failed) its
    final outcome, counted live with it, once."""
    with store.client().pipeline(transaction=True) as pipe:
        pipe.hset(_k(run_id, "actions", slice_no), name, value)
        pipe.expire(_k(run_id, "actions", slice_no), MAPPED_TTL)
        if confirmed:
            pipe.hincrby(_k(run_id), "customers_confirmed", confirmed)
        pipe.execute()


# --- resume, summary, progress ---------------------------------------------------------

def begin_resume(run_id: str) -> list[int]:
    """Start the next attempt: keep the summary of the last one aside, forget the
    outcomes of slices that did not complete. Returns the slices to redo (those
    planned, not done); the walk continues if it had not listed everything."""
    r = store.client()
    run = get_run(run_id) or {}
    attempt = run.get("attempt", 1)
    summary = r.get(_k(run_id, "summary"))
    if summary is not None:
        r.set(_k(run_id, "summary", attempt), summary)
    done = done_slices(run_id)
    # The live counters start the attempt where the slices kept from before stand.
    kept = [json.loads(raw) for n, raw in r.hgetall(_k(run_id, "counts")).items()
            if int(n) in done]
    SEGMENT.restart(run_id, [str(n) for n in done], attempt=attempt + 1,
                    resumed_at=iso(), profiles_fetched=sum(c["profiles"] for c in kept),
                    customers_confirmed=sum(c["upserted"] + c["failed"] + c["skipped"]
                                            for c in kept))
    walk = walk_checkpoint(run_id)
    SEGMENT.open_walk(run_id, WALK, walk)  # open again, its checkpoint kept
    return [n for n in range(walk["slices"]) if n not in done]


def get_summary(run_id: str) -> Record | None:
    return SEGMENT.summary(run_id)


def progress(run_id: str) -> Record | None:
    """Slices done of total and the counts so far; cheap enough to poll every second."""
    run = get_run(run_id)
    if run is None:
        return None
    r = store.client()
    totals = dict.fromkeys(COUNT_FIELDS, 0)
    for raw in r.hvals(_k(run_id, "counts")):
        for name, value in json.loads(raw).items():
            totals[name] = totals.get(name, 0) + int(value or 0)
    walk, parts = walk_checkpoint(run_id), SEGMENT.progress(run_id)
    return {
        "run_id": run_id, "job": SEGMENT.job, "status": run.get("status"),
        "error": run.get("error"), "attempt": run.get("attempt", 1),
        "dry_run": run.get("dry_run", False), "started_at": run.get("started_at"),
        "walk_done": walk["listed_all"],
        "slices_total": walk["slices"], "slices_finished": parts["parts_finished"],
        "slices_done": r.scard(_k(run_id, "done")), "counts": totals,
        "calls": calls(run_id), "summary_ready": bool(r.exists(_k(run_id, "summary"))),
        "live": {name: run.get(name, 0) for name in LIVE},
    }
