"""Debian's Chromium driven by Playwright, never a downloaded browser (`playwright install` needs
a CDN this machine cannot reach). Every page of a failed test is saved as a PNG screenshot under
tests/browser/artifacts/."""

import os
import re
from pathlib import Path

import pytest

from stackctl.settings import TEST_STACK

BASE_URL = TEST_STACK.base_url

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# Flags for a headless run as root in a container-like machine with no GPU and no internet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# Package scope: Playwright's sync API runs an event loop in this thread while the browser
# lives, which must be gone before suites that start their own loops (faults) run.
@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium (make test does)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _same_host_only(route):
    # Only the stack on 127.0.0.1 is reachable from a CI machine: CDN requests (Bootstrap,
    # OpenLayers...) are cut at once rather than left to time out, so the run is the same
    # with or without internet, and no load leaves this machine.
    if route.request.url.startswith(BASE_URL):
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def new_page(browser, request):
    """new_page(label) -> a page in its own browser context (its own cookies: one user each)."""
    contexts = []

    def make(label):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.route("**/*", _same_host_only)
        ctx.set_default_timeout(15_000)
        page = ctx.new_page()
        contexts.append((label, ctx, page))
        return page

    yield make
    failed = any(getattr(getattr(request.node, f"report_{w}", None), "failed", False)
                 for w in ("setup", "call"))
    for label, ctx, page in contexts:
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{label}")
            try:
                page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
                (ARTIFACTS / f"{stem}.html").write_text(page.content())
            except Exception as e:  # a crashed page must not hide the test's own failure
                print(f"screenshot of {label} failed: {e}")
        ctx.close()
