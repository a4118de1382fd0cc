#!/usr/bin/env bash
# Idempotent machine + project setup for ParkGrid. Installs what is missing (as root, via apt),
# starts services that are installed but down, creates the venv and the database, migrates.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DB_NAME=${PARKGRID_DB_NAME:-parkgrid}
PG_VERSION=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1 || true)
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing system packages: $*. Install them (Debian: sudo apt-get install -y $*) and run make setup again."
  fi
  if [ ! -f /var/lib/apt/periodic/parkgrid-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/parkgrid-updated
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- PostgreSQL + PostGIS -------------------------------------------------------------
[ -n "$PG_VERSION" ] || apt_install postgresql postgresql-contrib
PG_VERSION=$(ls /etc/postgresql | sort -V | tail -n1)
if [ ! -f "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" ]; then
  apt_install "postgresql-$PG_VERSION-postgis-3"
fi
if [ ! -f "/usr/share/postgresql/$PG_VERSION/extension/pgrouting.control" ]; then
  apt_install "postgresql-$PG_VERSION-pgrouting"   # walking times (docs/adr/0023-walking-network.md)
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  say "starting PostgreSQL $PG_VERSION"
  pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start || die "could not start PostgreSQL"
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi

# --- Redis (cache, slot bitmaps, default Celery broker) --------------------------------
command -v redis-server >/dev/null || apt_install redis-server
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- Mosquitto (MQTT from lot controllers) -------------------------------------------
command -v mosquitto >/dev/null || apt_install mosquitto
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  say "starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || mosquitto -d -p 1883
  sleep 0.5
fi

# --- Chromium for the operators' page tests (Playwright drives Debian's browser; no browser download) -----------
command -v chromium >/dev/null || apt_install chromium
# --- OpenMP runtime for LightGBM (forecasts) ---------------------------------------------
dpkg -s libgomp1 >/dev/null 2>&1 || apt_install libgomp1

# --- RabbitMQ only when the broker URL asks for it --------------------------------------
if [[ "${PARKGRID_BROKER_URL:-}" == amqp* ]]; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    say "starting RabbitMQ"; rabbitmq-server -detached; sleep 5
  fi
fi

# --- Python environment -------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  $PY -m venv .venv
fi
stamp=.venv/.parkgrid-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing the project and its dev dependencies"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -v -E "^(WARNING|  |!!|\s*$)" || true
  .venv/bin/python -c "import api, booking, fastapi, asyncpg, redis, celery, h3" || die "python install failed"
  touch "$stamp"
fi

# --- ParkAPI v3 validator: parkapi-sources needs Python >= 3.12; the open data tests run it in its own venv ----
PARKAPI_VENV=var/py312-parkapi
if [ ! -x "$PARKAPI_VENV/bin/python" ] || ! "$PARKAPI_VENV/bin/python" -c "import parkapi_sources" 2>/dev/null; then
  PY312=""
  for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 "$(command -v python3.13 || true)" \
              "$(command -v python3.12 || true)"; do
    if [ -n "$cand" ] && [ -x "$cand" ] \
        && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      PY312=$cand
      break
    fi
  done
  if [ -n "$PY312" ]; then
    say "creating $PARKAPI_VENV (parkapi-sources, for the ParkAPI v3 feed test)"
    mkdir -p var
    "$PY312" -m venv "$PARKAPI_VENV"
    "$PARKAPI_VENV/bin/pip" install -q 'parkapi-sources>=0.40,<1' 2>&1 | grep -v -E "^(WARNING|  |\s*$)" || true
  else
    say "no Python >= 3.12 found: the ParkAPI v3 validation test will fail until one is installed"
  fi
fi

# --- Secret key for local runs (never committed) --------------------------------------------
mkdir -p var
[ -s var/secret_key ] || .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(48))" > var/secret_key

# --- ParkGrid's own MQTT broker: each device its own credentials (docs/features/lanes-and-identity.md) -----
# var/mosquitto holds its config, the dynamic security plugin's file and the admin/ingest credentials (idempotent)
.venv/bin/python -m cli mqtt broker --detach --json > var/mosquitto-urls.json || die "MQTT broker failed to start"

# --- Database ---------------------------------------------------------------------------
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'" | grep -q 1; then
  say "creating database $DB_NAME"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$DB_NAME\""
fi
export PARKGRID_SECRET_KEY=${PARKGRID_SECRET_KEY:-$(cat var/secret_key)}
export PARKGRID_DATABASE_URL=${PARKGRID_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/$DB_NAME}
.venv/bin/parkgrid db upgrade >/dev/null
say "ready: PostgreSQL $PG_VERSION + PostGIS, Redis, Mosquitto, .venv, database $DB_NAME at head"
