"""Cheap-to-poll feed responses: ETag / Last-Modified with 304s, Cache-Control, gzip; bodies cached per snapshot.

A body depends only on the snapshot (its digest) and the request's parameters, so its ETag is the digest with a
short hash of the format and the parameters, and the same poll gets the same ETag until the data changes. The
unfiltered body of each format is serialised and compressed once per snapshot and reused by every request.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
from fastapi import Request, Response

from geo.feed_snapshot import Snapshot

GZIP_LEVEL = 6


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in {"gzip", "*"}:
            q = params.strip().removeprefix("q=")
            return not (params.strip().startswith("q=") and q.strip() in {"0", "0.0", "0.00", "0.000"})
    return False


def etag_of(snap: Snapshot, variant: str) -> str:
    """The weak ETag of one body: the snapshot's digest and a short hash of the format and parameters."""
    return f'W/"{snap.digest}-{hashlib.blake2b(variant.encode(), digest_size=6).hexdigest()}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison (RFC 9110) of an If-None-Match list with our ETag."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


def cache_headers(snap: Snapshot, etag: str, max_age: int) -> dict[str, str]:
    return {"ETag": etag, "Last-Modified": format_datetime(snap.changed_at, usegmt=True),
            "Cache-Control": f"private, max-age={max_age}", "Vary": "Accept-Encoding, X-API-Key"}


def _not_modified(request: Request, etag: str, snap: Snapshot) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return etag_matches(inm, etag)
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        return since.tzinfo is not None and snap.changed_at <= since
    return False


def feed_response(request: Request, *, snap: Snapshot, variant: str, media_type: str, max_age: int,
                  build: Callable[[], Any], cache: bool) -> Response:
    """The body `build()` returns as `media_type`, or 304 when the client's copy is current.

    `variant` names the format and every parameter the body depends on; with `cache`, the serialised and
    compressed body is kept on the snapshot for the next request with the same variant."""
    etag = etag_of(snap, variant)
    headers = cache_headers(snap, etag, max_age)
    if _not_modified(request, etag, snap):
        return Response(status_code=304, headers=headers)
    gz = _accepts_gzip(request)
    found = snap.rendered.get(variant) if cache else None
    if found is None:
        raw = orjson.dumps(build())
        found = (raw, None)
    raw, compressed = found
    if gz and compressed is None:
        compressed = gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
    if cache:
        snap.rendered[variant] = (raw, compressed)
    if gz:
        assert compressed is not None
        headers["Content-Encoding"] = "gzip"
        return Response(content=compressed, media_type=media_type, headers=headers)
    return Response(content=raw, media_type=media_type, headers=headers)
