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
window.__events = [];      // the outbox the fake events endpoint answers from
window.__intervals = [];
window.__clock = 0;        // ms added to Date.now(): the tests move time for the keepalive
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; window.__sockets.push(this); }
  open() { this.readyState = 1; this.onopen && this.onopen({}); }
  message(obj) { this.onmessage && this.onmessage({data: typeof obj === "string" ? obj : JSON.stringify(obj)}); }
  drop(code) { this.readyState = 3; this.onclose && this.onclose({code: code}); }
  send(text) { this.sent.push(text); }
  close() { this.readyState = 3; this.closedByClient = true; }
}
window.WebSocket = FakeSocket;
window.fetch = function (url) {
  window.__fetches.push(url);
  const after = parseInt(new URL(url, location.href).searchParams.get("after"), 10);
  const events = window.__events.filter(e => e.seq > after);
  const body = JSON.stringify({events: events, last_seq: events.length ? events[events.length - 1].seq : after, more: false});
  return Promise.resolve({ok: true, status: 200, json: () => Promise.resolve(JSON.parse(body))});
};
const realSetTimeout = window.setTimeout.bind(window);
window.setTimeout = function (fn, delay) { window.__delays.push(delay); return realSetTimeout(fn, 0); };
window.setInterval = function (fn) { window.__intervals.push(fn); return window.__intervals.length; };
window.clearInterval = function (id) { window.__intervals[id - 1] = () => {}; };
const realNow = Date.now;
Date.now = () => realNow() + window.__clock;
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
        "events_url": "/apps/dam-inventory/dams/events/",
        "since_url": "/apps/dam-inventory/dams/since/",
        "dam_json_url": "/apps/dam-inventory/dams/0/json/",
        "hydrograph_url": "/apps/dam-inventory/dams/0/hydrograph/",
        "last_seq": 3, "close_unauthenticated": 4401, "dams": [],
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


def added(seq, dam=None):
    return {"event": "dam_added", "message": "New Dam", "dam": dam or {**DAM, "id": seq, "name": f"Dam {seq}"}, "seq": seq}


def deleted(seq, dam_id):
    return {"event": "dam_deleted", "message": "Dam Deleted", "id": dam_id, "name": f"Dam {dam_id}", "seq": seq}


def rows(page):
    return [int(i) for i in page.eval_on_selector_all("#dam-table tr[data-dam-id]", "rs => rs.map(r => r.dataset.damId)")]


def catchups(page, n):
    page.wait_for_function(f"document.getElementById('dam-inventory-client').dataset.catchups === '{n}'")


def opened(browser, harness_html, **kw):
    """A page whose first socket is open and whose first catch-up is done."""
    page = open_page(browser, harness_html, **kw)
    page.evaluate("window.__sockets[0].open()")
    catchups(page, 1)
    return page


def send(page, event, socket=0):
    page.evaluate(f"window.__sockets[{socket}].message({json.dumps(event)})")


def test_open_catches_up_from_the_rendered_seq_and_shows_missed_dams(browser, harness_html):
    page = open_page(browser, harness_html)
    page.evaluate(f"window.__events = {json.dumps([added(4, DAM)])}")
    page.evaluate("window.__sockets[0].open()")
    catchups(page, 1)
    assert state(page, "window.__fetches[0]") == "/apps/dam-inventory/dams/events/?after=3"
    assert page.inner_text("#dam-notification-text") == "Dam Hoover <b> was added"
    assert rows(page) == [4]
    assert page.get_attribute('tr[data-dam-id="4"] a', "href") == "/apps/dam-inventory/dams/4/hydrograph/"
    assert state(page, "window.damInventoryClient.state.lastSeq") == 4
    page.close()


def test_live_events_in_order_update_table_and_notification(browser, harness_html):
    page = opened(browser, harness_html)
    send(page, added(4, DAM))
    assert page.inner_text("#dam-notification-text") == "Dam Hoover <b> was added"
    assert page.is_visible("#dam-notification-show") and page.is_visible("#dam-notification-refresh")
    assert rows(page) == [4] and page.locator("#dam-table tr.dam-empty").count() == 0
    # the same event again (e.g. live and by a catch-up): applied once
    send(page, added(4, DAM))
    assert rows(page) == [4]
    send(page, deleted(5, 4))
    assert rows(page) == []
    assert page.inner_text("#dam-notification-text") == "Dam Dam 4 was deleted"
    assert state(page, "window.damInventoryClient.state.lastSeq") == 5
    assert state(page, "window.__fetches.length") == 1  # in order: no catch-up needed
    page.close()


def test_a_gap_is_filled_from_the_events_endpoint_in_order(browser, harness_html):
    page = opened(browser, harness_html)
    # 4 and 5 were published but never arrived (a publish failed, a frame was lost); 6 does
    page.evaluate(f"window.__events = {json.dumps([added(4), added(5), added(6)])}")
    send(page, added(6))
    catchups(page, 2)
    assert state(page, "window.__fetches[1]") == "/apps/dam-inventory/dams/events/?after=3"
    assert rows(page) == [4, 5, 6]
    assert state(page, "window.damInventoryClient.state.lastSeq") == 6
    page.close()


def test_published_out_of_order_across_a_drop_loses_nothing(browser, harness_html):
    """4 and 5 commit in that order but 5 is published first; the socket drops before 4 arrives."""
    page = opened(browser, harness_html)
    page.evaluate(f"window.__events = {json.dumps([added(4), added(5)])}")
    send(page, added(5))  # 5 before 4: a gap
    page.evaluate("window.__sockets[0].drop(1006)")
    page.wait_for_function("window.__sockets.length === 2")
    page.evaluate("window.__sockets[1].open()")
    page.wait_for_function("document.querySelectorAll('#dam-table tr[data-dam-id]').length === 2")
    send(page, added(4), socket=1)  # late: ignored
    assert rows(page) == [4, 5]
    assert state(page, "window.damInventoryClient.state.lastSeq") == 5
    page.close()


def test_a_sync_ahead_of_the_page_catches_up_and_one_level_with_it_does_not(browser, harness_html):
    page = opened(browser, harness_html)
    page.evaluate("window.__sockets[0].message({event: 'sync', seq: 3})")
    assert state(page, "window.__fetches.length") == 1
    page.evaluate(f"window.__events = {json.dumps([added(4)])}")  # its publish failed
    page.evaluate("window.__sockets[0].message({event: 'sync', seq: 4})")
    catchups(page, 2)
    assert rows(page) == [4]
    page.close()


def test_a_silent_socket_is_pinged_then_given_up_and_replaced(browser, harness_html):
    page = opened(browser, harness_html)
    tick = "window.__intervals.forEach(f => f())"
    page.evaluate(f"window.__clock += 31000; {tick}")  # silent for 31 s: a ping
    assert state(page, "window.__sockets[0].sent") == ["ping"]
    page.evaluate(f"window.__sockets[0].message('pong'); window.__clock += 20000; {tick}")
    assert state(page, "window.__sockets.length") == 1  # the pong counted: still alive
    page.evaluate(f"window.__clock += 41000; {tick}")  # no answer to the next ping
    page.wait_for_function("window.__sockets.length === 2")
    assert state(page, "window.__sockets[0].closedByClient") is True
    page.evaluate("window.__sockets[1].open()")
    catchups(page, 2)
    page.close()


def test_drop_reconnects_with_growing_backoff_and_catches_up_from_the_last_seq(browser, harness_html):
    page = opened(browser, harness_html)
    send(page, added(4, DAM))
    for n in range(1, 5):  # four failed attempts in a row
        page.evaluate(f"window.__sockets[{n - 1}].drop(1006)")
        page.wait_for_function(f"window.__sockets.length === {n + 1}")
    delays = state(page, "window.__delays")
    assert [d >= 500 * 2 ** i and d <= 1000 * 2 ** i for i, d in enumerate(delays[:4])] == [True] * 4
    page.evaluate("window.__sockets[4].open()")
    page.wait_for_function("window.__fetches.length === 2")
    assert state(page, "window.__fetches[1]") == "/apps/dam-inventory/dams/events/?after=4"
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
    page = opened(browser, harness_html, with_map=True)
    send(page, added(4, DAM))
    page.wait_for_function("4 in window.__features")
    assert state(page, "window.__features[4]") == [-114.7, 36.0]
    send(page, deleted(5, 4))
    assert state(page, "4 in window.__features") is False
    page.close()
