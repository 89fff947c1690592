"""What the GIS sync's state costs in Redis per tracked record, with and without the run
reference `syncfleet gis explain` reads (worker/gis_sync/state.py).

    .venv/bin/python bench/state_memory.py [--records 100000]

A private redis-server (the one on PATH) is filled, through the state module's own
encoding, with N people (a digest per attribute) and N applications (a step), once
without and once with a run reference on each value; printed: `used_memory` per record
and the value sizes. Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from redis_server import free_port

from worker.gis_sync import state


def fill(r: redis.Redis, records: int, with_ref: bool) -> None:
    rng, run = random.Random(1), str(uuid.uuid4())
    pipe = r.pipeline(transaction=False)
    for i in range(records):
        ref = state.run_ref(run) if with_ref else None
        known = {a: f"{rng.getrandbits(32):08x}" for a in state.ATTRIBUTES}
        pipe.hset("sf:gis:ws:bench:sent", str(3_000_000 + i), state.encode(known, ref))
        pipe.hset("sf:gis:ws:bench:steps", str(8_000_000 + i), f"3.{ref}" if ref else "3")
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    records = parser.parse_args().records
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                                   "--appendonly", "no", "--dir", workdir],
                                  stdout=subprocess.DEVNULL)
        try:
            r = redis.Redis(port=port, decode_responses=True)
            deadline = time.monotonic() + 10
            while True:
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            print("| run reference | B per record (used_memory) | person value | step value |")
            print("|---|---|---|---|")
            for with_ref in (False, True):
                r.flushall()
                before = r.info("memory")["used_memory"]
                fill(r, records, with_ref)
                per = (r.info("memory")["used_memory"] - before) / (2 * records)
                print(f"| {'yes' if with_ref else 'no'} | {per:.1f} | "
                      f"{len(r.hget('sf:gis:ws:bench:sent', '3000000') or '')} B | "
                      f"{len(r.hget('sf:gis:ws:bench:steps', '8000000') or '')} B |")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
