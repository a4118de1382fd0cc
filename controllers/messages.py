"""One model per controller message, used by every lane that carries it: the HTTP routes (api/routers/gates.py,
api/routers/sensors.py), MQTT (controllers/mqtt_ingest.py) and the edge agent (api/edge_app.py). pydantic, no HTTP:
a lane parses its bytes into a dict (JSON) and hands it to the same model, so one input gets one verdict on every
lane (tests/unit/test_message_lanes.py feeds generated inputs to each lane and compares)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from core.vocabulary import VehicleType

Decision = Literal["open", "deny", "pay", "attendant"]


def _text(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 timestamp with an offset")  # not a unix number, as pydantic would take
    return value


#: RFC 3339 with an offset, as text (a datetime passes too: lanes that already parsed one); lax inside strict
#: models, which would otherwise want a datetime object
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_text), Field(strict=False)]


class GateEventIn(BaseModel):
    """One event from a gate controller (POST /api/v1/gates/{gate_id}/events, or the gate's MQTT topic). Read as
    JSON says (strict): no 0/1 for booleans, no "5" for integers, no numbers for times, on every lane."""

    model_config = ConfigDict(extra="ignore", strict=True)

    event_id: str = Field(min_length=1, max_length=100, description="unique per lot; a repeat returns the first decision")
    sequence: int = Field(ge=0, le=2**63 - 1, description="the device's own sequence number (ordering survives clock skew)")
    occurred_at: Rfc3339
    direction: Literal["entry", "exit"] | None = Field(None, description="defaults to the gate's direction")
    plate: str | None = Field(None, max_length=32)
    plate_confidence: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    qr_token: str | None = Field(None, max_length=2000)
    vehicle_type: Annotated[VehicleType, Field(strict=False)] = Field(VehicleType.regular,
                                                                      description="what a walk-in is booked as")
    payment_token: str | None = Field(None, max_length=200, description="a pay terminal's card token (exit)")
    decided_locally: bool = Field(False, description="the edge agent already acted on this event: recorded as a fact")
    replayed: bool = Field(False, description="synonym of decided_locally, for replays from the edge outbox")
    decision: Decision | None = Field(None, description="what the edge agent decided, when decided_locally")


class SensorEventIn(BaseModel):
    """One bay sensor reading (an item of POST /api/v1/lots/{lot_id}/sensor-events, or one MQTT sensor message).
    Confidence must be a JSON number (a string "0.9" is refused on every lane, as before)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=100)
    sensor_id: str = Field(min_length=1, max_length=100)
    state: Literal["occupied", "vacant"]
    confidence: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1, allow_inf_nan=False)]
    occurred_at: Rfc3339

    @property
    def occurred_at_utc(self) -> datetime:
        return self.occurred_at if self.occurred_at.tzinfo is UTC else self.occurred_at.astimezone(UTC)


def decode_json(payload: bytes) -> Any:
    """A message's JSON as the HTTP lane decodes a body (FastAPI: `json.loads` of the bytes, which also reads
    UTF-16/32 and a BOM and takes NaN): orjson first (fast, a strict subset), `json.loads` when orjson refuses.
    ValueError when neither can read it."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def first_error(exc: ValidationError) -> str:
    """A one-line reason naming the field (`state: Input should be 'occupied' or 'vacant'`)."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def parse_gate_event(body: Any) -> GateEventIn:
    """A gate event from a decoded JSON body, whatever lane carried it; pydantic's ValidationError (a ValueError)
    when it is not one."""
    return GateEventIn.model_validate(body)
