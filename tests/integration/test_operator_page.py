"""The operators' page in a real browser (Debian's Chromium driven by Playwright) against `python -m cli serve`:
sign in, open a lot, read the same numbers as the API, and see a gate entry change the free count without a
reload. Also: nothing is loaded from anywhere but ParkGrid itself, and /docs renders offline."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from core.context import AppContext, build_context
from core.settings import Settings
from tests.api.test_gates_world import event, gate_lot
from tests.factories import UserFactory
from tests.procs import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"



@pytest.fixture
async def real_ctx(settings: Settings) -> AsyncIterator[AppContext]:
    """The test's database and Redis prefix on the wall clock: the server it talks to runs on it too."""
    context = build_context(settings)
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
def server(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PARKGRID_DATABASE_URL": settings.database_url,
           "PARKGRID_SECRET_KEY": settings.secret_key.get_secret_value(), "PARKGRID_REDIS_URL": settings.redis_url,
           "PARKGRID_REDIS_PREFIX": settings.redis_prefix, "PARKGRID_BROKER_URL": settings.broker_url,
           "PARKGRID_CELERY_QUEUE": settings.celery_queue, "PARKGRID_RATE_LIMITS": "off",
           "PARKGRID_ENVIRONMENT": "test", "PARKGRID_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def _only_local(page: Page, base: str) -> list[str]:
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((base, "data:")) else elsewhere.append(r.url))
    return elsewhere


def screenshot_path(tmp_path: Path) -> Path:
    """docs/img/dashboard.png when asked (PARKGRID_UPDATE_SCREENSHOT=1) or missing; a scratch file otherwise, so a
    test run leaves the work tree as it found it."""
    if os.environ.get("PARKGRID_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        return SCREENSHOT
    return tmp_path / "dashboard.png"


async def test_sign_in_open_a_lot_watch_a_gate_entry_change_the_free_count_and_docs_offline(
        server: str, real_ctx: AppContext, browser: Browser, tmp_path: Path) -> None:
    users = UserFactory(real_ctx)
    op = await users.create("operator", email=f"ops-{uuid.uuid4().hex[:6]}@example.com")
    gl = await gate_lot(real_ctx, organisation_id=op.organisation_id, spots={"regular": 8, "ev": 2},
                        name="Harbour Street Garage")
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        for plate in ("SEED1", "SEED2", "SEED3"):
            assert (await http.post(f"/api/v1/gates/{gl.entry}/events", headers=gl.headers,
                                    json=event(real_ctx, plate=plate))).status_code == 200
        api = (await http.get(f"/api/v1/lots/{gl.lot_id}/dashboard", headers=op.headers)).json()
        free = api["occupancy"]["total"]["free"]
        assert free == 7

        page = await browser.new_page(viewport={"width": 1200, "height": 1000})
        elsewhere = _only_local(page, server)
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        opened = await page.goto(f"{server}/operator/")
        assert opened is not None and "default-src 'self'" in (await opened.header_value("content-security-policy") or "")
        await page.get_by_label("Email").fill(op.email)
        await page.get_by_label("Password").fill(op.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("link", name="Harbour Street Garage").click()
        free_total = page.get_by_test_id("free-total")
        await expect(free_total).to_have_text(str(free))
        await expect(page.locator("#capacity-total")).to_have_text(str(api["occupancy"]["total"]["capacity"]))
        await expect(page.locator("#revenue")).to_contain_text("Captured")
        await expect(page.get_by_test_id("live-state")).to_have_text("live", timeout=5000)
        await page.evaluate("window.__noReload = true")

        entered = await http.post(f"/api/v1/gates/{gl.entry}/events", headers=gl.headers,
                                  json=event(real_ctx, plate="LIVE 42"))
        assert entered.json()["decision"] == "open"
        await expect(free_total).to_have_text(str(free - 1), timeout=3000)
        assert await page.evaluate("window.__noReload") is True
        await expect(page.locator(f'tr[data-gate="{gl.entry}"]')).to_contain_text("open")
        after = (await http.get(f"/api/v1/lots/{gl.lot_id}/dashboard", headers=op.headers)).json()
        assert after["occupancy"]["total"]["free"] == free - 1
        silent_exit = page.locator(f'li[data-alert="gate_silent:{gl.exit}"]')
        await silent_exit.get_by_role("button", name="Acknowledge").click()
        await expect(silent_exit).to_contain_text(f"ack {op.email}")
        shot = screenshot_path(tmp_path)
        shot.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert elsewhere == [] and console_errors == []  # nothing the content security policy refused

    # the same server: a wrong password is told, and the API docs render from local assets
    page = await browser.new_page()
    elsewhere = _only_local(page, server)
    await page.goto(f"{server}/operator/")
    await page.get_by_label("Email").fill(op.email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong email or password")
    await page.goto(f"{server}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("ParkGrid API", timeout=10_000)
    await expect(page.locator(".opblock").first).to_be_visible()
    assert elsewhere == []
