"""`make page-weight`: what the app's home page costs a browser, on the running stack (`make up`).

Fills the inventory up to PAGE_WEIGHT_DAMS dams (default 1,000; dams are added, never
removed, so run it on a stack whose data may grow), then loads the home page in Debian's
Chromium, trusting the stack's CA: first with an empty cache (cold), then again in the same
browser (warm). For each load it prints the bytes transferred (the page and every asset, as
the browser's Resource Timing reports them, headers excluded), the number of requests, the
time to the load event, and the time until the map has drawn every dam. Requests that leave
the stack are counted (the command fails if there is one).

Knobs (env): PAGE_WEIGHT_DAMS, PAGE_WEIGHT_RUNS (loads of each kind, default 3; the median is
printed). The stack is the one `make up` runs (COMPOSE_PROJECT_NAME, WEB_PORT... as for up).
"""

from __future__ import annotations

import os
import statistics

from stackctl import hosttools
from stackctl.console import StackError, say
from stackctl.settings import ROOT

DEFAULT_DAMS = 1000
DEFAULT_RUNS = 3


def main(argv: list[str]) -> int:
    if argv:
        raise StackError(f"pageweight takes no arguments (knobs are env variables), got {argv}")
    if os.environ.get("STACKCTL_IN_VENV") != "1":
        # Playwright lives in the project venv with the test suites.
        python = hosttools.venv_python()
        os.environ["STACKCTL_IN_VENV"] = "1"
        os.chdir(ROOT)
        os.execv(python, [python, "-m", "stackctl", "pageweight"])
    return measure(int(os.environ.get("PAGE_WEIGHT_DAMS", DEFAULT_DAMS)),
                   int(os.environ.get("PAGE_WEIGHT_RUNS", DEFAULT_RUNS)))


def fill(portal, wanted: int) -> int:
    have = len(portal.dams_since(0))
    for n in range(have, wanted):
        if n % 100 == 0:
            say(f"adding dams: {n}/{wanted}")
        portal.add_dam_checked(f"Page weight dam {n + 1}", lon=-125 + (n * 7.3) % 58, lat=25 + (n * 3.1) % 24)
    return max(have, wanted)


LOAD_FIGURES = """() => {
    const entries = [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')];
    return {bytes: entries.reduce((sum, e) => sum + (e.encodedBodySize && e.transferSize ? e.encodedBodySize : 0), 0),
            decoded: entries.reduce((sum, e) => sum + (e.decodedBodySize || 0), 0),
            requests: entries.length,
            fromCache: entries.filter(e => e.transferSize === 0).length,
            load: performance.getEntriesByType('navigation')[0].loadEventEnd};
}"""
MAP_COMPLETE = """(n) => window.damInventoryMap && window.damInventoryMap.dams.getFeatures().length >= n"""


def load(page, url: str, dams: int) -> dict:
    page.goto(url, wait_until="load")
    page.wait_for_function(MAP_COMPLETE, arg=dams, timeout=60_000)
    mapped = page.evaluate("performance.now()")
    figures = page.evaluate(LOAD_FIGURES)
    return {**figures, "map": mapped}


def measure(dams: int, runs: int) -> int:
    from stackctl.portal import APP_PATH, LOGIN_PATH, Portal, admin_credentials
    from stackctl.settings import Stack
    from tests.chromium import chromium

    stack = Stack.from_environment()
    username, password = admin_credentials(stack)
    portal = Portal.of(stack).login(username, password)
    dams = fill(portal, dams)
    url = stack.base_url + APP_PATH
    results: dict[str, list[dict]] = {"cold": [], "warm": []}
    outside: list[str] = []
    with chromium(ca_file=stack.ca_file) as browser:
        for _ in range(runs):
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            # Requests are watched, not routed: routing would turn the browser's cache off.
            ctx.on("request", lambda request: None if request.url.startswith(stack.base_url)
                   else outside.append(request.url))
            page = ctx.new_page()
            page.goto(stack.base_url + LOGIN_PATH)
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", password)
            with page.expect_navigation():
                page.click("[name=login-submit]")
            # The login page warmed nothing the home page needs but Bootstrap, jQuery and the
            # fonts: clear the cache so that "cold" is a first visit to the app.
            cdp = ctx.new_cdp_session(page)
            cdp.send("Network.clearBrowserCache")
            results["cold"].append(load(page, url, dams))
            results["warm"].append(load(page, url, dams))
            ctx.close()
    print(f"home page with {dams} dams, median of {runs} loads each:")
    for kind, loads in results.items():
        def med(key):
            return statistics.median(r[key] for r in loads)
        print(f"  {kind}: {med('bytes') / 1024:,.0f} KiB transferred ({med('decoded') / 1024:,.0f} KiB "
              f"uncompressed), {med('requests'):.0f} requests ({med('fromCache'):.0f} from cache), "
              f"load event {med('load'):,.0f} ms, every dam on the map {med('map'):,.0f} ms")
    print(f"  requests outside the stack: {len(outside)}")
    return 1 if outside else 0
