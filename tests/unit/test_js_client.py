"""The browser client's logic (public/js/dam_inventory.js) in Debian's chromium, against the
real markup rendered by the app's templates. The network is replaced by in-page fakes
(WebSocket, fetch, and the app's map API): this is about the client's own logic
(URL choice, catch-up, backoff, 4401, live table/map updates), not about the server, which the
e2e and browser suites cover.
"""

import json
from pathlib import Path

import pytest

from tests.chromium import chromium

JS = Path(__file__).resolve().parents[2] / "app/tethysapp/dam_inventory/public/js/dam_inventory.js"

FAKES = r"""
window.__sockets = [];
window.__fetches = [];
window.__delays = [];
window.__since = {dams: [], deleted: [], last_id: 0, last_deletion: 0};
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 0; window.__sockets.push(this); }
  open() { this.readyState = 1; this.onopen && this.onopen({}); }
  message(obj) { this.onmessage && this.onmessage({data: JSON.stringify(obj)}); }
  drop(code) { this.readyState = 3; this.onclose && this.onclose({code: code}); }
  send() {}
  close() {}
}
window.WebSocket = FakeSocket;
window.fetch = function (url) {
  window.__fetches.push(url);
  const body = JSON.stringify(window.__since);
  return Promise.resolve({ok: true, status: 200, json: () => Promise.resolve(JSON.parse(body))});
};
const realSetTimeout = window.setTimeout.bind(window);
window.setTimeout = function (fn, delay) { window.__delays.push(delay); return realSetTimeout(fn, 0); };
"""

# The map API of public/js/dam_map.js (window.damInventoryMap), faked: the real OpenLayers
# map is the browser suite's business (tests/browser/test_map.py).
FAKE_MAP = r"""
window.__features = {};
window.damInventoryMap = {
  mode: "browse",
  addDam(dam) { window.__features[dam.id] = [dam.lon, dam.lat]; },
  removeDam(id) { delete window.__features[id]; },
  centreOn() {}, showPopup() {}, closePopup() {}, onSelect() {},
};
"""


@pytest.fixture(scope="module")
def browser(harness_html):
    # harness_html first: Django refuses to run inside the event loop Playwright's sync API starts.
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def harness_html():
    """The client's real markup, from the app's templates (no database needed)."""
    from django.template.loader import render_to_string

    ctx = {
        "ws_path": "/apps/dam-inventory/dams/notifications/ws/",
        "since_url": "/apps/dam-inventory/dams/since/",
        "dam_json_url": "/apps/dam-inventory/dams/0/json/",
        "hydrograph_url": "/apps/dam-inventory/dams/0/hydrograph/",
        "last_id": 3, "last_deletion": 1, "close_unauthenticated": 4401, "dams": [],
    }
    client = render_to_string("dam_inventory/_client.html", ctx)
    table = render_to_string("dam_inventory/_dam_table.html", ctx)
    return (
        "<!doctype html><html><body>" + client +
        table +
        '<script src="/static/dam_inventory/js/dam_inventory.js"></script></body></html>'
    )


def open_page(browser, harness_html, origin="http://portal.test:8080", with_map=False):
    page = browser.new_page()
    page.add_init_script(FAKES + (FAKE_MAP if with_map else ""))
    js = JS.read_text()
    page.route(f"{origin}/**", lambda route: route.fulfill(
        status=200,
        content_type="application/javascript" if route.request.url.endswith(".js") else "text/html",
        body=js if route.request.url.endswith(".js") else harness_html,
    ))
    page.goto(f"{origin}/apps/dam-inventory/")
    page.wait_for_function("window.__sockets.length === 1")
    return page


def state(page, expr):
    return page.evaluate(expr)


DAM = {"id": 4, "name": "Hoover <b>", "owner": "Reclamation", "river": "Colorado",
       "date_built": "1936-03-01", "lon": -114.7, "lat": 36.0}


def test_socket_url_comes_from_the_page_and_uses_ws_on_http(browser, harness_html):
    page = open_page(browser, harness_html)
    assert state(page, "window.__sockets[0].url") == "ws://portal.test:8080/apps/dam-inventory/dams/notifications/ws/"
    page.close()


def test_https_page_uses_wss(browser, harness_html):
    page = open_page(browser, harness_html, origin="https://portal.test")
    assert state(page, "window.__sockets[0].url") == "wss://portal.test/apps/dam-inventory/dams/notifications/ws/"
    page.close()


def test_open_catches_up_from_the_rendered_ids_and_shows_missed_dams(browser, harness_html):
    page = open_page(browser, harness_html)
    page.evaluate(f"window.__since = {json.dumps({'dams': [DAM], 'deleted': [], 'last_id': 4, 'last_deletion': 1})}")
    page.evaluate("window.__sockets[0].open()")
    page.wait_for_function("document.getElementById('dam-inventory-client').dataset.catchups === '1'")
    assert state(page, "window.__fetches[0]") == "/apps/dam-inventory/dams/since/?since=3&deleted_since=1"
    assert page.inner_text("#dam-notification-text") == "Dam Hoover <b> was added"
    assert page.locator('tr[data-dam-id="4"]').count() == 1
    assert page.get_attribute('tr[data-dam-id="4"] a', "href") == "/apps/dam-inventory/dams/4/hydrograph/"
    page.close()


def test_live_add_then_delete_updates_table_and_notification(browser, harness_html):
    page = open_page(browser, harness_html)
    page.evaluate("window.__sockets[0].open()")
    page.evaluate(f"window.__sockets[0].message({json.dumps({'event': 'dam_added', 'message': 'New Dam', 'dam': DAM})})")
    assert page.inner_text("#dam-notification-text") == "Dam Hoover <b> was added"
    assert page.is_visible("#dam-notification-show") and page.is_visible("#dam-notification-refresh")
    assert page.locator("#dam-table tr[data-dam-id]").count() == 1
    assert page.locator("#dam-table tr.dam-empty").count() == 0
    # the same dam again (e.g. socket message and catch-up): shown once
    page.evaluate(f"window.__sockets[0].message({json.dumps({'event': 'dam_added', 'dam': DAM})})")
    assert page.locator("#dam-table tr[data-dam-id]").count() == 1
    page.evaluate("window.__sockets[0].message({event: 'dam_deleted', id: 4, name: 'Hoover', seq: 2})")
    assert page.locator("#dam-table tr[data-dam-id]").count() == 0
    assert state(page, "window.damInventoryClient.state.lastDeletion") == 2
    assert state(page, "window.damInventoryClient.state.lastId") == 4
    page.close()


def test_drop_reconnects_with_growing_backoff_and_catches_up_from_the_last_id(browser, harness_html):
    page = open_page(browser, harness_html)
    page.evaluate("window.__sockets[0].open()")
    page.evaluate(f"window.__sockets[0].message({json.dumps({'event': 'dam_added', 'dam': DAM})})")
    for n in range(1, 5):  # four failed attempts in a row
        page.evaluate(f"window.__sockets[{n - 1}].drop(1006)")
        page.wait_for_function(f"window.__sockets.length === {n + 1}")
    delays = state(page, "window.__delays")
    assert [d >= 500 * 2 ** i and d <= 1000 * 2 ** i for i, d in enumerate(delays[:4])] == [True] * 4
    page.evaluate("window.__sockets[4].open()")
    page.wait_for_function("window.__fetches.length === 2")
    assert state(page, "window.__fetches[1]") == "/apps/dam-inventory/dams/since/?since=4&deleted_since=1"
    assert page.get_attribute("#dam-ws-status", "data-state") == "open"
    page.close()


def test_4401_stops_reconnecting_and_asks_to_log_in(browser, harness_html):
    page = open_page(browser, harness_html)
    page.evaluate("window.__sockets[0].drop(4401)")
    assert page.get_attribute("#dam-ws-status", "data-state") == "unauthenticated"
    assert "log in again" in page.inner_text("#dam-notification-text")
    assert state(page, "window.__sockets.length") == 1
    assert state(page, "window.__delays.length") == 0
    page.close()


def test_map_gets_live_dams_and_loses_deleted_ones(browser, harness_html):
    page = open_page(browser, harness_html, with_map=True)
    page.evaluate("window.__sockets[0].open()")
    page.evaluate(f"window.__sockets[0].message({json.dumps({'event': 'dam_added', 'dam': DAM})})")
    page.wait_for_function("4 in window.__features")
    assert state(page, "window.__features[4]") == [-114.7, 36.0]
    page.evaluate("window.__sockets[0].message({event: 'dam_deleted', id: 4, seq: 2})")
    assert state(page, "4 in window.__features") is False
    page.close()
