"""The console's tests: a signed-in httpx client per project, and a real headless Chromium (Debian's
package, driven by Playwright for Python; never a downloaded browser build).

Browser tests skip when Chromium or Playwright is missing, unless CI or ASSISTD_TEST_REQUIRE_BROWSER=1
(scripts/install-browser installs both; .ci/run calls it).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import KEY_A, KEY_B
from tests.servers import LiveProcess

CHROMIUM = os.environ.get("ASSISTD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
_CSRF = re.compile(r'name="csrf-token" content="([^"]*)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(base: str, key: str) -> httpx.Client:
    """An httpx client signed in to the console with ``key``; its ``csrf`` attribute holds the token."""
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
    token = csrf_of(client.get("/console/sign-in").text)
    response = client.post("/console/sign-in", data={"api_key": key, "csrf_token": token})
    assert response.status_code == 303, response.text
    client.csrf = csrf_of(client.get("/console/threads").text)  # type: ignore[attr-defined]
    return client


@pytest.fixture(scope="session")
def console_a(server: LiveProcess) -> Iterator[httpx.Client]:
    client = sign_in(server.url, KEY_A)
    yield client
    client.close()


@pytest.fixture(scope="session")
def console_b(server: LiveProcess) -> Iterator[httpx.Client]:
    client = sign_in(server.url, KEY_B)
    yield client
    client.close()


def _browser_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("ASSISTD_TEST_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def browser(server: LiveProcess) -> Iterator[Any]:
    """Started after the server and closed with the module: Playwright's sync API keeps an event loop
    running in this thread while it lives, and later tests (and the session's PostgreSQL tear-down) run
    their own loops with asyncio.run / run_until_complete."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if _browser_required():
            raise
        pytest.skip("playwright is not installed (scripts/install-browser)")
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if _browser_required():
            pytest.fail(f"{CHROMIUM} is missing (scripts/install-browser)")
        pytest.skip(f"{CHROMIUM} is missing (scripts/install-browser)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def browser_sign_in(browser: Any, base: str, key: str, width: int = 1280) -> Any:
    """A new page in its own context (its own cookies), signed in with ``key``. Page errors fail the test."""
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda m: page.errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{base}/console/sign-in")
    page.fill("#api_key", key)
    page.click("main button[type=submit]")
    page.wait_for_url("**/console/threads")
    return page


@pytest.fixture
def page_a(browser: Any, server: LiveProcess) -> Iterator[Any]:
    page = browser_sign_in(browser, server.url, KEY_A)
    yield page
    assert page.errors == [], page.errors
    page.context.close()
