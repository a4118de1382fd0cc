"""Settings from PARKGRID_* environment variables; built by the caller, never at import time."""

from __future__ import annotations

import sys
from functools import cached_property
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
    #: below this ALPR confidence a gate asks for an attendant instead of deciding by plate
    gate_min_plate_confidence: float = Field(0.8, ge=0.0, le=1.0)
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


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; exit with one clear line naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
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
