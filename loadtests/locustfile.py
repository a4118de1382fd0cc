"""Load as users bring it: the journeys people make, for Locust.

Run through `make loadtest` (loadtests/loadtest.py prepares a city, credentials and a server, then runs this
file headless and prints a summary per journey beside /healthz). By hand, against a prepared fixture:

    locust -f loadtests/locustfile.py --headless -u 40 -r 40 -t 60s --host http://127.0.0.1:8000

The fixture (JSON, path in PARKGRID_LOADTEST_FIXTURE) names the lots, their gates, sensors and device keys,
driver tokens, a partner key and an operator token. Request names start with the journey ("driver: hold"),
so the summary groups them.

Journeys:
  DriverUser    searches nearby, checks a window, holds (with an Idempotency-Key, as mobile apps do), pays,
                and drives in and out at a lot's gates as a walk-in
  PartnerUser   polls the open data feed with If-None-Match, as a navigation partner's poller does
  SensorUser    a lot's bay sensors reporting batches of readings
  OperatorUser  an operator watching a lot: detail, displays, active sessions
  HealthzUser   /healthz alone: the same-run baseline (name the classes to run on the command line)
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from locust import HttpUser, between, constant, task

_FIXTURE: dict[str, Any] | None = None


def fixture() -> dict[str, Any]:
    global _FIXTURE
    if _FIXTURE is None:
        with open(os.environ.get("PARKGRID_LOADTEST_FIXTURE", "var/loadtest/fixture.json")) as fh:
            _FIXTURE = json.load(fh)
    return _FIXTURE


def _slot(dt: datetime) -> datetime:
    return dt.replace(minute=dt.minute - dt.minute % 15, second=0, microsecond=0)


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _plate(rng: random.Random) -> str:
    return "LT" + "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(6))


class DriverUser(HttpUser):
    """A driver: search, a window's availability, hold, pay, then in and out of a lot as a walk-in."""

    weight = 5
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        fx = fixture()
        self.rng = random.Random()
        self.auth = {"Authorization": f"Bearer {self.rng.choice(fx['driver_tokens'])}"}

    @task
    def journey(self) -> None:
        fx, rng = fixture(), self.rng
        lot = rng.choice(fx["lots"])
        start = _slot(datetime.now(UTC)) + timedelta(days=rng.randint(1, 20), hours=rng.randint(0, 23))
        end = start + timedelta(hours=rng.randint(1, 4))
        window = {"starts_at": _iso(start), "ends_at": _iso(end)}
        self.client.get("/api/v1/lots/search", name="driver: search",
                        params={"lat": lot["lat"] + rng.uniform(-0.005, 0.005), "lng": lot["lng"] + rng.uniform(-0.005, 0.005),
                                "radius_m": 1500, **window})
        self.client.get(f"/api/v1/lots/{lot['id']}/availability", name="driver: availability",
                        params={"vehicle_type": "regular", **window})
        plate = _plate(rng)
        with self.client.post("/api/v1/reservations", name="driver: hold", catch_response=True,
                              headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
                              json={"lot_id": lot["id"], "vehicle_type": "regular", "plate": plate, **window}) as res:
            if res.status_code == 409:  # sold out or the driver's hold limit: an answer, not a failure
                res.success()
                return
            if res.status_code != 201:
                res.failure(f"hold answered {res.status_code}")
                return
            reservation = res.json()
        self.client.post(f"/api/v1/reservations/{reservation['id']}/confirm", name="driver: pay",
                         headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
                         json={"payment_token": "pm_card_visa"})
        device = {"X-Device-Key": lot["device_key"]}
        walk_in = _plate(rng)
        now = datetime.now(UTC)
        for gate, name in ((lot["entry_gate"], "driver: gate entry"), (lot["exit_gate"], "driver: gate exit")):
            self.client.post(f"/api/v1/gates/{gate}/events", name=name, headers=device,
                             json={"event_id": str(uuid.uuid4()), "sequence": rng.randint(0, 2**31),
                                   "occurred_at": _iso(now), "plate": walk_in, "plate_confidence": 0.97,
                                   "payment_token": "pm_card_visa"})


class PartnerUser(HttpUser):
    """A navigation partner polling the open data feed with its ETag."""

    weight = 2
    wait_time = constant(1)

    def on_start(self) -> None:
        self.etag: str | None = None
        self.headers = {"X-API-Key": fixture()["partner_key"], "Accept-Encoding": "gzip"}

    @task
    def poll(self) -> None:
        headers = dict(self.headers)
        if self.etag:
            headers["If-None-Match"] = self.etag
        with self.client.get("/api/v1/open/lots", name="partner: open lots", headers=headers,
                             catch_response=True) as res:
            if res.status_code in (200, 304):
                self.etag = res.headers.get("ETag", self.etag)
                res.success()
            else:
                res.failure(f"feed answered {res.status_code}")


class SensorUser(HttpUser):
    """A lot's bay sensors: a batch of readings every half second or so."""

    weight = 2
    wait_time = between(0.3, 0.7)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.lot = self.rng.choice(fixture()["lots"])

    @task
    def report(self) -> None:
        now = _iso(datetime.now(UTC))
        events = [{"event_id": str(uuid.uuid4()), "sensor_id": sensor, "state": self.rng.choice(["occupied", "vacant"]),
                   "confidence": 0.95, "occurred_at": now}
                  for sensor in self.rng.sample(self.lot["sensors"], min(20, len(self.lot["sensors"])))]
        self.client.post(f"/api/v1/lots/{self.lot['id']}/sensor-events", name="sensors: batch of 20",
                         headers={"X-Device-Key": self.lot["device_key"]}, json={"events": events})


class OperatorUser(HttpUser):
    """An operator with a lot open: its detail, displays and active sessions, refreshed every few seconds."""

    weight = 1
    wait_time = between(2, 4)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.auth = {"Authorization": f"Bearer {fixture()['operator_token']}"}

    @task
    def watch(self) -> None:
        lot = self.rng.choice(fixture()["lots"])
        self.client.get(f"/api/v1/lots/{lot['id']}", name="operator: lot", headers=self.auth)
        self.client.get(f"/api/v1/lots/{lot['id']}/displays", name="operator: displays",
                        headers={"X-Device-Key": lot["device_key"]})
        self.client.get(f"/api/v1/lots/{lot['id']}/sessions", name="operator: sessions", headers=self.auth,
                        params={"status": "active"})


class HealthzUser(HttpUser):
    """/healthz in a closed loop: the baseline run beside the mixed one."""

    wait_time = constant(0)

    @task
    def healthz(self) -> None:
        self.client.get("/healthz", name="baseline: /healthz")
