"""RFC 9457 problem+json for every error the API returns, translated in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import DomainError, KeyInProgress, TooManyRequests, ValidationFailed
from core.logging import get_logger

PROBLEM_BASE = "https://parkgrid.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
log = get_logger("parkgrid.api")

_SLUGS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
          406: "not-acceptable", 409: "conflict", 413: "payload-too-large", 415: "unsupported-media-type",
          422: "validation-error", 429: "too-many-requests", 500: "internal-error", 503: "service-unavailable"}
_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 406: "Not acceptable", 409: "Conflict", 413: "Payload too large",
           415: "Unsupported media type", 422: "Validation error", 429: "Too many requests",
           500: "Internal server error", 503: "Service unavailable"}


def problem(request: Request, *, status: int, slug: str | None = None, title: str | None = None,
            detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """Build one problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _SLUGS.get(status, "error")),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail or title or _TITLES.get(status, "Error"),
        "instance": request.url.path,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _loc(loc: Any) -> list[str | int]:
    return [p if isinstance(p, int) else str(p) for p in loc]


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return domain_problem(request, exc)


def domain_problem(request: Request, exc: DomainError) -> JSONResponse:
    """A domain error as problem+json (the app's handler; also search's shortcut, ahead of routing)."""
    headers = None
    extra = dict(exc.extra)
    if isinstance(exc, TooManyRequests | KeyInProgress):
        headers = {"Retry-After": str(max(1, exc.retry_after))}
    if isinstance(exc, ValidationFailed):
        extra["errors"] = [{"loc": _loc(exc.loc), "msg": exc.detail}]
    return problem(request, status=exc.status, slug=exc.slug, title=exc.title, detail=exc.detail,
                   headers=headers, **extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "invalid"))} for e in exc.errors()]
    names = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    return problem(request, status=422, detail=f"invalid input: {names}", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(request, status=exc.status_code, detail=detail, headers=getattr(exc, "headers", None))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", path=request.url.path, error=repr(exc), exc_info=exc)
    return problem(request, status=500, detail="An unexpected error occurred; it has been logged.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
