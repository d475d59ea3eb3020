"""Two users' pages in Debian's Chromium (tests/chromium.py), over HTTPS: the browser trusts
the test stack's local CA through its NSS database, so a certificate problem fails the page
load. Every page of a failed test is saved as a PNG screenshot under tests/browser/artifacts/."""

import re
from pathlib import Path

import pytest

from stackctl.settings import TEST_STACK
from tests.chromium import chromium

BASE_URL = TEST_STACK.base_url

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# Package scope: Playwright's sync API runs an event loop in this thread while the browser
# lives, which must be gone before suites that start their own loops (faults) run.
@pytest.fixture(scope="package")
def browser():
    with chromium(ca_file=TEST_STACK.ca_file) as b:
        yield b


def _same_host_only(outside: list):
    """A route handler: requests to the stack go on; any other is aborted at once and its URL
    recorded in OUTSIDE. Only the stack on 127.0.0.1 is reachable from a CI machine, so the
    run is the same with or without internet, no load leaves this machine, and a page that
    depends on a CDN shows it (tests/browser/test_offline_front_end.py counts them)."""

    def route(route):
        if route.request.url.startswith(BASE_URL):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    return route


@pytest.fixture
def new_page(browser, request):
    """new_page(label) -> a page in its own browser context (its own cookies: one user each);
    page.outside_requests lists the URLs it tried outside the stack."""
    contexts = []

    def make(label):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        outside: list[str] = []
        ctx.route("**/*", _same_host_only(outside))
        ctx.set_default_timeout(15_000)
        page = ctx.new_page()
        page.outside_requests = outside
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
