#!/usr/bin/env bash
# make demo: seed a demo city if the database is empty, then run API + Celery worker + beat in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
export PARKGRID_SECRET_KEY=${PARKGRID_SECRET_KEY:-$(cat var/secret_key)}
export PARKGRID_DATABASE_URL=${PARKGRID_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/parkgrid}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
LOTS=${LOTS:-500}
BIN=.venv/bin

creds=$($BIN/parkgrid seed demo --lots "$LOTS" --seed 42 --if-empty --json)
# the project's own broker (devices authenticate; docs/features/lanes-and-identity.md); the demo device gets its client
mqtt=$($BIN/parkgrid mqtt broker --detach --json)
export PARKGRID_MQTT_URL=$($BIN/python -c 'import json,sys; print(json.loads(sys.argv[1])["mqtt_url"])' "$mqtt")
export PARKGRID_MQTT_ADMIN_URL=$($BIN/python -c 'import json,sys; print(json.loads(sys.argv[1])["mqtt_admin_url"])' "$mqtt")
$BIN/python - "$creds" <<'PY'
import asyncio, json, os, sys
from controllers.mqtt_identity import grant_device
d = json.loads(sys.argv[1])["device"]
asyncio.run(grant_device(admin_url=os.environ["PARKGRID_MQTT_ADMIN_URL"], device_id=d["device_id"], lot_id=d["lot_id"],
                         password=d["key"]))
PY
# a past for the first SIM_LOTS lots (the same seed plans the same lots), then forecasts from it; skipped once done
echo "simulating ${SIM_DAYS:-14} days of ${SIM_LOTS:-30} lots (about two minutes the first time)..."
$BIN/parkgrid simulate --lots "${SIM_LOTS:-30}" --days "${SIM_DAYS:-14}" --seed 42 --json >/dev/null
$BIN/parkgrid forecast train --json >/dev/null
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$BIN/parkgrid serve --host "$HOST" --port "$PORT" --workers 2 & pids+=($!)
$BIN/parkgrid worker --concurrency 1 --loglevel warning & pids+=($!)
$BIN/parkgrid beat --loglevel warning & pids+=($!)
$BIN/parkgrid ingest & pids+=($!)
for _ in $(seq 100); do curl -fs "http://$HOST:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

$BIN/python - "$creds" "$HOST" "$PORT" <<'PY'
import json, sys
from datetime import datetime, timezone
c = json.loads(sys.argv[1]); base = f"http://{sys.argv[2]}:{sys.argv[3]}"
now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
print(f"""
ParkGrid demo is running (Ctrl-C stops API, worker and beat).

  API docs      {base}/docs
  Operators     {base}/operator/   (sign in as the operator below)
  OpenAPI       {base}/openapi.json
  Health        {base}/healthz   {base}/readyz   {base}/metrics
  Search        {base}/api/v1/lots/search?lat=37.7793&lng=-122.4193&radius_m=1500

  Operator      {c['users']['operator']['email']} / {c['users']['operator']['password']}
  Driver        {c['users']['driver']['email']} / {c['users']['driver']['password']}
  Planner       {c['users']['planner']['email']} / {c['users']['planner']['password']}
  Partner key   X-API-Key: {c['partner_api_key']}
  Device key    X-Device-Key: {c['device']['key']}  (lot {c['device']['lot_id']})
  MQTT          broker on 127.0.0.1:1884 (var/mosquitto): username {c['device']['device_id']}, password = the device key,
                topics parkgrid/lots/{c['device']['lot_id']}/# only; anonymous clients are refused
  New lots seeded this run: {c['lots_created']} ({c['spots_created']} spots)

Try:
  curl '{base}/api/v1/lots/search?lat=37.7793&lng=-122.4193&radius_m=1500'          # quotes, availability, forecast
  curl -H 'X-API-Key: {c['partner_api_key']}' {base}/api/v1/open/lots               # GeoJSON feed (also /open/parkapi, /open/datex2, /ogc)
  curl {base}/api/v1/lots/{c['device']['lot_id']}/forecast                          # the next hours' occupancy with intervals
  curl -X POST -H 'X-Device-Key: {c['device']['key']}' -H 'Content-Type: application/json' \\
       -d '{{"event_id":"try-1","sequence":1,"occurred_at":"{now}","plate":"DEMO123","plate_confidence":0.99}}' \\
       {base}/api/v1/gates/<gate_id>/events                                            # gate ids: GET /api/v1/lots/<lot_id>
  Planner exports: POST {base}/api/v1/exports (signed in as the planner); walking times: parkgrid network import FILE.osm.pbf
""")
PY
wait -n "${pids[@]}"
