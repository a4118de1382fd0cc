"""Response models of the reservation routes (documentation and Schemathesis's conformance check: the routes
answer through api.idempotency, so these describe what `reservation_json` writes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import MoneyOut


class SpotOut(BaseModel):
    id: uuid.UUID
    label: str
    level: str


class SlotsOut(BaseModel):
    starts_at: datetime
    ends_at: datetime


class PaymentOut(BaseModel):
    """Where the reservation's money is. Money returned to the driver = `voided` + `refunded`."""

    provider: str
    intent_id: str | None = None
    status: str | None = Field(None, description="the provider's PaymentIntent status")
    state: Literal["pending", "requires_action", "authorised", "captured", "voided", "refunded",
                   "partially_refunded"] | None = None
    authorised: MoneyOut | None = None
    captured: MoneyOut | None = None
    voided: MoneyOut | None = Field(None, description="authorisation released without being captured")
    refunded: MoneyOut | None = None
    client_secret: str | None = Field(None, description="on the hold's answer: for the app's payment sheet")


class AccessOut(BaseModel):
    qr_token: str


class ReservationOut(BaseModel):
    id: uuid.UUID
    status: Literal["held", "confirmed", "active", "completed", "cancelled", "expired", "no_show"]
    kind: str
    lot_id: uuid.UUID
    vehicle_type: str
    plate: str | None
    spot: SpotOut
    starts_at: datetime
    ends_at: datetime
    slots: SlotsOut
    hold_expires_at: datetime | None
    price: MoneyOut = Field(description="the price of the current window")
    payment: PaymentOut | None
    quote: dict[str, Any] | None
    created_at: datetime
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    access: AccessOut | None = Field(None, description="while held, confirmed or active")


class CancelledOut(ReservationOut):
    refund: MoneyOut = Field(description="what the driver gets back: payment.voided + payment.refunded")


class ChangeOut(BaseModel):
    previous_price: MoneyOut
    price: MoneyOut
    difference: MoneyOut
    fee: MoneyOut = Field(description="kept of the removed time's price (the lot's cancellation policy)")
    authorised_added: MoneyOut = Field(description="incremental authorisation for an extension")
    released: MoneyOut = Field(description="of the authorisation, what will not be captured")


class ChangedOut(ReservationOut):
    change: ChangeOut


class ReservationPage(BaseModel):
    items: list[ReservationOut]
    next_cursor: str | None
