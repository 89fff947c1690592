"""`syncfleet metrics` as a process, and its scrapes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, wait_for
from tests.support.processes import Process

LOGIN = ("prometheus", "scrape-pw-8c1d")
sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port  # noqa: E402

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Exporter:
    def __init__(self, logs: Path, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        full = {**os.environ, "METRICS_BASIC_AUTH": ":".join(LOGIN), **env}
        self.process = Process("exporter", [sys.executable, "-m", "worker", "metrics",
                                            "--host", "127.0.0.1", "--port", str(self.port)],
                               full, logs=logs)

    def wait_answering(self) -> None:
        def answers() -> bool:
            try:
                return requests.get(self.url, timeout=2).status_code == 401  # login first
            except requests.ConnectionError:
                return False

        wait_for(answers, "the exporter", 30, alive=[self.process])

    def get(self) -> requests.Response:
        return requests.get(self.url, auth=LOGIN, timeout=10)

    def samples(self) -> Samples:
        response = self.get()
        assert response.status_code == 200, response.text
        return parse(response.text)


def parse(text: str) -> Samples:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


@contextmanager
def exporter(logs: Path, port: int | None = None, **env: str) -> Iterator[Exporter]:
    """`syncfleet metrics` on `port` (a free one by default), stopped after the block."""
    running = Exporter(logs, port, **env)
    try:
        running.wait_answering()
        yield running
    finally:
        running.process.stop()
