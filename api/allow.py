"""405 answers list every method the path supports in `Allow` (RFC 9110 section 15.5.6).

Starlette answers 405 from the first route whose path matched, so a path served by two routes (GET and POST
/lots) listed only one of them. This handler collects the methods of every route whose path matches.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from api.openapi import api_routes
from api.problems import problem

Row = tuple[re.Pattern[str], frozenset[str], bool]  # path regex, methods, whether the path has parameters


def _table(app: FastAPI) -> list[Row]:
    table: list[Row] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = [(compile_path(r.path_format)[0], frozenset(r.methods or ()), "{" in r.path_format)
                 for r in api_routes(app)]
        app.state.allow_table = table
    return table


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route of the app serves at `path` (HEAD with GET, as Starlette does). A path that a
    route names literally (/lots/search) is that route's, not a parameter's value (/lots/{lot_id})."""
    matches = [(methods, templated) for regex, methods, templated in _table(app) if regex.match(path)]
    if any(not templated for _, templated in matches):
        matches = [(methods, templated) for methods, templated in matches if not templated]
    methods: set[str] = set()
    for route_methods, _ in matches:
        methods |= route_methods
    if "GET" in methods:
        methods.add("HEAD")
    return methods


async def _method_not_allowed(request: Request, exc: Any) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    methods = allowed_methods(request.app, request.url.path)
    headers = {"Allow": ", ".join(sorted(methods))} if methods else dict(exc.headers or {})
    return problem(request, status=405, detail="Method Not Allowed", headers=headers)


def install_allow_header(app: FastAPI) -> None:
    app.add_exception_handler(405, _method_not_allowed)
