"""The keys a run leaves in Redis, seen by periodic SCAN snapshots (a thread).

The keys present when the watch starts are the baseline (the sync's state after the cold
start): they are not new keys; their total size at the start and at the end is reported.
A key made and deleted between two snapshots (under `period` seconds) is not seen: it
holds its bytes for less than a period, so it weighs little at equilibrium.
"""

from __future__ import annotations

import threading
import time

import redis

from bench.steady_metrics import KeySeen


class KeyWatch:
    def __init__(self, client: redis.Redis, period: float = 1.0) -> None:
        self.r = client
        self.period = period
        self.baseline = set(self._names())
        self.baseline_bytes_start = self._sizes(sorted(self.baseline))
        self.alive: dict[bytes, KeySeen] = {}
        self.done: list[KeySeen] = []
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _names(self) -> list[bytes]:
        return list(self.r.scan_iter(count=1000))

    def _sizes(self, names: list[bytes]) -> int:
        return sum(self._probe(names).values())

    def _probe(self, names: list[bytes]) -> dict[bytes, int]:
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.memory_usage(name, samples=0)
        return {n: size or 0 for n, size in zip(names, pipe.execute(), strict=True)}

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.snapshot()

    def snapshot(self) -> None:
        now = time.time()
        present = set(self._names())
        for name in list(self.alive):
            if name not in present:
                seen = self.alive.pop(name)
                seen.gone_at = now
                self.done.append(seen)
        # A baseline key deleted and made again is a new key from then on.
        self.baseline &= present
        new = [n for n in present if n not in self.alive and n not in self.baseline]
        for name, size in self._probe(new).items():
            self.alive[name] = KeySeen(name.decode(errors="replace"), now, size)

    def stop(self) -> tuple[list[KeySeen], float, float, int]:
        """(every new key with its final size and TTL, start, end, baseline bytes now)."""
        self._stop.set()
        self._thread.join()
        self.snapshot()
        ended = time.time()
        names = list(self.alive)
        sizes = self._probe(names)
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.pttl(name)
        for name, ttl in zip(names, pipe.execute(), strict=True):
            seen = self.alive[name]
            seen.size = max(seen.size, sizes[name])
            # -2: went just now (a lifetime of its age); -1: no TTL.
            seen.ttl_at_end = ttl / 1000 if ttl >= 0 else (0.0 if ttl == -2 else -1)
        return ([*self.done, *self.alive.values()], self.started, ended,
                self._sizes(sorted(self.baseline)))
