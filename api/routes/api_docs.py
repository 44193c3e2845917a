"""The interactive API page (`/docs`, Swagger UI), served whole by the service itself.

FastAPI's default page loads Swagger UI's script and style from a CDN, so on a hospital network
without internet access (the usual case for a fire control room) it stays blank. Here the same
page points at Swagger UI's files from the pinned `swagger-ui-bundle-v2` package, served under
`/docs-assets/`; nothing is loaded from another host, and a Content-Security-Policy says so to
the browser. ReDoc is not offered: its page needs a CDN script and Google Fonts.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(str(swagger_ui_path))
TITLE = "firewatch API — 接口文档"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@cache
def _page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy. The page's one inline script (the call that starts
    Swagger UI) is allowed by its digest, not by allowing inline scripts in general."""
    html = bytes(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=TITLE,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=None,
        ).body
    )
    digests = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html.decode())
    )
    # Swagger UI sets style attributes and draws its icons as data: images.
    csp = (
        f"default-src 'self'; script-src 'self' {digests}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return html, csp


def docs_page() -> HTMLResponse:
    html, csp = _page()
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


def mount(app: FastAPI) -> None:
    """`/docs` and its assets, out of the OpenAPI document (the app is made with docs_url=None)."""
    app.add_api_route(DOCS_URL, docs_page, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
