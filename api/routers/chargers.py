"""A lot's EV chargers for its operators: counts, every connector's last status, and alerts (faulted, offline)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from api.authz import OperatedLotId
from api.deps import ConnDep, NowDep
from api.schemas.discovery import EvChargers
from controllers.chargers import charger_alerts, charger_summary

router = APIRouter(prefix="/lots", tags=["ev chargers"])


class ConnectorOut(BaseModel):
    charge_point_id: str
    connector_id: int
    spot_id: uuid.UUID | None
    status: str
    error_code: str
    state: str
    status_at: datetime | None
    last_seen_at: datetime | None


class ChargerAlertOut(BaseModel):
    kind: str
    charge_point_id: str
    connector_id: int
    since: datetime | None
    detail: str


class LotChargers(BaseModel):
    lot_id: uuid.UUID
    ev_chargers: EvChargers
    connectors: list[ConnectorOut]
    alerts: list[ChargerAlertOut]
    as_of: datetime


@router.get("/{lot_id}/chargers", response_model=LotChargers,
            summary="The lot's EV chargers: counts, each connector's last OCPP status, alerts (operators of the lot)")
async def lot_chargers(lot_id: OperatedLotId, conn: ConnDep, now: NowDep) -> LotChargers:
    summary = await charger_summary(conn=conn, lot_id=lot_id, now=now)
    alerts = await charger_alerts(conn=conn, lot_id=lot_id, now=now)
    return LotChargers(
        lot_id=lot_id, ev_chargers=EvChargers(**summary.counts.as_json()),
        connectors=[ConnectorOut(**vars(c)) for c in summary.connectors],
        alerts=[ChargerAlertOut(**a.as_json()) for a in alerts], as_of=summary.as_of)
