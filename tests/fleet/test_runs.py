"""The run engine of both jobs (worker/runs.py, worker/recovery.py, worker/run_history.py)
on a real Redis, and the CLI that lists both jobs' runs."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.connection import AbstractConnection

from tests.support.cli import syncfleet, syncfleet_json
from worker import recovery, run_history, runs, store
from worker.formats import Record

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Job:
    """A job on the engine, for the test: its summaries count how often they were built,
    its relaunches are recorded instead of sent."""

    def __init__(self) -> None:
        self.built = 0
        self.ended: list[Record] = []
        self.relaunched: list[tuple[str, list[str], dict[str, Any]]] = []
        self.runs = runs.Runs("enginetest", self.summarize, ttl=3600, ended=self.ended.append)
        self.runs.relaunch = lambda *args: self.relaunched.append(args)

    def summarize(self, run_id: str, status: str | None) -> Record:
        self.built += 1
        record = self.runs.get(run_id) or {}
        return {**record, "status": status or runs.final_status(record, record.get("bad", 0))}


@contextmanager
def monitored(redis_client) -> Iterator[list[list[str]]]:
    """What Redis received meanwhile from every client (MONITOR), each command split into
    its words; filled when the block ends."""
    seen: list[list[str]] = []
    with redis_client.monitor() as monitor:  # listening once MONITOR has answered OK

        def listen() -> None:
            for event in monitor.listen():
                if event["command"] == "ECHO monitored":
                    return
                seen.append(event["command"].split(" "))

        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        try:
            yield seen
        finally:
            redis_client.echo("monitored")  # the last command the listener sees
            reader.join(10)
    assert not reader.is_alive()


@pytest.fixture
def round_trips(monkeypatch) -> list[bytes]:
    """What this process sent Redis, one item per round trip (a pipeline is one; redis-py's
    own health-check PINGs are left out), from now on."""
    sent: list[bytes] = []
    send = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if check_health:
            sent.append(command)
        send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


@pytest.fixture
def job(redis_client) -> Iterator[Job]:
    made = Job()
    yield made
    del runs.JOBS["enginetest"]


def test_a_run_is_started_once_halted_with_its_first_reason_and_finished_once(job):
    engine = job.runs
    assert engine.start("r1", "scan", cold_start=True)
    assert not engine.start("r1", "scan")  # a second delivery: the run exists
    record = engine.get("r1")
    assert (record["status"], record["kind"], record["cold_start"]) == ("running", "scan", True)
    assert ISO.match(record["started_at"])
    engine.count("r1", {"people_seen": 3})
    engine.count("r1", {"people_seen": 2, "events_sent": 0})
    assert engine.get("r1")["people_seen"] == 5
    engine.halt("r1", "customerio: 401 check CUSTOMERIO_API_KEY")
    engine.halt("r1", "a later reason")
    assert engine.stopped("r1") == "customerio: 401 check CUSTOMERIO_API_KEY"
    summary = engine.finish_if_complete("r1")  # nothing open, nothing handed over
    assert summary["status"] == "halted" and job.ended == [summary]
    assert engine.finish_if_complete("r1") is None  # written once, not even built again
    assert job.built == 1
    assert engine.summary("r1") == summary
    assert ISO.match(engine.get("r1")["finished_at"])
    assert engine.idle(0) == []  # ended: no longer open


def test_a_run_is_complete_when_its_walks_ended_and_each_part_reported_once(job):
    engine = job.runs
    engine.start("r2", "scan")
    engine.open_walk("r2", "people", {"cursor": "a", "pages": 0})
    engine.open_walk("r2", "people", {"cursor": "reopened", "pages": 9})  # keeps progress
    assert engine.walk("r2", "people") == {"cursor": "a", "pages": 0}
    assert engine.save_walk("r2", "people", cursor="b", pages=1)["cursor"] == "b"
    engine.launch("r2", {"p:0": ["person:1"], "p:1": ["person:2", "person:3"]})
    engine.report("r2", "p:0")
    engine.report("r2", "p:0")  # a redelivered report counts once
    assert engine.progress("r2") == {"walks_open": 1, "parts_launched": 2, "parts_finished": 1}
    assert engine.lost_parts("r2") == {"p:1": ["person:2", "person:3"]}
    assert engine.finish_if_complete("r2") is None
    assert engine.end_walk("r2", "people") == 0
    assert not engine.complete("r2") and engine.finish_if_complete("r2") is None
    engine.report("r2", "p:1")
    assert engine.complete("r2")
    summary = engine.finish_if_complete("r2", by="job.summarize")
    assert (summary["status"], summary["written_by"]) == ("finished", "job.summarize")
    assert engine.finish_if_complete("r2", by="another") is None  # SET NX: the first wins
    assert engine.summary("r2")["written_by"] == "job.summarize"
    assert job.built == 1  # never built for a run that was not complete


def test_cancel_stops_a_running_run_and_a_run_with_nothing_in_flight_ends_cancelled(job):
    engine = job.runs
    engine.start("busy", "scan")
    engine.launch("busy", {"p:0": None})
    assert engine.cancel("busy") and engine.stopped("busy") == runs.CANCELLED
    assert engine.summary("busy") is None  # its part is still out
    assert not engine.cancel("busy")  # not running any more
    engine.report("busy", "p:0")
    assert engine.finish_if_complete("busy")["status"] == "cancelled"
    engine.start("quiet", "scan")
    assert engine.cancel("quiet")
    assert engine.summary("quiet")["status"] == "cancelled"  # ended at once
    assert engine.summary("quiet")["written_by"] == "cancel"
    engine.start("halted", "scan")
    engine.halt("halted", "401")
    assert not engine.cancel("halted") and engine.get("halted")["status"] == "halted"
    assert not engine.cancel("unknown")


def test_a_run_that_can_no_longer_finish_is_closed_incomplete_once(job):
    engine = job.runs
    engine.start("r3", "scan")
    engine.launch("r3", {"p:0": None})
    assert engine.close("r3")["status"] == "incomplete"
    assert engine.close("r3") is None and engine.finish_if_complete("r3") is None


def test_a_restart_reopens_the_run_keeping_the_parts_it_keeps(job):
    engine = job.runs
    engine.start("r4", "migration")
    engine.launch("r4", {"0": 0, "1": 1})
    engine.report("r4", "0")
    engine.report("r4", "1")
    engine.halt("r4", "401")
    engine.finish_if_complete("r4")
    engine.restart("r4", ["0"], attempt=2)
    record = engine.get("r4")
    assert (record["status"], record["attempt"], "error" in record) == ("running", 2, False)
    assert engine.summary("r4") is None and engine.progress("r4")["parts_finished"] == 1
    assert engine.idle(0) == ["r4"]  # open again


def test_forget_deletes_an_ended_run_with_every_key_and_never_a_running_one(job,
                                                                             redis_client):
    engine = job.runs
    for run_id in ("gone", "gone2"):  # "gone2": a run whose id starts like the other's
        engine.start(run_id, "scan")
        engine.open_walk(run_id, "people", {"cursor": "a"})
        engine.launch(run_id, {"p:0": None})
    assert not run_history.forget(engine, "gone")  # running
    engine.halt("gone", "401")
    assert not run_history.forget(engine, "gone")  # halted, its part still out
    engine.report("gone", "p:0")
    engine.end_walk("gone", "people")
    engine.finish_if_complete("gone")
    assert run_history.forget(engine, "gone")
    assert not redis_client.exists(engine.key("gone"))
    assert list(redis_client.scan_iter(engine.key("gone") + ":*")) == []
    assert redis_client.exists(engine.key("gone2"), engine.key("gone2", "walk", "people")) == 2
    assert [r["run_id"] for r in run_history.recent(10, job="enginetest")] == ["gone2"]
    assert engine.get("gone2")["status"] == "running"
    assert not run_history.forget(engine, "gone")  # unknown now


def test_recover_relaunches_what_a_run_lost_and_finishes_one_missing_nothing(job):
    engine = job.runs
    engine.start("lost", "scan")
    engine.open_walk("lost", "people", {"cursor": "a"})
    engine.launch("lost", {"p:0": ["person:1"], "p:1": ["person:2"]})
    engine.report("lost", "p:0")
    assert recovery.recover(engine, "lost") == ["people", "p:1"]
    assert job.relaunched == [("lost", ["people"], {"p:1": ["person:2"]})]
    assert engine.get("lost")["parts_redone"] == 1
    engine.start("orphan", "scan")  # what should have ended it (a chord body) was lost
    engine.launch("orphan", {"p:0": None})
    engine.report("orphan", "p:0")
    assert recovery.recover(engine, "orphan") == []
    assert engine.summary("orphan")["status"] == "finished"
    assert engine.summary("orphan")["written_by"] == "recovery"


def test_the_timer_relaunches_an_idle_run_only_while_the_broker_is_quiet(job,
                                                                         redis_client):
    engine = job.runs
    engine.start("idle", "scan")
    engine.launch("idle", {"p:0": None})
    # Nothing happened to it for a minute: more than LOST_AFTER, less than STALE_AFTER.
    redis_client.zadd(engine.open_index(), {"idle": time.time() - 60})
    redis_client.hset("unacked", "test-held", "{}")  # a message a worker holds
    try:
        assert recovery.look_after() == [] and job.relaunched == []
    finally:
        redis_client.hdel("unacked", "test-held")
    assert recovery.look_after() == ["enginetest:idle:p:0"]
    assert job.relaunched == [("idle", [], {"p:0": None})]
    assert engine.idle(recovery.LOST_AFTER) == []  # active again: not sent twice


def test_status_words():
    assert runs.final_status({"status": "running"}, 0) == "finished"
    assert runs.final_status({"status": "running"}, 2) == "finished_with_errors"
    assert runs.final_status({"status": "halted"}, 2) == "halted"
    assert runs.final_status({"status": "cancelled"}, 0) == "cancelled"


def test_recent_lists_both_jobs_newest_first(redis_client):
    from worker.gis_sync.run_state import GIS
    from worker.segment_migration.state import SEGMENT

    SEGMENT.start("m1", "migration")
    GIS.start("s1", "scan")
    store.client().set(GIS.key("s1", "summary"), '{"run_id": "s1", "status": "finished"}')
    latest = run_history.recent(10)
    assert [(r["job"], r["run_id"], r["status"]) for r in latest] == [
        ("gis", "s1", "finished"), ("segment", "m1", "running")]
    assert [r["run_id"] for r in run_history.recent(10, job="segment")] == ["m1"]


def test_cli_runs_lists_both_jobs(redis_url, redis_client):
    from worker.gis_sync.run_state import GIS
    from worker.segment_migration.state import SEGMENT

    GIS.start("scan-1", "scan")
    GIS.count("scan-1", {"people_failed": 1})
    GIS.finish_if_complete("scan-1")
    SEGMENT.start("mig-1", "migration")
    code, shown = syncfleet_json("runs", REDIS_URL=redis_url)
    assert code == 0
    listed = {(r["job"], r["run_id"], r["status"]) for r in shown}
    assert listed == {("gis", "scan-1", "finished_with_errors"),
                      ("segment", "mig-1", "running")}
    table = syncfleet("runs", REDIS_URL=redis_url).stdout
    assert "scan-1" in table and "mig-1" in table and "finished_with_errors" in table


def test_an_ended_gis_run_is_its_slim_summary_alone_and_stays_so(redis_client):
    from worker.gis_sync import run_state, state, walk
    from worker.gis_sync.run_state import GIS
    from worker.settings import Settings

    scope = state.Scope(1340, "ws-test")
    run_state.start_run("g1", "scan", scope, mode="scan", since_ts=None, marks_before={})
    run_state.open_walks("g1", {"people": None}, moves_marks=False, holds_lock=False)
    GIS.launch("g1", {"people:0": ["person:1"]})
    run_state.add_notes("g1", [{"kind": "person", "id": "1", "reason": "bad"}], [])
    GIS.count("g1", {"people_seen": 1})
    GIS.report("g1", "people:0")
    with monitored(redis_client) as seen:
        run_state.end_walk("g1", "people", None)  # the last thing: the run ends

    # Its summary is written once, slim already (SET NX), and never read back meanwhile.
    on_summary = [cmd[0].upper() for cmd in seen if cmd[1:2] == ["sf:gis:run:g1:summary"]]
    assert on_summary.count("SET") == 1 and "GET" not in on_summary
    written = next(cmd for cmd in seen if cmd[:2] == ["SET", "sf:gis:run:g1:summary"])
    assert "NX" in [word.upper() for word in written[3:]]
    assert sorted(redis_client.scan_iter("sf:gis:run:g1*")) == ["sf:gis:run:g1:summary"]
    kept = json.loads(redis_client.get("sf:gis:run:g1:summary"))
    assert not {"run_id", "job", "started_ts", "mode", "since_ts", "marks_before"} & set(kept)
    assert kept["errors"] == [{"kind": "person", "id": "1", "reason": "bad"}]
    assert "warnings" not in kept  # empty: left out
    summary = GIS.summary("g1")  # read back whole: its key names the run and job
    assert (summary["run_id"], summary["job"], summary["people_seen"]) == ("g1", "gis", 1)
    assert 13 * 86400 < redis_client.ttl("sf:gis:run:g1:summary") <= 14 * 86400

    # Late copies of its tasks bring nothing back, and its id never starts a run again.
    GIS.count("g1", {"people_seen": 5})
    run_state.add_notes("g1", [{"kind": "person", "id": "2", "reason": "late"}], [])
    assert walk.step("g1", "people", None, Settings(), None, time.monotonic() + 5) == 0
    assert not GIS.start("g1", "scan")
    assert sorted(redis_client.scan_iter("sf:gis:run:g1*")) == ["sf:gis:run:g1:summary"]
    assert run_history.recent(5, job="gis")[0]["people_seen"] == 1


def test_recent_reads_a_page_of_runs_in_a_few_round_trips(redis_client, round_trips):
    from worker.gis_sync.run_state import GIS
    from worker.segment_migration.state import SEGMENT

    index, hour_ago = store.key("runs"), time.time() - 3600  # within GIS_RUNS_KEPT_DAYS
    for i in range(40):  # newest last: 30 ended scans, 5 running migrations, 5 expired
        if i % 8 == 3:
            SEGMENT.start(f"m{i}", "migration")
            name = f"segment:m{i}"
        elif i % 8 == 6:
            name = f"gis:gone{i}"  # listed, its keys expired
        else:
            GIS.start(f"s{i}", "scan", lc=1340, workspace="ws-test")
            GIS.finish_if_complete(f"s{i}")
            name = f"gis:s{i}"
        redis_client.zadd(index, {name: hour_ago + i})
    # What the run-at-a-time readers say, newest first.
    expected = [{"job": name.split(":")[0], **found} for name in redis_client.zrevrange(
        index, 0, -1) if (found := runs.stored_summary(*name.split(":"))
                          or runs.stored_record(*name.split(":")))]
    assert len(expected) == 35 and expected[0]["run_id"] == "s39"
    assert "started_ts" not in expected[0] and expected[0]["status"] == "finished"  # slim

    round_trips.clear()
    assert run_history.recent(None) == expected
    # The index's page, the summaries, the records of the runs without one, the expired
    # entries unlisted, the empty next page (a run at a time: 57).
    assert len(round_trips) <= 5
    assert not [n for n in redis_client.zrange(index, 0, -1) if n.startswith("gis:gone")]
    round_trips.clear()
    assert run_history.recent(3, job="segment") == [
        run for run in expected if run["job"] == "segment"][:3]
    assert run_history.recent(4) == expected[:4]
    assert run_history.recent(4, job="gis", since=hour_ago + 36) == [
        run for run in expected if run["job"] == "gis"][:3]
    assert len(round_trips) <= 12
