"""The real Prometheus (Debian's `prometheus` and `promtool`, found or fetched by
scripts/test_tools.py) for the alert tests:

- `Prometheus`: a server on a free loopback port, configured from
  ops/prometheus/prometheus.example.yml (its job, basic_auth and labels as shipped; only
  the target, the password file and the intervals are the test's), evaluating
  ops/prometheus/alerts.yml; asked through its HTTP API.
- `RuleTest`: a `promtool test rules` file written at test time, for what a test cannot
  wait for (`for:` durations, hour-long windows): input series built from what the real
  server scraped, evaluated by Prometheus's own rule engine.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support import ROOT, wait_for
from tests.support.processes import Process
from tests.support.tools import require

EXAMPLE = ROOT / "ops" / "prometheus" / "prometheus.example.yml"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
# Seconds between scrapes (the example's: 30 s), and their timeout (the default: 10 s): long
# enough for the exporter's answer with Redis away (it rides out ~4.5 s of it first:
# worker/store.py). The rules are evaluated every second (the default: 1 min).
SCRAPE_EVERY = 5
EVALUATE_EVERY = 1
RULES = {rule["alert"]: rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
         for rule in group["rules"]}


def shipped_job() -> dict[str, Any]:
    (job,) = yaml.safe_load(EXAMPLE.read_text())["scrape_configs"]
    return job


def config(target: str, password_file: Path) -> dict[str, Any]:
    """The example's scrape job pointed at `target`, scraped every SCRAPE_EVERY s."""
    job = shipped_job()
    job.update(scrape_interval=f"{SCRAPE_EVERY}s", scrape_timeout=f"{SCRAPE_EVERY}s",
               static_configs=[{"targets": [target]}],
               basic_auth={**job["basic_auth"], "password_file": str(password_file)})
    return {"global": {"evaluation_interval": f"{EVALUATE_EVERY}s"},
            "scrape_configs": [job], "rule_files": [str(ALERTS)]}


class Prometheus:
    def __init__(self, directory: Path, target: str, password: str, port: int) -> None:
        password_file = directory / "syncfleet.password"
        password_file.write_text(password)
        config_file = directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config(target, password_file)))
        self.url = f"http://127.0.0.1:{port}"
        self.target = target
        self.process = Process("prometheus", [
            require("prometheus"), f"--config.file={config_file}",
            f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-admin-api", "--log.level=warn"], {}, cwd=directory, logs=directory)
        wait_for(self._ready, "Prometheus to be ready", 60, alive=[self.process])

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def _api(self, path: str, **params: str) -> Any:
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def forget(self) -> None:
        """Delete every series scraped so far, so that a test's windows (a delta over an
        hour) hold only its own scrapes (the admin API)."""
        answer = requests.post(f"{self.url}/api/v1/admin/tsdb/delete_series",
                               params={"match[]": '{job="syncfleet"}'}, timeout=30)
        assert answer.status_code == 204, answer.text

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` gives now: [{"metric": labels, "value": [t, "v"]}]."""
        return self._api("query", query=expr)["result"]

    def samples(self, selector: str, seconds: int) -> list[dict[str, Any]]:
        """What was scraped of `selector` in the last `seconds`: [{"metric", "values"}]."""
        return self._api("query", query=f"{selector}[{seconds}s]")["result"]

    def series(self, match: str) -> list[dict[str, str]]:
        return self._api("series", **{"match[]": match})

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """The rule's alerts (pending or firing), as the server evaluates them now."""
        return [a for a in self._api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def fires(self, name: str) -> list[dict[str, Any]]:
        """The rule's expression now: its result is the alerts' labels (empty: healthy)."""
        return self.query(RULES[name]["expr"])

    def scraped(self) -> None:
        """Wait for a scrape that started after now, and the rules' evaluation after it."""
        since = time.time()
        scrapes = f'timestamp(up{{instance="{self.target}"}})'
        wait_for(lambda: any(float(s["value"][1]) > since for s in self.query(scrapes)),
                 "a new scrape", 60, alive=[self.process])
        stored = time.time()  # the scrape's samples are stored: the next evaluation sees them
        wait_for(lambda: self._evaluated() > stored, "the rules' evaluation", 60,
                 alive=[self.process])

    def _evaluated(self) -> float:
        (group,) = self._api("rules")["groups"]
        return datetime.fromisoformat(group["lastEvaluation"]).timestamp()

    def stop(self) -> None:
        self.process.stop()


def selector(labels: dict[str, str]) -> str:
    """A series as promtool's input names it: name{label="value", …}."""
    name = labels.get("__name__", "")
    rest = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())
                     if k != "__name__")
    return f"{name}{{{rest}}}"


def alert_labels(result: dict[str, Any], name: str) -> dict[str, str]:
    """The labels an alert of rule `name` carries for one result of its expression."""
    labels = {k: v for k, v in result["metric"].items() if k != "__name__"}
    return {**labels, **RULES[name].get("labels", {})}


class RuleTest:
    """One `promtool test rules` file: series sampled every `interval` (the example's
    scrape interval), and when each alert must (not) fire."""

    def __init__(self, directory: Path, interval: str, name: str = "alerts") -> None:
        self.file = directory / f"{name}_test.yml"
        self.interval = interval
        self.series: dict[str, str] = {}
        self.cases: list[dict[str, Any]] = []

    def add_series(self, labels: dict[str, str], values: list[float] | str) -> None:
        text = values if isinstance(values, str) else " ".join(f"{v:g}" for v in values)
        self.series[selector(labels)] = text

    def expect(self, at: str, name: str, firing: list[dict[str, str]],
               annotations: dict[str, str] | None = None) -> None:
        """At `at` (e.g. "35m"), rule `name` fires for exactly these label sets."""
        shown = annotations or RULES[name]["annotations"]
        self.cases.append({"eval_time": at, "alertname": name, "exp_alerts": [
            {"exp_labels": labels, "exp_annotations": shown} for labels in firing]})

    def run(self) -> str:
        self.file.write_text(yaml.safe_dump({
            "rule_files": [str(ALERTS)],
            "tests": [{"interval": self.interval,
                       "input_series": [{"series": s, "values": v}
                                        for s, v in self.series.items()],
                       "alert_rule_test": self.cases}]}, sort_keys=False))
        done = subprocess.run([require("promtool"), "test", "rules", str(self.file)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{self.file.read_text()}"
        return done.stdout
