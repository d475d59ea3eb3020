"""The site settings of the official image's variables (SITE_TITLE, PRIMARY_COLOR; the test
stack's web.env sets them, tests/conftest.py) as a user sees them: the page title and the
header's colour, rendered in Chromium."""

from stackctl.settings import TEST_STACK
from tests.browser.test_live_notification import log_in
from tests.conftest import TEST_WEB_SETTINGS


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_site_title_and_primary_colour_are_the_configured_ones(new_page, viewer_credentials):
    page = new_page("viewer")
    log_in(page, *viewer_credentials)
    page.goto(TEST_STACK.base_url + "/apps/", wait_until="load")
    assert TEST_WEB_SETTINGS["SITE_TITLE"] in page.title()
    header = page.eval_on_selector("#header-navbar", "e => getComputedStyle(e).backgroundColor")
    assert header == rgb(TEST_WEB_SETTINGS["PRIMARY_COLOR"]), header
