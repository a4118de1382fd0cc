"""Rate cards in PostgreSQL, and quotes: price a lot's window with its card, the dynamic multiplier and a signed token.

Quotes price the window widened to whole 15-minute slots (what the booking occupies), so search,
availability and the hold all price, sign and verify the same window.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, NamedTuple, Protocol, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from analytics.forecast import ForecastCache, forecast_cache
from core.clock import Clock
from core.context import AppContext
from core.errors import NotFound, ValidationFailed
from core.keys import Keys
from core.logging import get_logger
from core.money import Money
from pricing import queries as q
from pricing.discounts import check_discount_code
from pricing.dynamic import dynamic_multiplier
from pricing.engine import price_window, refund_under
from pricing.quotes import sign_quote, verify_quote
from pricing.rates import Cancellation, RateCard, parse_rate_card

log = get_logger("parkgrid.pricing")
_REDIS_DOWN = (RedisError, OSError, TimeoutError)
#: how long a lot's last multiplier is remembered for hysteresis
HYSTERESIS_TTL = timedelta(days=1)
#: search results without a vehicle type are quoted for a regular car
DEFAULT_QUOTE_TYPE = "regular"
#: quotes expire on multiples of a step (a tenth of the quote TTL, 1 to 60 s), so equal quotes signed within one
#: step are the same quote (memoised): a quote is valid for at least 90% of the TTL, never more
MAX_EXPIRY_STEP = timedelta(seconds=60)


def expiry_step(ttl: timedelta) -> timedelta:
    """The expiry step for a quote TTL: ttl / 10, within [1 s, MAX_EXPIRY_STEP]."""
    return min(MAX_EXPIRY_STEP, max(timedelta(seconds=1), ttl / 10))


SIGNED_MEMO_SIZE = 50_000
#: a lot whose card does not sell the vehicle type (memoised like a quote, shown as none)
_UNSOLD: dict[str, Any] = {}


class ShownQuote(dict[str, Any]):
    """A memoised search quote: the dict, and `json`, the same dict as JSON bytes written once when it was signed
    (a search page splices them in instead of serialising ~1.4 KB per lot again). Never changed after that."""

    __slots__ = ("json",)
    json: bytes


#: booked occupancy (0..1) of each lot for a window, asked only about lots with dynamic pricing
OccupancyFn = Callable[[Sequence[uuid.UUID], datetime, datetime], Awaitable[dict[uuid.UUID, Fraction]]]


class ReadCard:
    """QuoteService.quote's default for `card`: read the lot's card."""


READ_CARD = ReadCard()


class CardRow(Protocol):
    """What quoting needs of a lot's stored card (a StoredCard, or the search index's own record of it)."""

    @property
    def body(self) -> Any: ...  # JSON text (or, from SQLAlchemy, the decoded JSON)

    @property
    def version(self) -> int: ...

    @property
    def timezone(self) -> str: ...


class StoredCard(NamedTuple):
    """A lot's card as stored: JSON text, version, and the lot's time zone."""

    body: str
    version: int
    timezone: str


def _floor(value: datetime, step: timedelta) -> datetime:
    return value - (value - datetime.min.replace(tzinfo=value.tzinfo)) % step


def _static_multiplier(card: RateCard) -> tuple[Fraction, str]:
    return dynamic_multiplier(occupancy=0, previous=None, settings=card.dynamic)


def policy_snapshot(card: RateCard) -> dict[str, Any]:
    """The terms a reservation is sold under, stored with it so later card changes never alter them."""
    return {
        "capture": card.capture,
        "cancellation": card.cancellation.model_dump(mode="json"),
        "no_show_fee": Money(card.no_show_fee, card.currency).as_json(),
        "overstay": card.overstay.model_dump(mode="json"),
    }


# --- rate cards -------------------------------------------------------------------------------------------------

async def put_rate_card(conn: AsyncConnection, *, lot_id: uuid.UUID, data: Any, now: datetime) -> tuple[RateCard, int]:
    """Validate and store a lot's card (422 naming the rule on overlaps and gaps, and naming `rules` when a spot
    type the lot has is left unpriced: such spots could never be booked); returns it and its version."""
    card = parse_rate_card(data)
    have = [t for t in (await conn.execute(q.LOT_SPOT_TYPES, {"lot_id": lot_id})).scalars()]
    unpriced = [t for t in have if t not in card.spot_types]
    if unpriced:
        raise ValidationFailed(
            f"no rule prices this lot's spot types {', '.join(unpriced)}: add them to a rule's spot_types "
            "(unpriced spots could not be booked)", loc=("body", "rules"), unpriced_spot_types=unpriced)
    row = (await conn.execute(q.UPSERT_CARD, {"lot_id": lot_id, "currency": card.currency,
                                              "body": json.dumps(card.as_json()), "now": now})).one()
    return card, int(row.version)


async def get_rate_card(conn: AsyncConnection, *, lot_id: uuid.UUID) -> tuple[dict[str, Any], int, datetime]:
    """The stored card JSON of a lot, its version and when it changed (404 without one)."""
    row = (await conn.execute(q.CARD_OF_LOT, {"lot_id": lot_id})).first()
    if row is None:
        raise NotFound(f"lot {lot_id} has no rate card")
    return dict(row.body), int(row.version), row.updated_at


class _CardCache:
    """Parsed cards by content: parsing and tiling a card costs more than the SQL that reads it, and
    many lots (an operator's whole estate) share one card, so equal bodies share one parsed card. Keyed by
    the body's JSON text itself: a str caches its hash, so the search index's shared body strings cost one
    dict probe each."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._items: OrderedDict[str, RateCard] = OrderedDict()

    def get(self, body: Any) -> RateCard:
        key = body if isinstance(body, str) else json.dumps(body, sort_keys=True, separators=(",", ":"))
        card = self._items.get(key)
        if card is None:
            # bodies arrive as the jsonb's text; decoded only on a miss
            card = parse_rate_card(json.loads(key))
            self._items[key] = card
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return card


@dataclass(frozen=True)
class Quote:
    """A price for one lot, type and slot window; `data` is the JSON the API shows (None without a card)."""

    price: Money
    data: dict[str, Any] | None


class QuoteService:
    """Prices windows with the lot's card, a dynamic multiplier with hysteresis (Redis) and signed tokens."""

    def __init__(self, *, secret: bytes, clock: Clock, redis: aioredis.Redis | None, keys: Keys,
                 ttl: timedelta = timedelta(minutes=10), forecasts: ForecastCache | None = None) -> None:
        self.secret, self.clock, self.redis, self.keys, self.ttl = secret, clock, redis, keys, ttl
        #: forecast occupancy, in process (analytics.forecast): the multiplier follows the higher of it and booked
        self.forecasts = forecasts
        self.expiry_step = expiry_step(ttl)
        self.cards = _CardCache()
        self._prices: OrderedDict[tuple[Any, ...], tuple[RateCard, Any, dict[str, Any], dict[str, Any]]] = OrderedDict()
        self._signed: OrderedDict[tuple[Any, ...], tuple[RateCard, Quote]] = OrderedDict()
        # search's quotes of static cards: (type, window, expiry) -> lot -> (card text, version, zone, quote),
        # oldest first, SIGNED_MEMO_SIZE quotes in all at most (the newest group whatever its size)
        self._static_quotes: dict[tuple[str, datetime, datetime, datetime],
                                  dict[uuid.UUID, tuple[str, int, str, dict[str, Any]]]] = {}

    # -- dynamic multiplier ------------------------------------------------------------------------------------

    async def _previous(self, lot_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Fraction]:
        if self.redis is None or not lot_ids:
            return {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:  # one round trip; keys span lots
                for lot in lot_ids:
                    pipe.get(self.keys.dynamic_multiplier(str(lot)))
                values = await pipe.execute()
        except _REDIS_DOWN as exc:  # no hysteresis this time: the curve alone still bounds the price
            log.warning("dynamic_state_unavailable", error=repr(exc)[:200])
            return {}
        out = {}
        for lot, raw in zip(lot_ids, values, strict=True):
            if raw is not None:
                try:
                    out[lot] = Fraction(raw.decode() if isinstance(raw, bytes) else str(raw))
                except (ValueError, ZeroDivisionError):
                    continue
        return out

    async def _remember(self, shown: dict[uuid.UUID, Fraction]) -> None:
        if self.redis is None or not shown:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for lot, mult in shown.items():
                    pipe.set(self.keys.dynamic_multiplier(str(lot)), str(mult), ex=int(HYSTERESIS_TTL.total_seconds()))
                await pipe.execute()
        except _REDIS_DOWN as exc:
            log.warning("dynamic_state_unavailable", error=repr(exc)[:200])

    async def _multipliers(self, occupancy: OccupancyFn, cards: dict[uuid.UUID, RateCard], starts_at: datetime,
                           ends_at: datetime) -> dict[uuid.UUID, tuple[Fraction, str]]:
        """Multiplier and reason per lot: the higher of the booked and the forecast occupancy for the window (the
        reason says which, and the other), sticky around the last one shown."""
        dynamic = [lot for lot, card in cards.items() if card.dynamic.enabled]
        out = {lot: _static_multiplier(card) for lot, card in cards.items() if not card.dynamic.enabled}
        if not dynamic:
            return out
        booked = await occupancy(dynamic, starts_at, ends_at)
        forecast: dict[uuid.UUID, float] = {}
        if self.forecasts is not None:
            await self.forecasts.refresh_if_due()
            for lot in dynamic:
                found = self.forecasts.occupancy(lot, starts_at, ends_at)
                if found is not None:
                    forecast[lot] = found
        previous = await self._previous(dynamic)
        shown: dict[uuid.UUID, Fraction] = {}
        for lot in dynamic:
            occ, source = higher_occupancy(booked.get(lot, Fraction(0)), forecast.get(lot))
            mult, reason = dynamic_multiplier(occupancy=occ, previous=previous.get(lot),
                                              settings=cards[lot].dynamic, source=source)
            out[lot] = (mult, reason)
            if previous.get(lot) != mult:
                shown[lot] = mult
        await self._remember(shown)
        return out

    # -- quotes ------------------------------------------------------------------------------------------------

    def _quote(self, *, lot_id: uuid.UUID, card: RateCard, version: int, tz: str, vehicle_type: str,
               starts_at: datetime, ends_at: datetime, mult: Fraction, reason: str, now: datetime,
               discount_code: str | None = None, expires_at: datetime | None = None) -> Quote:
        """A signed quote; `expires_at` is `now`'s expiry step, passed by callers quoting many lots at once."""
        # the same card, type, window, multiplier and code price the same everywhere: compute once per process
        # the multiplier as two ints: a Fraction hashes in Python code, and the key is hashed twice per quote
        price_key = (id(card), vehicle_type, starts_at, ends_at, tz, mult.numerator, mult.denominator, reason,
                     discount_code)
        priced = self._prices.get(price_key) if discount_code is None else None  # a code's validity depends on now
        if priced is None or priced[0] is not card:
            breakdown = price_window(card=card, spot_type=vehicle_type, starts_at=starts_at, ends_at=ends_at, tz=tz,
                                     multiplier=mult, multiplier_reason=reason, discount_code=discount_code,
                                     now=now)
            priced = (card, breakdown, breakdown.as_json(), policy_snapshot(card))
            self._prices[price_key] = priced
            if len(self._prices) > 4096:
                self._prices.popitem(last=False)
        _, breakdown, breakdown_json, policy = priced
        # Quotes expire on whole expiry-step boundaries (a little before now + ttl), so every search of the same
        # lot, type and window within one step shows the same signed quote: signed once, not once per page.
        expires_at = expires_at or _floor(now + self.ttl, self.expiry_step)
        signed_key = (lot_id, id(card), version, price_key, expires_at)
        hit = self._signed.get(signed_key) if discount_code is None else None
        if hit is not None and hit[0] is card:
            return hit[1]
        token = sign_quote(secret=self.secret, lot_id=lot_id, vehicle_type=vehicle_type, starts_at=starts_at,
                           ends_at=ends_at, total=breakdown.total, expires_at=expires_at, discount_code=discount_code)
        data = {
            "lot_id": str(lot_id), "vehicle_type": vehicle_type, "starts_at": starts_at.isoformat(),
            "ends_at": ends_at.isoformat(), "timezone": tz, "total": breakdown.total.as_json(),
            "breakdown": breakdown_json, "multiplier": breakdown_json["multiplier"], "reason": reason,
            "expires_at": expires_at.isoformat(), "token": token, "card_version": version,
            "policy": policy, "discount_code": discount_code,
        }
        quote = Quote(breakdown.total, data)
        if discount_code is None:
            self._signed[signed_key] = (card, quote)
            if len(self._signed) > SIGNED_MEMO_SIZE:
                self._signed.popitem(last=False)
        return quote

    async def quote(self, conn: AsyncConnection, *, lot_id: uuid.UUID, vehicle_type: str, starts_at: datetime,
                    ends_at: datetime, quote_token: str | None = None, discount_code: str | None = None,
                    card: CardRow | ReadCard | None = READ_CARD) -> Quote:
        """Price one lot's slot window; with `quote_token`, the token's total if it is valid for exactly this.

        `card` is the lot's card as the caller already read it (None: the lot has none); by default it is read."""
        now = self.clock.now()
        row = card
        if isinstance(row, ReadCard):
            read = (await conn.execute(q.LOT_CARD, {"lot_id": lot_id})).first()
            if read is None:
                raise NotFound(f"lot {lot_id} not found")
            row = StoredCard(read.body, int(read.version), read.timezone) if read.body is not None else None
        rates = self.cards.get(row.body) if row is not None else None
        if discount_code and rates is not None:  # codes match case-insensitively; store the card's spelling
            found = rates.find_code(discount_code)
            discount_code = found.code if found is not None else discount_code
        if quote_token:
            promised = verify_quote(secret=self.secret, token=quote_token, now=now, lot_id=lot_id,
                                    vehicle_type=vehicle_type, starts_at=starts_at, ends_at=ends_at,
                                    discount_code=discount_code)
            data: dict[str, Any] = {"lot_id": str(lot_id), "vehicle_type": vehicle_type,
                                    "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat(),
                                    "total": promised.total.as_json(), "source": "quote_token",
                                    "expires_at": promised.expires_at.isoformat(), "discount_code": discount_code}
            if row is not None and rates is not None:
                data["policy"] = policy_snapshot(rates)
                data["card_version"] = row.version
            return Quote(promised.total, data)
        if row is None or rates is None:
            if discount_code:
                raise ValidationFailed("this lot has no rates, so no discount codes", loc=("body", "discount_code"))
            return Quote(Money(0, "usd"), None)
        if discount_code:
            # max_uses counts reservations that hold or used the code (not expired or cancelled ones);
            # two holds racing for the last use can both get it (see the closing note)
            used = int(await conn.scalar(q.DISCOUNT_USES, {"lot_id": lot_id, "code": discount_code}) or 0)
            check_discount_code(card=rates, code=discount_code, now=now, times_used=used)
        mult, reason = (await self._multipliers(booked_occupancy(conn), {lot_id: rates}, starts_at, ends_at))[lot_id]
        return self._quote(lot_id=lot_id, card=rates, version=row.version, tz=row.timezone,
                           vehicle_type=vehicle_type, starts_at=starts_at, ends_at=ends_at, mult=mult, reason=reason,
                           now=now, discount_code=discount_code)

    async def quotes_for_page(self, conn: AsyncConnection, *, lot_ids: Sequence[uuid.UUID], vehicle_type: str | None,
                              starts_at: datetime, ends_at: datetime) -> dict[uuid.UUID, dict[str, Any]]:
        """Quotes for a search page: one card query, one occupancy query (dynamic lots only); unsold types skipped."""
        if not lot_ids:
            return {}
        rows = await conn.execute(q.LOT_CARDS, {"lot_ids": list(lot_ids)})
        return await self.quotes_for_cards({r.id: StoredCard(r.body, int(r.version), r.timezone) for r in rows},
                                           vehicle_type=vehicle_type, starts_at=starts_at, ends_at=ends_at,
                                           occupancy=booked_occupancy(conn))

    async def quotes_for_cards(self, stored: Mapping[uuid.UUID, CardRow], *, vehicle_type: str | None,
                               starts_at: datetime, ends_at: datetime,
                               occupancy: OccupancyFn) -> dict[uuid.UUID, dict[str, Any]]:
        """Quotes for lots whose stored cards the caller already has (search's lot index); `occupancy` is asked
        only about lots with dynamic pricing. Lots whose card does not sell the vehicle type are skipped.

        A lot with a static card (no dynamic pricing) shows the same signed quote for a type and window until
        the next expiry step: it is looked up by (type, window, expiry), then lot, and used while the lot's card
        text, version and zone are the ones it was signed with; the same dict object is returned each time
        (callers must not change it)."""
        now = self.clock.now()
        wanted = vehicle_type or DEFAULT_QUOTE_TYPE
        expires_at = _floor(now + self.ttl, self.expiry_step)
        page_key = (wanted, starts_at, ends_at, expires_at)
        memo = self._static_quotes.get(page_key)
        if memo is None:
            memo = self._static_quotes[page_key] = {}
        out: dict[uuid.UUID, dict[str, Any]] = {}
        rest: dict[uuid.UUID, CardRow] = {}
        for lot, row in stored.items():
            hit = memo.get(lot)
            if hit is not None and hit[0] == row.body and hit[1] == row.version and hit[2] == row.timezone:
                if hit[3] is not _UNSOLD:
                    out[lot] = hit[3]
            else:
                rest[lot] = row
        if rest:
            out.update(await self._quote_cards(rest, memo, wanted=wanted, starts_at=starts_at, ends_at=ends_at,
                                               occupancy=occupancy, now=now))
            sizes = [len(m) for m in self._static_quotes.values()]
            for size in sizes[:-1]:  # oldest (type, window, expiry) first: past expiry steps go first
                if sum(sizes) <= SIGNED_MEMO_SIZE:
                    break
                del self._static_quotes[next(iter(self._static_quotes))]
                sizes.remove(size)
        return out

    async def _quote_cards(self, stored: Mapping[uuid.UUID, CardRow],
                           memo: dict[uuid.UUID, tuple[str, int, str, dict[str, Any]]], *, wanted: str,
                           starts_at: datetime, ends_at: datetime, occupancy: OccupancyFn,
                           now: datetime) -> dict[uuid.UUID, dict[str, Any]]:
        cards, sells = {}, {}  # lots of a page mostly share a card: ask each card once
        for lot, row in stored.items():
            try:
                card = self.cards.get(row.body)
            except (ValueError, ValidationFailed) as exc:  # a card stored before a stricter validator: skip it
                log.warning("rate_card_unreadable", lot_id=str(lot), error=repr(exc)[:200])
                continue
            if id(card) not in sells:
                sells[id(card)] = wanted in card.spot_types
            if sells[id(card)]:
                cards[lot] = card
            elif isinstance(row.body, str):
                memo[lot] = (row.body, row.version, row.timezone, _UNSOLD)
        mults = await self._multipliers(occupancy, cards, starts_at, ends_at)
        expires_at = _floor(now + self.ttl, self.expiry_step)
        out = {}
        for lot, card in cards.items():
            mult, reason = mults[lot]
            row = stored[lot]
            out[lot] = data = self._quote(lot_id=lot, card=card, version=row.version, tz=row.timezone,
                                          vehicle_type=wanted, starts_at=starts_at, ends_at=ends_at, mult=mult,
                                          reason=reason, now=now, expires_at=expires_at).data or {}
            if not card.dynamic.enabled and isinstance(row.body, str):
                out[lot] = shown = ShownQuote(data)
                shown.json = orjson.dumps(data)
                memo[lot] = (row.body, row.version, row.timezone, shown)
        return out


def higher_occupancy(booked: Fraction, forecast: float | None) -> tuple[Fraction, str]:
    """The occupancy the multiplier follows, and the source it names: the forecast when it is higher than the
    booked share (the reason then also gives the booked one), else booked (and the forecast, when there is one)."""
    if forecast is not None:
        predicted = Fraction(round(forecast * 1000), 1000)
        if predicted > booked:
            return predicted, f"forecast; booked {round(booked * 100)}%"
        return booked, f"booked; forecast {round(predicted * 100)}%"
    return booked, "booked"


def booked_occupancy(conn: AsyncConnection) -> OccupancyFn:
    """Booked share of each lot's in-service spots for a window, read on `conn`."""

    async def occupancy(lot_ids: Sequence[uuid.UUID], starts_at: datetime,
                        ends_at: datetime) -> dict[uuid.UUID, Fraction]:
        rows = await conn.execute(q.BOOKED_OCCUPANCY, {"lot_ids": list(lot_ids), "slot_start": starts_at,
                                                       "slot_end": ends_at})
        return {r.lot_id: Fraction(int(r.busy), int(r.total)) for r in rows if r.total}

    return occupancy


# --- the policy a reservation was sold under --------------------------------------------------------------------

async def cancellation_refund_policy(conn: AsyncConnection, row: Any, paid: int, now: datetime) -> int:
    """booking.deps.RefundPolicy: pricing.engine's cancellation refund under the reservation's snapshot policy.

    A reservation priced without a card (no snapshot) is refunded in full.
    """
    policy = await conn.scalar(q.RESERVATION_POLICY, {"id": row.id})
    if not policy or "cancellation" not in policy:
        return paid
    cancellation = Cancellation.model_validate(policy["cancellation"])
    refund = refund_under(policy=cancellation, paid_amount=Money(paid, row.currency.strip()), starts_at=row.starts_at,
                          cancelled_at=now)
    return refund.amount


def quote_service(ctx: AppContext) -> QuoteService:
    """The process's QuoteService (one per context: it caches parsed cards)."""
    service = ctx.extras.get("quote_service")
    if service is None:
        s = ctx.settings
        service = QuoteService(secret=s.secret_bytes, clock=ctx.clock, redis=ctx.redis, keys=Keys(s.redis_prefix),
                               ttl=timedelta(seconds=s.quote_ttl_seconds), forecasts=forecast_cache(ctx))
        ctx.extras["quote_service"] = service
    return cast(QuoteService, service)
