"""Every setting of the fleet, read once from the environment and an optional `.env`.

Credentials are optional at start-up so that one job's missing keys never stop the
other job: a task asks for what it needs with `require(...)`, which fails at once
with a message naming the variable and where to get it.
"""

from __future__ import annotations

import os
import threading
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from worker.secret_files import SecretFileError, SecretFiles

# Where a user finds each credential; shown when one is missing.
WHERE_TO_GET: dict[str, str] = {
    "CUSTOMERIO_SITE_ID": "customer.io > Settings > Workspace Settings > API and webhook "
    "credentials > Tracking API keys (the Site ID column)",
    "CUSTOMERIO_API_KEY": "customer.io > Settings > Workspace Settings > API and webhook "
    "credentials > Tracking API keys (the API Key column)",
    "SEGMENT_ACCESS_TOKEN": "Segment > Unify > Unify settings > API access > Generate token "
    "(a Profile API access token)",
    "SEGMENT_SPACE_ID": "Segment > Unify > Unify settings > API access (the Space ID, "
    "also in the space's URL, e.g. spa_...)",
    "VOUCHERIFY_APPLICATION_ID": "Voucherify > Project settings > Application Keys "
    "(Application ID)",
    "VOUCHERIFY_SECRET_KEY": "Voucherify > Project settings > Application Keys (Secret Key)",
    "GIS_ACCESS_TOKEN": "log in to https://expa.aiesec.org and copy the access_token "
    "(or use an API token from your MC's IM team)",
    "GIS_HOME_LC_ID": "the id of your local committee in EXPA (the number in the "
    "committee's URL, e.g. expa.aiesec.org/committees/1340); several LCs: 1340,1341",
    "METRICS_BASIC_AUTH": "choose a login as user:password; Prometheus sends it "
    "(basic_auth of its scrape job, ops/prometheus/prometheus.example.yml)",
}

SECRET_FIELDS = (
    "redis_password",
    "redis_sentinel_password",
    "customerio_api_key",
    "segment_access_token",
    "voucherify_secret_key",
    "gis_access_token",
    "gis_refresh_token",
    "gis_client_secret",
    "metrics_basic_auth",
)
# Settings that may be given as NAME_FILE (a file holding the value: Docker secrets).
# REDIS_URL too: it may carry Redis's password.
FILE_SETTINGS = (*SECRET_FIELDS, "redis_url")


_HOST_PORTS = r"^\s*[^\s,:]+:\d+\s*(,\s*[^\s,:]+:\d+\s*)*$"  # host:port,host:port


class MissingSetting(RuntimeError):
    """A task needs a setting that is not configured."""

    def __init__(self, variable: str) -> None:
        super().__init__(variable)  # Celery rebuilds a task's error as `cls(*args)`
        self.variable = variable

    def __str__(self) -> str:
        where = WHERE_TO_GET.get(self.variable, "see .env.example")
        file = (f", or name a file holding it in {self.variable}_FILE"
                if self.variable.lower() in FILE_SETTINGS else "")
        return (f"{self.variable} is not set. Set it in the environment or in .env{file}. "
                f"Where to get it: {where}.")


class Settings(BaseSettings):
    # SYNCFLEET_ENV_FILE lets tests ignore a developer's own .env.
    model_config = SettingsConfigDict(
        env_file=os.environ.get("SYNCFLEET_ENV_FILE", ".env"), env_file_encoding="utf-8",
        extra="ignore", case_sensitive=False,
        # `NAME=` (as in a copied .env.example) means unset, not "" or a bad integer.
        env_ignore_empty=True)

    # The fleet's Redis (worker/redis_target.py: how every connection is made from these)
    redis_url: str = "redis://localhost:6379/0"
    redis_password: SecretStr | None = Field(None, description="Redis's password (the "
                                             "master's and replicas'); overrides REDIS_URL's")
    redis_sentinels: str | None = Field(None, pattern=_HOST_PORTS, description="host:port "
                                        "of each Redis Sentinel, comma-separated: they name "
                                        "the master")
    redis_master_name: str = Field("mymaster", min_length=1, description="the master's "
                                   "name in the sentinels' configuration")
    redis_sentinel_password: SecretStr | None = Field(None, description="the sentinels' "
                                                      "own password (requirepass)")
    redis_tls_ca_file: str | None = Field(None, description="CA certificate(s) a rediss:// "
                                          "server is verified with (PEM)")
    redis_tls_cert_file: str | None = Field(None, description="client certificate (PEM)")
    redis_tls_key_file: str | None = Field(None, description="client certificate's key (PEM)")
    redis_key_prefix: str = Field("sf", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                                  description="first part of every key the fleet writes; "
                                  "two fleets sharing one Redis use two prefixes")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["logfmt", "json"] = "logfmt"
    dry_run: bool = False
    # Short tasks are what bring a dead worker's work back within a minute: the broker
    # redelivers after VISIBILITY_TIMEOUT, which must outlast a task and its countdown.
    task_soft_time_limit: int = Field(15, gt=0, description="seconds")
    task_time_limit: int = Field(20, gt=0, description="seconds")
    visibility_timeout: int = Field(35, gt=0, description="seconds before an unacked "
                                    "message is redelivered")
    max_retry_countdown: int = Field(10, gt=0, description="longest wait a retry holds "
                                     "as a countdown; longer waits are parked in Redis")
    result_expires: int = Field(3600, gt=0)
    rate_limit_margin: float = Field(0.04, ge=0, lt=0.5, description="share of every "
                                     "*_MAX_RPS / *_MAX_RPM / bulk cap kept unused")

    # customer.io Track API
    customerio_track_url: str = "https://track.customer.io"
    customerio_site_id: str | None = None
    customerio_api_key: SecretStr | None = None
    customerio_max_rps: float = Field(100, gt=0)
    customerio_use_batch: bool = True

    # Segment Profile API
    segment_profiles_url: str = "https://profiles.segment.com"
    segment_access_token: SecretStr | None = None
    segment_space_id: str | None = None
    segment_max_rps: float = Field(100, gt=0)
    segment_source_id_type: str = "user_id"
    segment_slice_size: int = Field(200, gt=0)
    segment_traits_page_size: int = Field(200, gt=0, le=200)
    segment_fetch_concurrency: int = Field(8, gt=0, le=64, description="profiles one "
                                           "slice fetches at once")
    segment_extra_traits_to_metadata: bool = True

    # Voucherify
    voucherify_api_url: str = "https://api.voucherify.io"
    voucherify_application_id: str | None = None
    voucherify_secret_key: SecretStr | None = None
    voucherify_max_rpm: float = Field(100, gt=0)
    voucherify_bulk_size: int = Field(100, gt=0)
    voucherify_max_bulk_per_hour: int = Field(0, ge=0, description="0 = no hourly cap")

    # AIESEC GIS
    gis_api_url: str = "https://gis-api.aiesec.org"
    gis_auth_url: str = "https://auth.aiesec.org/oauth/token"
    gis_access_token: SecretStr | None = None
    gis_refresh_token: SecretStr | None = None
    gis_client_id: str | None = None
    gis_client_secret: SecretStr | None = None
    gis_home_lc_id: str | None = Field(None, pattern=r"^\s*\d+\s*(,\s*\d+\s*)*$",
                                       description="an LC id, or several: 1340,1341")
    gis_scan_interval: int = Field(300, gt=0)
    gis_scan_overlap: int = Field(600, ge=0, description="seconds re-read before the mark")
    gis_max_rps: float = Field(10, gt=0)
    gis_page_size: int = Field(500, gt=0, le=500)
    gis_sync_incoming: bool = True
    gis_incoming_people_refresh: int = Field(900, ge=0, description="seconds between two "
                                             "reads by id of the people behind the LC's "
                                             "open incoming applications; 0 = never")
    gis_event_name_field: Literal["short_name", "short_name_display"] = "short_name"
    gis_status_events: str | None = Field(None, description="JSON object overriding the "
                                          "status -> [step, event type, timestamp field] table")
    cold_start_event_window: int = Field(72 * 3600, ge=0)
    gis_runs_kept_days: int = Field(14, gt=0, description="days a GIS run's summary is "
                                    "kept and listed")
    gis_scan_lock_timeout: int = Field(60, gt=0, description="seconds; renewed while a "
                                       "scan runs, so a dead scan frees it this fast")
    gis_batch_threshold: int = Field(200, ge=0, description="changed records from which a "
                                     "scan sends through customer.io's batch API")
    gis_batch_size: int = Field(200, gt=0, description="records per gis.sync_batch task")
    gis_failed_max_attempts: int = Field(5, gt=0, description="retries of a failed record "
                                         "before it is parked as dead")
    gis_failed_max_age: int = Field(7 * 86400, gt=0, description="seconds a record may keep "
                                    "failing before it is parked as dead")

    # Operations: health verdict and Prometheus metrics
    health_max_failed: int = Field(1000, ge=0, description="failed records (GIS) beyond "
                                   "which the fleet reports itself unhealthy")
    metrics_port: int = Field(9808, gt=0, lt=65536)
    metrics_basic_auth: SecretStr | None = Field(None, description="user:password the "
                                                 "exporter's /metrics asks for")

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = SecretFiles(settings_cls, FILE_SETTINGS, env_settings, dotenv_settings)
        return init_settings, env_settings, dotenv_settings, files

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        db = parts.path.strip("/")
        if parts.scheme not in ("redis", "rediss") or (db and not db.isdigit()) or \
                not _port_ok(value):
            raise ValueError("must be redis://[:password@]host:port/db (rediss:// for TLS); "
                             "for Redis Sentinel set REDIS_SENTINELS and REDIS_MASTER_NAME")
        problem = _options_problem(value)
        if problem:
            raise ValueError(f"{problem} (options after ?: those of redis-py's URLs, "
                             "such as ?socket_timeout=10)")
        return value

    @model_validator(mode="after")
    def _tls_fits(self) -> Settings:
        files = {"REDIS_TLS_CA_FILE": self.redis_tls_ca_file,
                 "REDIS_TLS_CERT_FILE": self.redis_tls_cert_file,
                 "REDIS_TLS_KEY_FILE": self.redis_tls_key_file}
        given = [name for name, path in files.items() if path]
        if given and urlsplit(self.redis_url).scheme != "rediss":
            raise ValueError(f"{given[0]} is set but REDIS_URL is not rediss:// (TLS)")
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            raise ValueError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
        for name in given:
            if not os.access(files[name] or "", os.R_OK):
                raise ValueError(f"{name}: cannot read {files[name]}")
        return self

    @field_validator("gis_home_lc_id", mode="before")
    @classmethod
    def _lc_ids_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _timeouts_fit(self) -> Settings:
        if self.task_time_limit <= self.task_soft_time_limit:
            raise ValueError("TASK_TIME_LIMIT must be greater than TASK_SOFT_TIME_LIMIT")
        # A retried task waits its countdown as an unacknowledged message, then runs.
        longest = self.task_time_limit + self.max_retry_countdown
        if self.visibility_timeout <= longest:
            raise ValueError(f"VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed "
                             f"TASK_TIME_LIMIT + MAX_RETRY_COUNTDOWN ({longest}s), "
                             "or tasks run twice")
        return self

    @property
    def gis_lcs(self) -> list[int]:
        """The LCs to sync (GIS_HOME_LC_ID may list several), each once, in order."""
        ids = (int(p) for p in (self.gis_home_lc_id or "").split(",") if p.strip())
        return list(dict.fromkeys(ids))

    def require(self, *names: str) -> None:
        """Fail with a helpful message unless every named variable is set."""
        for name in names:
            if getattr(self, name.lower()) in (None, ""):
                raise MissingSetting(name.upper())

    def secret(self, name: str) -> str:
        """The plain value of a credential, after `require`."""
        self.require(name)
        value = getattr(self, name.lower())
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    def secret_values(self) -> list[str]:
        """Every configured credential, for the log redaction filter."""
        values = (getattr(self, f) for f in SECRET_FIELDS)
        found = [v.get_secret_value() for v in values if v and v.get_secret_value()]
        url_password = urlsplit(self.redis_url).password
        return found + [url_password] if url_password else found


def _port_ok(url: str) -> bool:
    try:
        urlsplit(url).port  # noqa: B018 - urlsplit reads the port only when asked for it
    except ValueError:
        return False
    return True


def _options_problem(url: str) -> str | None:
    """What redis-py would refuse in the URL's options (?socket_timeout=…), or None."""
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        return str(exc).rstrip(".")
    tls = urlsplit(url).scheme == "rediss"
    unknown = [name for name in parse_qs(urlsplit(url).query)
               if name not in URL_QUERY_ARGUMENT_PARSERS and not (tls and name.startswith("ssl_"))]
    return f"unknown option {unknown[0]!r}" if unknown else None


class SettingsError(RuntimeError):
    """The configuration is malformed; the message names each bad variable."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
    except SecretFileError as exc:
        raise SettingsError(f"Invalid configuration: {exc}") from None


class _Cached:
    """`load_settings`, read once. Unlike `lru_cache`, a read that began before
    `cache_clear` is never kept: a thread (a worker's heartbeat) reading the old
    environment while it changes cannot put the old settings back after the clear."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Settings | None = None
        self._generation = 0

    def __call__(self) -> Settings:
        value, generation = self._value, self._generation
        if value is not None:
            return value
        value = load_settings()
        with self._lock:
            if generation == self._generation:
                self._value = value
        return value

    def cache_clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._value = None


get_settings = _Cached()


def describe(exc: ValidationError) -> str:
    """Name the variables, never echo their values (they may be secrets)."""
    lines = []
    for error in exc.errors():
        variable = "_".join(str(p) for p in error["loc"]).upper() or "settings"
        # pydantic prefixes a validator's own message with "Value error, ": not ours.
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {message}")
    return "Invalid configuration: " + "; ".join(lines) + " (see .env.example)"
