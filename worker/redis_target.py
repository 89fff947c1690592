"""Where the fleet's Redis is and how every part of the fleet reaches it: one description,
`RedisTarget`, read from the settings, and nothing else builds a Redis connection.

- A plain Redis: REDIS_URL (`redis://`, or `rediss://` for TLS).
- Or the master that Redis Sentinel names: REDIS_SENTINELS (`host:port,host:port`) and
  REDIS_MASTER_NAME. REDIS_URL then gives only the database, the password and the scheme
  (`rediss://`: TLS); its host and port are not used. REDIS_SENTINEL_PASSWORD is the
  sentinels' own password. After a failover every client asks the sentinels again, so
  the broker, the results, the budgets, the locks and the sync state follow the master.
- REDIS_PASSWORD (or REDIS_PASSWORD_FILE) is Redis's password; it overrides REDIS_URL's.
- TLS (`rediss://`): the server is verified against REDIS_TLS_CA_FILE (else the system's
  CAs); REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE are the client's certificate. With
  sentinels, the sentinels are reached over TLS too, with the same files.

From a target come, and only from it:
- every redis-py client of the fleet: `worker.store.connect(target)` (run state, locks,
  budgets and the `limits` windows, parking, the CLI, the exporter, health);
- Celery's broker and result backend: `celery_settings(target, ...)` (worker/celeryconfig.py).

Redis Cluster is not supported: Celery's Redis broker cannot use one.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from worker.settings import Settings

# A sentinel that does not answer costs this long before the next one is asked.
SENTINEL_TIMEOUT = 5.0
# A dead Redis host (one that drops packets: a connect or a read never gets an answer,
# unlike a stopped Redis, which refuses at once) costs every client of the fleet a bounded
# wait, not forever. A TCP handshake takes milliseconds; 3 s covers one lost SYN (resent
# after 1 s). A reply takes milliseconds too; 5 s covers Redis blocking writes on a slow
# disk's AOF fsync (up to 2 s). Waits for messages are not reads of this kind: kombu sends
# BRPOP with a 1 s server-side timeout and reads its reply only once the socket is
# readable, and the result backend's pub/sub polls with its own timeout.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class RedisTarget:
    url: str
    password: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "mymaster"
    sentinel_password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        def plain(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        sentinels = tuple((host.strip(), int(port)) for host, port in
                          (item.rsplit(":", 1) for item in
                           (settings.redis_sentinels or "").split(",") if item.strip()))
        return cls(settings.redis_url, plain(settings.redis_password), sentinels,
                   settings.redis_master_name, plain(settings.redis_sentinel_password),
                   settings.redis_tls_ca_file, settings.redis_tls_cert_file,
                   settings.redis_tls_key_file)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    @property
    def db(self) -> int:
        return int(urlsplit(self.url).path.strip("/") or 0)

    @property
    def address_url(self) -> str:
        """REDIS_URL without its credentials (`credentials()` has them)."""
        parts = urlsplit(self.url)
        rest = urlunsplit(("", "", parts.path, parts.query, parts.fragment))
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{rest}"  # `//` even hostless

    def credentials(self) -> dict[str, str]:
        """The username and password Redis (master and replicas) is logged in with."""
        parts = urlsplit(self.url)
        found = {"username": unquote(parts.username or ""),
                 "password": self.password or unquote(parts.password or "")}
        return {k: v for k, v in found.items() if v}

    def ssl_options(self) -> dict[str, Any]:
        """TLS options under the names redis-py, kombu and Celery share (empty: no TLS)."""
        if not self.tls:
            return {}
        files = {"ssl_ca_certs": self.ca_file, "ssl_certfile": self.cert_file,
                 "ssl_keyfile": self.key_file}
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED, **{k: v for k, v in files.items() if v}}

    @staticmethod
    def socket_options() -> dict[str, float]:
        """redis-py's (and kombu's) timeouts for a connect and for a reply."""
        return {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": READ_TIMEOUT}

    def sentinel_options(self) -> dict[str, Any]:
        """How the sentinels themselves are reached: their password, TLS, timeouts."""
        options: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT,
                                   "socket_connect_timeout": SENTINEL_TIMEOUT}
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if self.tls:
            options.update(ssl=True, **self.ssl_options())
        return options

    @property
    def setting(self) -> str:
        """The variable that says where Redis is."""
        return "REDIS_SENTINELS" if self.sentinels else "REDIS_URL"

    def describe(self) -> str:
        """Where Redis is, for messages (never a password)."""
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"the master {self.master_name!r} of the sentinels {hosts} (REDIS_SENTINELS)"
        return f"{self.address_url} (REDIS_URL)"


def celery_settings(target: RedisTarget, transport: dict[str, Any]) -> dict[str, Any]:
    """Celery's broker and result backend settings for `target`; `transport` holds the
    transport options the fleet sets anyway (visibility timeout, sweeps, key prefix)."""
    options = {**transport, **target.socket_options()}
    auth = _userinfo(target.credentials())
    if target.sentinels:
        # kombu and Celery's backend: one sentinel:// URL per sentinel, joined by ';'.
        url = ";".join(f"sentinel://{auth}{host}:{port}/{target.db}"
                       for host, port in target.sentinels)
        options.update(master_name=target.master_name,
                       sentinel_kwargs=target.sentinel_options())
    else:
        parts = urlsplit(target.address_url)  # as given, with REDIS_PASSWORD put in
        url = urlunsplit(parts._replace(netloc=auth + parts.netloc))
    tls = target.ssl_options() or None
    return {"broker_url": url, "result_backend": url,
            "broker_transport_options": options,
            "result_backend_transport_options": dict(options),
            "broker_use_ssl": tls, "redis_backend_use_ssl": tls,
            # The result backend reads its timeouts from these (Celery's default for a
            # reply: 120 s; for a connect: none).
            "redis_socket_timeout": READ_TIMEOUT,
            "redis_socket_connect_timeout": CONNECT_TIMEOUT}


def _userinfo(credentials: dict[str, str]) -> str:
    if not credentials:
        return ""
    user = quote(credentials.get("username", ""), safe="")
    password = quote(credentials.get("password", ""), safe="")
    return f"{user}:{password}@" if password else f"{user}@"
