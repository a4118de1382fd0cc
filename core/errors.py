"""Domain errors: raised by domain packages, translated to problem+json by api/ in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the domain reports to a client.

    `slug` becomes the last path segment of the problem `type` URI, `status` the HTTP status.
    """

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(DomainError):
    status, slug, title = 404, "not-found", "Not found"


class Forbidden(DomainError):
    status, slug, title = 403, "forbidden", "Forbidden"


class Unauthorized(DomainError):
    status, slug, title = 401, "unauthorized", "Not authenticated"


class Conflict(DomainError):
    status, slug, title = 409, "conflict", "Conflict"


class SoldOut(Conflict):
    slug, title = "sold-out", "No compatible spot is free for this window"


class PlateConflict(Conflict):
    slug, title = "plate-conflict", "This plate already holds an overlapping reservation"


class InvalidTransition(Conflict):
    slug, title = "invalid-transition", "Impossible status transition"


class HoldExpired(Conflict):
    slug, title = "hold-expired", "The hold expired before payment"


class TooManyRequests(DomainError):
    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class KeyInProgress(Conflict):
    """An Idempotency-Key held by a request still running (or one that died: its lock times out)."""

    slug, title = "idempotency-key-in-progress", "Idempotency-Key in progress"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class ValidationFailed(DomainError):
    """Bad input found by domain logic; `field` names it as a loc path (e.g. ("body", "rules", 2))."""

    status, slug, title = 422, "validation-error", "Validation error"

    def __init__(self, detail: str, *, loc: tuple[str | int, ...] | list[str | int] = (), **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.loc = tuple(loc)


class PaymentFailed(DomainError):
    status, slug, title = 402, "payment-failed", "Payment failed"


class ServiceUnavailable(DomainError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"
