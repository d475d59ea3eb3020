"""Debian's Chromium under Playwright, for every suite that drives a browser: never a
downloaded browser (`playwright install` needs a CDN a locked-down machine cannot reach)."""

import contextlib
from pathlib import Path

from stackctl import hosttools

CHROMIUM = Path("/usr/bin/chromium")
# A headless run as root on a machine with no GPU and no internet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def chromium():
    """A launched browser (Debian's package is installed first when missing)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        hosttools.ensure_debian_packages(["chromium"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
