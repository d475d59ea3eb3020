"""Debian's Chromium under Playwright, for every suite that drives a browser: never a
downloaded browser (`playwright install` needs a CDN a locked-down machine cannot reach).

The stack is served over HTTPS by its own CA: the browser trusts that CA the way a user's
would, through an NSS certificate database (certutil, Debian's libnss3-tools) in the
browser's home, never by ignoring certificate errors."""

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

from stackctl import hosttools

CHROMIUM = Path("/usr/bin/chromium")
CERTUTIL = Path("/usr/bin/certutil")
# A headless run as root on a machine with no GPU and no internet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def trusting_home(home: Path, ca_file: Path) -> None:
    """HOME/.pki/nssdb, where Chromium on Linux reads its trust, with CA_FILE trusted for sites."""
    if not CERTUTIL.exists():
        hosttools.ensure_debian_packages(["libnss3-tools"])
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for args in (["-N", "--empty-password"], ["-A", "-t", "C,,", "-n", "dam inventory stack CA", "-i", str(ca_file)]):
        subprocess.run([str(CERTUTIL), "-d", f"sql:{nssdb}", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def chromium(ca_file: Path | None = None):
    """A launched browser (Debian's package is installed first when missing) that trusts
    CA_FILE, when given, as a certificate authority."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        hosttools.ensure_debian_packages(["chromium"])
    with tempfile.TemporaryDirectory(prefix="chromium-home-") as home, sync_playwright() as pw:
        if ca_file:
            trusting_home(Path(home), ca_file)
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                     env={**os.environ, "HOME": home})
        try:
            yield browser
        finally:
            browser.close()
