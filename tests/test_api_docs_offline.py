"""`/docs` works on a network without internet access: the page and everything it loads come from
the service itself (a real uvicorn), and Debian's Chromium, with every request to another host
refused, draws the API's operations from it.

Never `playwright install`: the browser is /usr/bin/chromium (scripts/test installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.async_api import Route, async_playwright

from api.app import create_app
from firewatch.broker import free_port

CHROMIUM = Path("/usr/bin/chromium")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(None), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn offers a flag only
        await asyncio.sleep(0.05)
    if task.done():
        await task
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def test_the_docs_page_refers_to_no_other_host_and_each_asset_it_names_is_served(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://", page.text), "the page names another host"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        references = REFERENCE.findall(page.text)
        assets = [r for r in references if Path(urlsplit(r).path).suffix in CONTENT_TYPES]
        assert {Path(a).suffix for a in assets} == set(CONTENT_TYPES)  # a script, a style, an icon
        for ref in references:
            assert ref.startswith("/"), f"{ref} is not on this service"
            answer = await client.get(ref)
            assert answer.status_code == 200, ref
            expected = CONTENT_TYPES.get(Path(ref).suffix, "application/json")
            assert answer.headers["content-type"].startswith(expected), (ref, answer.headers["content-type"])


async def test_redoc_is_not_offered_since_it_would_need_a_cdn(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        assert (await client.get("/redoc")).status_code == 404


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
async def test_the_docs_page_draws_the_operations_with_every_other_host_unreachable(api_url: str) -> None:
    refused: list[str] = []
    csp_violations: list[str] = []

    async def only_this_service(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort("internetdisconnected")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page()
            page.on(
                "console",
                lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None,
            )
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.route("**/*", only_this_service)
            await page.goto(f"{api_url}/docs")
            await page.locator(".opblock").first.wait_for(timeout=20_000)
            assert await page.locator(".opblock").count() > 50  # every operation of the API
            assert "firewatch" in await page.locator(".info .title").inner_text()
            await page.locator("button.authorize").click()  # where a signed-in token is given
            await page.locator(".modal-ux").wait_for()
        finally:
            await browser.close()
    assert refused == []
    assert errors == []
    assert csp_violations == []
