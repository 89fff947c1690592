"""The fleet's three processes, as compose starts them, write nothing but log records.

`celery -A worker worker --pool=prefork --concurrency=2`, `celery -A worker beat` and
`celery -A worker flower`, real processes on the test Redis (a database of their own),
with LOG_FORMAT and LOG_LEVEL set and a credential configured. Beat sends `gis.scan`
every 2 s; the worker fails it at once (GIS_HOME_LC_ID is missing: a traceback); the
test sends a task that succeeds with a dict for a result and one the worker does not
know (it logs the message body, which holds the credential) and asks Flower for pages
with and without its login. Then everything is stopped and every line of each output,
shutdown notices included, must be a record.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from celery import Celery

from tests.support import ROOT, wait_for
from tests.support.logs import assert_every_line_parses
from tests.support.processes import Process

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port

GIS_TOKEN = "gis_tok_5e1f0c2b9a8d"
VOUCHERIFY_KEY = "vf_secret_77aa21bc04"
FLOWER_LOGIN = ("admin", "flower-pw-4d2c")
RUN_ID = 'log "test" = run\nünïcode'  # in the dicts gis.part_done logs and returns
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Records = list[dict[str, Any]]


@contextmanager
def fleet(redis_url: str, tmp_path: Path, db: int, **settings: str) -> Iterator[dict]:
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"  # no other worker consumes there
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "REDIS_URL": url, "GIS_SCAN_INTERVAL": "2",
           "GIS_ACCESS_TOKEN": GIS_TOKEN, "VOUCHERIFY_SECRET_KEY": VOUCHERIFY_KEY,
           "FLOWER_BASIC_AUTH": ":".join(FLOWER_LOGIN), "FLOWER_ADDRESS": "127.0.0.1",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **settings}
    commands = {"worker": ["worker", "--pool=prefork", "--concurrency=2"],
                "beat": ["beat"], "flower": ["flower", f"--port={port}"]}
    procs: dict[str, Process] = {}
    try:
        for name, args in commands.items():
            procs[name] = Process(name, ["celery", "-A", "worker", *args], env,
                                  cwd=tmp_path, logs=tmp_path)
        yield {"procs": procs, "url": url, "flower": f"http://127.0.0.1:{port}"}
    finally:
        for proc in procs.values():
            proc.stop()


def drive(stack: dict, info: bool) -> dict[str, str]:
    """A little work through each process (`info`: they log at INFO); returns what the
    test sent."""
    procs, alive = stack["procs"], list(stack["procs"].values())
    client = Celery(broker=stack["url"], backend=stack["url"])
    run_id = f"{RUN_ID} {uuid.uuid4()}"  # a run never seen: its summary is logged
    try:
        wait_for(lambda: client.control.ping(timeout=0.5), "the worker to answer ping", 120,
                 alive=alive)
        client.send_task("tests.no_such_task", args=[f"token={GIS_TOKEN}"], queue="default")
        # A chord's body stores no result: this test is its reader, so it asks for one.
        finish = client.send_task("gis.part_done", args=[[], run_id, "p"], queue="gis",
                                  ignore_result=False)
        assert finish.get(timeout=60)["run_id"] == run_id
        if info:  # the pool child logs its success after storing the result
            wait_for(lambda: f"Task gis.part_done[{finish.id}] succeeded"
                     in procs["worker"].log(), "the worker's success line", 60, alive=alive)
        wait_for(lambda: "unregistered task" in procs["worker"].log(),
                 "the worker's unregistered-task error", 60, alive=alive)
        wait_for(lambda: "MissingSetting" in procs["worker"].log(),
                 "beat's gis.scan failing at the worker", 120, alive=alive)
    finally:
        client.close()
    ask_flower(stack["flower"], alive)
    wait_for(lambda: "401 GET /" in procs["flower"].log(), "flower's access log", 30,
             alive=alive)
    return {"finish": finish.id, "run_id": run_id}


def ask_flower(base: str, alive: list[Process]) -> None:
    def healthy() -> bool:
        try:
            return requests.get(f"{base}/healthcheck", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(healthy, "flower's /healthcheck", 120, alive=alive)
    assert requests.get(f"{base}/", timeout=10).status_code == 401
    assert requests.get(f"{base}/api/workers", auth=FLOWER_LOGIN, timeout=30).ok


def run(redis_url: str, tmp_path: Path, db: int, fmt: str, level: str
        ) -> tuple[dict[str, Records], dict[str, str], dict[str, str]]:
    with fleet(redis_url, tmp_path, db, LOG_FORMAT=fmt, LOG_LEVEL=level) as stack:
        sent = drive(stack, info=level == "INFO")
    outputs = {name: proc.log() for name, proc in stack["procs"].items()}
    for name, text in outputs.items():
        assert GIS_TOKEN not in text and VOUCHERIFY_KEY not in text, name
    records = {name: assert_every_line_parses(text, fmt) for name, text in outputs.items()}
    return records, outputs, sent


def find(records: Records, **wanted: Any) -> Records:
    return [r for r in records if all(r.get(k) == v for k, v in wanted.items())]


def assert_worker_records(worker: Records) -> None:
    failures = [r for r in find(worker, task="gis.scan", level="ERROR") if "exc" in r]
    assert failures, "no gis.scan failure with its traceback"
    failure = failures[0]
    assert UUID.fullmatch(failure["task_id"]) and failure["process"].startswith("ForkPool")
    assert failure["msg"].startswith(f"Task gis.scan[{failure['task_id']}] raised unexpected")
    assert failure["exc"].startswith("Traceback (most recent call last):\n")
    assert "MissingSetting: GIS_HOME_LC_ID is not set" in failure["exc"]
    unknown = [r for r in find(worker, level="ERROR") if "tests.no_such_task" in r["msg"]]
    assert unknown and "token=***" in unknown[0]["msg"]  # the body, credential masked
    assert find(worker, level="WARNING", msg="worker: Warm shutdown (MainProcess)")


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "db"), [("logfmt", 10), ("json", 11)])
def test_every_line_of_worker_beat_and_flower_is_a_record(redis_url, tmp_path, fmt, db):
    records, outputs, sent = run(redis_url, tmp_path, db, fmt, "INFO")
    worker, beat, flower = records["worker"], records["beat"], records["flower"]
    assert_worker_records(worker)

    # Beat at INFO: each gis.scan it sends, with the id the worker's lines carry.
    assert find(beat, logger="celery.beat", msg="Scheduler: Sending due task gis-scan (gis.scan)")
    sent_ids = {r["task_id"] for r in find(beat, task="gis.scan") if "Sent" in r["msg"]}
    received = find(worker, task="gis.scan", process="MainProcess")
    assert {r["task_id"] for r in received} & sent_ids, "no scan of beat's seen received"
    assert any("is starting" in r["msg"] for r in find(beat, logger="celery.beat"))

    # The worker's own lines: start, ready, the test's task received and succeeded.
    assert any(r["msg"].endswith(" ready.") for r in find(worker, process="MainProcess"))
    finish = find(worker, task="gis.part_done", task_id=sent["finish"])
    assert {r["process"] == "MainProcess" for r in finish} == {True, False}
    # Its result, a dict holding quotes, "=", a newline and unicode: one value, exact.
    [done] = [r for r in finish if "succeeded in" in r["msg"]]
    assert f"{{'run_id': '{sent['run_id']}', " in done["msg"]

    # Flower: its own lines and tornado's access log, with the 401 as a warning.
    assert any(r["msg"].startswith("Visit me at") for r in flower)
    [denied] = [r for r in find(flower, logger="tornado.access") if " GET / " in r["msg"]]
    assert denied["level"] == "WARNING" and denied["msg"].startswith("401 GET / ")
    assert find(flower, logger="tornado.access", level="INFO")  # 200s at INFO
    assert not [name for name, text in outputs.items() if "\x1b[" in text]  # no colors


@pytest.mark.slow
def test_log_level_warning_silences_info_in_all_three(redis_url, tmp_path):
    records, _, _ = run(redis_url, tmp_path, 12, "logfmt", "WARNING")
    assert_worker_records(records["worker"])
    assert find(records["flower"], logger="tornado.access", level="WARNING")
    chatty = [(name, r["level"], r["msg"][:80]) for name, recs in records.items()
              for r in recs if r["level"] in ("DEBUG", "INFO")]
    assert not chatty


def test_prints_warnings_and_uncaught_exceptions_become_records(tmp_path):
    """What a fleet program writes outside logging after start-up (worker_started,
    beat_started and Flower's hook call the same function)."""
    script = textwrap.dedent("""
        import threading, warnings
        from worker import log_hooks, logs
        logs.setup_process()
        log_hooks.take_over_output(None)
        print("printed\\nover two lines")
        warnings.warn("careful")
        thread = threading.Thread(target=lambda: 1 / 0, name="helper")
        thread.start()
        thread.join()
        raise RuntimeError("the end")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "LOG_FORMAT": "json"})
    assert done.returncode == 1 and done.stdout == ""
    printed, warned, in_thread, uncaught = assert_every_line_parses(done.stderr, "json")
    assert (printed["logger"], printed["level"]) == ("celery.redirected", "WARNING")
    assert printed["msg"] == "printed\nover two lines"
    assert warned["logger"] == "py.warnings" and "UserWarning: careful" in warned["msg"]
    assert in_thread["msg"] == "uncaught exception in thread helper"
    assert in_thread["exc"].endswith("ZeroDivisionError: division by zero")
    assert uncaught["level"] == "CRITICAL" and uncaught["exc"].endswith("RuntimeError: the end")
