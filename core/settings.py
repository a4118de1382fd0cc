"""Settings from PARKGRID_* environment variables; built by the caller, never at import time."""

from __future__ import annotations

import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/parkgrid"


class Settings(BaseSettings):
    """Every knob of a ParkGrid process; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="PARKGRID_", extra="ignore", frozen=True)

    environment: Literal["dev", "test", "production"] = "dev"
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(10, ge=1, le=200)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = Field("pg", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    redis_timeout_ms: int = Field(250, ge=10, le=10_000)
    # true: redis_url names any node of a Redis Cluster; every lot's keys share the hash tag {lot:<id>}
    redis_cluster: bool = False
    broker_url: str = "redis://127.0.0.1:6379/1"
    celery_queue: str = Field("parkgrid", pattern=r"^[A-Za-z0-9_.-]+$")
    secret_key: SecretStr
    hold_ttl_seconds: int = Field(900, ge=30, le=86_400)
    max_holds_per_user: int = Field(3, ge=1, le=100)
    payment_provider: Literal["local", "stripe"] = "local"
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    quote_ttl_seconds: int = Field(600, ge=30, le=86_400)
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    #: the project broker's dynamic security admin (mqtt://parkgrid-admin:PASSWORD@127.0.0.1:1884, printed by
    #: `parkgrid mqtt init`); when set, `parkgrid devices create/revoke` also create/delete the device's MQTT client
    mqtt_admin_url: SecretStr | None = None
    rate_limits: Literal["on", "off"] = "on"
    rate_limit_login: str = "10/minute"
    rate_limit_register: str = "20/hour"
    rate_limit_writes: str = "120/minute"
    rate_limit_partner: str = "600/minute"
    max_search_radius_m: int = Field(5000, ge=100, le=100_000)
    #: how often a worker asks PostgreSQL whether its in-process lot index is stale (0: on every search)
    search_index_refresh_ms: int = Field(1000, ge=0, le=60_000)
    #: how long a worker reuses an availability count in search results (freshness.as_of says when it was taken)
    search_count_ttl_ms: int = Field(2000, ge=0, le=60_000)
    max_window_days: int = Field(7, ge=1, le=31)
    plate_retention_days: int = Field(90, ge=1, le=3650)
    jwt_issuer: str = "parkgrid"
    jwt_audience: str = "parkgrid-api"
    access_token_ttl_seconds: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(30 * 86_400, ge=300)
    max_body_bytes: int = Field(1_000_000, ge=1_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    public_base_url: str = "http://127.0.0.1:8000"
    #: how long an Idempotency-Key claimed by a request that has not answered stays locked; after it, the same
    #: client's retry takes the key over (a request that died in between its recovery points; docs/adr/0015)
    idempotency_lock_timeout_seconds: int = Field(30, ge=1, le=3_600)
    #: Idempotency-Keys older than this are swept (booking.sweepers.expire_idempotency_keys) and may be reused
    idempotency_key_ttl_hours: int = Field(24, ge=1, le=720)
    #: below this ALPR confidence a gate asks for an attendant instead of deciding by plate
    gate_min_plate_confidence: float = Field(0.8, ge=0.0, le=1.0)
    #: operators' dashboard (docs/features/dashboard.md): a gate with no event for this long is "silent"
    dashboard_gate_silent_minutes: int = Field(60, ge=1, le=10_080)
    #: live stream: heartbeat interval (at most 15 s), events kept per lot for Last-Event-ID resumption,
    #: lifetime of the stream token a browser passes as ?token= (EventSource cannot send headers), and how often a
    #: process with viewers of a lot re-evaluates its time-based alerts (silent gates, stale sensors)
    live_heartbeat_seconds: int = Field(15, ge=1, le=15)
    live_stream_maxlen: int = Field(1000, ge=10, le=100_000)
    live_token_ttl_seconds: int = Field(120, ge=10, le=3600)
    live_alert_interval_seconds: int = Field(30, ge=1, le=3600)
    #: where planner export files are written (created on first use), how long a finished file is kept, how long a
    #: download link works, and after how long without progress a running export may be claimed again
    export_dir: str = "var/exports"
    export_retention_hours: int = Field(168, ge=1, le=24 * 366)
    export_link_ttl_seconds: int = Field(3600, ge=30, le=7 * 86_400)
    export_stale_seconds: int = Field(900, ge=30, le=86_400)
    #: the lowest privacy threshold a planner may ask for (operators exporting their own lots may go down to 1)
    export_min_sessions_floor: int = Field(10, ge=1, le=100_000)
    #: open data feeds: how often a worker asks PostgreSQL whether its feed snapshot is out of date
    open_data_poll_ms: int = Field(1000, ge=0, le=60_000)
    #: open data feeds: at most one snapshot rebuild per worker this often, however busy the city
    open_data_min_rebuild_seconds: float = Field(5.0, ge=0.0, le=25.0)
    #: open data feeds: rebuild at least this often (opening hours turning, counts going stale)
    open_data_max_age_seconds: int = Field(60, ge=1, le=3600)
    #: open data feeds: a sensor count older than this is stale and published as unknown
    open_data_stale_after_seconds: int = Field(600, ge=10, le=86_400)
    #: open data feeds: Cache-Control max-age
    open_data_cache_seconds: int = Field(15, ge=0, le=3600)
    #: DATEX II publicationCreator (ISO 3166-1 alpha-2 country, national identifier) and language
    open_data_country: str = Field("XX", pattern=r"^[A-Za-z]{2}$")
    open_data_publisher: str = Field("ParkGrid", min_length=1, max_length=100)
    open_data_lang: str = Field("en", pattern=r"^[a-z]{2}$")
    #: the heartbeat interval (seconds) given to OCPP chargers at BootNotification; silent past twice it = offline
    ocpp_heartbeat_seconds: int = Field(300, ge=10, le=86_400)
    #: how often a worker re-reads every charger's state for search's ev_chargers (0: on every search)
    ev_board_refresh_ms: int = Field(500, ge=0, le=60_000)

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://"):]
        if value.startswith("postgresql://"):
            value = "postgresql+asyncpg://" + value[len("postgresql://"):]
        return value

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "amqp://", "amqps://", "unix://")):
            raise ValueError("must be a redis:// or amqp:// URL")
        return value

    @cached_property
    def secret_bytes(self) -> bytes:
        return self.secret_key.get_secret_value().encode()

    @property
    def sync_database_url(self) -> str:
        """The same database for libpq-style clients (psycopg, psql)."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql+psycopg://", 1)


class SettingsError(SystemExit):
    """Start-up refused because of a bad or missing setting (one line, names the variable)."""


#: where `make setup` writes a local secret (scripts/setup.sh), relative to the working directory or the checkout
LOCAL_SECRET_FILE = Path("var") / "secret_key"


def local_secret(environment: str) -> str | None:
    """The secret `make setup` wrote, for a process outside production started without PARKGRID_SECRET_KEY:
    PARKGRID_SECRET_KEY_FILE if set, else var/secret_key in the working directory, else in this checkout.
    Production never reads a file implicitly: its secret comes from the environment."""
    if environment == "production":
        return None
    named = os.environ.get("PARKGRID_SECRET_KEY_FILE")
    candidates = [Path(named)] if named else [Path.cwd() / LOCAL_SECRET_FILE,
                                              Path(__file__).resolve().parents[1] / LOCAL_SECRET_FILE]
    for path in candidates:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if value:
            return value
    return None


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; exit with one clear line naming the bad variable. Outside production,
    a missing PARKGRID_SECRET_KEY is read from the file `make setup` wrote (local_secret)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        missing = any(e["type"] == "missing" and tuple(e.get("loc", ())) == ("secret_key",) for e in exc.errors())
        environment = str(overrides.get("environment") or os.environ.get("PARKGRID_ENVIRONMENT", "dev")).lower()
        secret = local_secret(environment) if missing else None
        if secret is None:
            raise SettingsError(describe_settings_error(exc)) from None
    try:
        return Settings(**{**overrides, "secret_key": secret})  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_settings_error(exc)) from None


def describe_settings_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = "PARKGRID_" + str(err["loc"][0]).upper() if err.get("loc") else "PARKGRID_*"
    if err["type"] == "missing":
        return f"configuration error: {name} is required but not set"
    return f"configuration error: {name} is invalid: {err['msg']}"


def die_on_settings_error(exc: SettingsError) -> None:
    print(exc.code, file=sys.stderr)
    raise SystemExit(2)
