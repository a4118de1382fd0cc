import subprocess
import sys

import pytest

from core.settings import Settings, SettingsError, load_settings


def test_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARKGRID_SECRET_KEY", raising=False)
    monkeypatch.setenv("PARKGRID_ENVIRONMENT", "production")  # elsewhere var/secret_key would be read
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value.code) == "configuration error: PARKGRID_SECRET_KEY is required but not set"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKGRID_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("PARKGRID_HOLD_TTL_SECONDS", "soon")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "PARKGRID_HOLD_TTL_SECONDS is invalid" in str(err.value.code)


def test_short_secret_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKGRID_SECRET_KEY", "short")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "PARKGRID_SECRET_KEY is invalid" in str(err.value.code)


def test_database_url_normalised_to_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKGRID_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("PARKGRID_DATABASE_URL", "postgres://u@h/db")
    assert load_settings().database_url == "postgresql+asyncpg://u@h/db"


def test_settings_are_frozen() -> None:
    s = Settings(secret_key="k" * 40)  # type: ignore[call-arg]
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        s.hold_ttl_seconds = 5  # type: ignore[misc]


def test_cli_refuses_to_start_with_one_clear_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "PARKGRID_BROKER_URL": "kafka://nope"}
    proc = subprocess.run([sys.executable, "-m", "cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and lines[0].startswith("configuration error: PARKGRID_")
