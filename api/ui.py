"""Web pages ParkGrid serves itself, with nothing loaded from elsewhere: the operators' page (`/operator/`, static
HTML and a little JavaScript calling the JSON API) and the API docs (Swagger UI 5 from the files the
`fastapi-offline` package ships, so `/docs` works without internet; ReDoc is off: its bundled 2.5 cannot read
this schema's `$defs` references)."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

OPERATOR_DIR = Path(__file__).resolve().parent / "static" / "operator"
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
SWAGGER_PREFIX = "/static/docs"


#: the operators' page may load and call nothing but ParkGrid itself (the browser enforces "no CDN")
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
               " frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class OperatorPage(StaticFiles):
    """The page's files, each with a content security policy and no caching of stale copies across releases."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = PAGE_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def install_pages(app: FastAPI) -> None:
    """Mount the operators' page and the offline API docs on `app` (created with docs_url=None)."""
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/operator", OperatorPage(directory=OPERATOR_DIR, html=True), name="operator")

    @app.get("/operator", include_in_schema=False)
    async def operator_root() -> RedirectResponse:
        return RedirectResponse("/operator/")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - docs",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
                                   swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon.png")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
