"""A Redis with Sentinel on this machine: a master, a replica and three sentinels on free
loopback ports, their files in one working directory. The failover tests start one; run
it by hand to try the fleet against a failover:

    python scripts/redis_sentinel.py      # prints the fleet's settings; Ctrl-C stops it all
    redis-cli -p <master port> debug sleep 30   # or kill the master: the replica takes over

The sentinels call the master down after DOWN_AFTER_MS of silence and give a failover
FAILOVER_TIMEOUT_MS. Both are shortened here so a test sees a failover in seconds
(production sentinels use 5-30 s and minutes: docs/scaling.md); nothing else is.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redis_tls
from redis_server import free_port, server_binary, start_with_config, wait_ready

DOWN_AFTER_MS = 1500
FAILOVER_TIMEOUT_MS = 10_000
QUORUM = 2


class SentinelSet:
    """Context manager: a master, a replica and three sentinels watching them."""

    def __init__(self, workdir: str | Path, master_name: str = "mymaster",
                 password: str | None = None, sentinel_password: str | None = None,
                 certs: redis_tls.Certificates | None = None) -> None:
        self.workdir = Path(workdir)
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.certs = certs  # TLS only, everywhere: clients, replication, sentinels
        self.servers: dict[int, subprocess.Popen] = {}  # port -> redis-server (data)
        self.sentinels: dict[int, subprocess.Popen] = {}  # port -> redis-server --sentinel

    # --- start and stop -------------------------------------------------------------------

    def __enter__(self) -> SentinelSet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            master = self._server()
            replica = self._server(replica_of=master)
            self._wait(lambda: self._synced(replica), "the replica's first sync")
            for _ in range(3):
                self._sentinel(master)
            self._wait(self._watching, "the sentinels to see the replica and each other")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in [*self.sentinels.values(), *self.servers.values()]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.sentinels.values(), *self.servers.values()]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _server(self, replica_of: int | None = None) -> int:
        port = free_port()
        lines = [f"replicaof 127.0.0.1 {replica_of}"] if replica_of else []
        if self.password:  # masterauth: a demoted master logs in to the new one
            lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
        # No disk (like the suite's Redis); the first sync starts at once, not after 5 s.
        args = [server_binary(), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--dbfilename", f"dump-{port}.rdb", "--save", "", "--appendonly", "no",
                "--maxmemory-policy", "noeviction", "--repl-diskless-sync-delay", "0"]
        lines = [*self._listen(port), *lines]
        proc = start_with_config(args, "".join(f"{line}\n" for line in lines),
                                 log=str(self.workdir / f"redis-{port}.log"))
        self.servers[port] = proc
        self._ready(port, proc)
        return port

    def _listen(self, port: int) -> list[str]:
        """Configuration lines: the port, and with TLS only TLS, both ways."""
        if self.certs is None:
            return [f"port {port}"]
        c = self.certs
        return ["port 0", f"tls-port {port}", f"tls-cert-file {c.server_cert}",
                f"tls-key-file {c.server_key}", f"tls-ca-cert-file {c.ca}",
                "tls-auth-clients yes", "tls-replication yes",
                f"tls-client-cert-file {c.client_cert}", f"tls-client-key-file {c.client_key}"]

    def _ready(self, port: int, proc: subprocess.Popen) -> None:
        if self.certs is None:
            wait_ready(port, proc)
        else:
            redis_tls.wait_ready(port, proc, self.certs)

    def _tls(self) -> dict[str, object]:
        """redis-py's options for this set's servers and sentinels."""
        if self.certs is None:
            return {}
        return {"ssl": True, "ssl_ca_certs": str(self.certs.ca),
                "ssl_certfile": str(self.certs.client_cert),
                "ssl_keyfile": str(self.certs.client_key)}

    def _sentinel(self, master: int) -> int:
        port = free_port()
        name = self.master_name
        lines = [*self._listen(port), "bind 127.0.0.1", f"dir {self.workdir}",
                 f"logfile {self.workdir / f'sentinel-{port}.log'}",
                 f"sentinel monitor {name} 127.0.0.1 {master} {QUORUM}",
                 f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
                 f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
                 f"sentinel parallel-syncs {name} 1"]
        if self.password:
            lines.append(f"sentinel auth-pass {name} {self.password}")
        if self.sentinel_password:  # also what the sentinels log in to each other with
            lines.append(f"requirepass {self.sentinel_password}")
        config = self.workdir / f"sentinel-{port}.conf"  # the sentinel rewrites it
        config.write_text("".join(f"{line}\n" for line in lines))
        proc = subprocess.Popen([server_binary(), str(config), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.sentinels[port] = proc
        self._ready(port, proc)
        return port

    # --- what the sentinels say ------------------------------------------------------------

    def _sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.sentinel_password, decode_responses=True,
                           socket_timeout=2, **self._tls())

    def _named_by(self, port: int) -> int:
        with self._sentinel_client(port) as sentinel:
            return int(sentinel.sentinel_get_master_addr_by_name(self.master_name)[1])

    def _watching(self) -> bool:
        for port in self.sentinels:
            with self._sentinel_client(port) as sentinel:
                state = sentinel.sentinel_master(self.master_name)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] != 2:
                return False
        return True

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers names it."""
        for port, proc in self.sentinels.items():
            if proc.poll() is None:
                return self._named_by(port)
        raise RuntimeError("no sentinel is running")

    def kill_master(self, unreplicated: int = 0) -> int:
        """SIGKILL the master (no shutdown, nothing saved or sent on); returns its port.

        `unreplicated`: first stop the replica (SIGSTOP) until the master has taken at least
        this many bytes of writes it never sent on, then kill the master and let the
        replica go on: the replica is promoted without them, as after an asynchronous
        failover whose replica lagged. The writes the master acknowledged meanwhile are
        lost for good."""
        port = self.master_port()
        replicas = [p for p in self.servers if p != port and self.servers[p].poll() is None]
        if unreplicated:
            start = self._offset(port)
            for replica in replicas:
                self.servers[replica].send_signal(signal.SIGSTOP)
            try:
                self._wait(lambda: self._offset(port) - start >= unreplicated,
                           f"{unreplicated} bytes of writes the replica never sees")
            finally:
                self.servers[port].send_signal(signal.SIGKILL)
                for replica in replicas:
                    self.servers[replica].send_signal(signal.SIGCONT)
        self.servers[port].send_signal(signal.SIGKILL)
        self.servers[port].wait(10)
        return port

    def _offset(self, port: int) -> int:
        with self._server_client(port) as server:
            return int(server.info("replication")["master_repl_offset"])

    def wait_promoted(self, old: int, timeout: float = 60) -> int:
        """Wait until every sentinel names a new master, and it acts as one."""
        def promoted() -> bool:
            named = {self._named_by(port) for port in self.sentinels}
            return len(named) == 1 and old not in named and self._role(named.pop()) == "master"

        self._wait(promoted, "the sentinels to promote the replica", timeout)
        return self.master_port()

    def _server_client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True,
                           socket_timeout=2, **self._tls())

    def _role(self, port: int) -> str:
        with self._server_client(port) as server:
            return server.execute_command("ROLE")[0]

    def _synced(self, replica: int) -> bool:
        with self._server_client(replica) as server:
            return server.info("replication").get("master_link_status") == "up"

    def _wait(self, check: object, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except Exception:  # a sentinel still starting: ask again
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout}s waiting for {what} "
                                   f"(logs in {self.workdir})")
            time.sleep(0.1)

    def env(self) -> dict[str, str]:
        """The fleet's settings for this Redis: the sentinels name the master."""
        env = {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinels),
               "REDIS_MASTER_NAME": self.master_name,
               "REDIS_URL": "rediss:///0" if self.certs else "redis:///0"}
        if self.certs:
            env.update(REDIS_TLS_CA_FILE=str(self.certs.ca),
                       REDIS_TLS_CERT_FILE=str(self.certs.client_cert),
                       REDIS_TLS_KEY_FILE=str(self.certs.client_key))
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--password", help="Redis's password (REDIS_PASSWORD)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="syncfleet-sentinel-")
    with SentinelSet(workdir, password=args.password) as redis_set:
        for name, value in redis_set.env().items():
            print(f"export {name}={value}")
        print(f"# master on port {redis_set.master_port()}; files in {workdir}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
