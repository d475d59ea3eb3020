"""Two users in two browser contexts: one adds a dam through the Add Dam form, the other, with
the home page open, sees the notification and the new dam in the dam table without reloading.

The adder types the coordinates into the longitude/latitude fields (the keyboard and
accessibility path of the form); placing the point by a click on the map, and the live
marker on the other user's map, are test_offline_front_end.py's. Timeouts below are upper
bounds for a slow CI machine, not speed assertions."""

from playwright.sync_api import expect

from stackctl.portal import ADD_PATH, APP_PATH, LOGIN_PATH, unique_name
from stackctl.settings import TEST_STACK

BASE_URL = TEST_STACK.base_url


def log_in(page, username, password):
    page.goto(BASE_URL + LOGIN_PATH, wait_until="domcontentloaded")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("[name=login-submit]")
    assert LOGIN_PATH not in page.url, f"login as {username} failed: still on {page.url}"


def open_home_live(page):
    page.goto(BASE_URL + APP_PATH, wait_until="domcontentloaded")
    # the JS client reports its socket state in the page; wait until it is really open
    expect(page.locator("#dam-ws-status")).to_have_attribute("data-state", "open", timeout=20_000)
    page.evaluate("window.__sameDocument = 'not reloaded'")


def test_second_user_sees_new_dam_live(new_page, admin_credentials, viewer_credentials):
    viewer = new_page("viewer")
    log_in(viewer, *viewer_credentials)
    with viewer.expect_websocket() as socket:
        open_home_live(viewer)
    assert viewer.url.startswith("https://"), viewer.url
    assert socket.value.url.startswith("wss://"), f"the page's socket is not over TLS: {socket.value.url}"

    adder = new_page("adder")
    log_in(adder, *admin_credentials)
    adder.goto(BASE_URL + ADD_PATH, wait_until="domcontentloaded")
    name = unique_name("Browser dam")
    adder.fill("input[name=name]", name)
    adder.select_option("select[name=owner]", "Other")
    adder.fill("input[name=river]", "Weber")
    adder.fill("input[name=date-built]", "1999-09-09")
    adder.fill("input[name=longitude]", "-111.5")
    adder.fill("input[name=latitude]", "41.1")
    with adder.expect_navigation(wait_until="domcontentloaded"):
        adder.click("[name=add-button]")
    assert ADD_PATH not in adder.url, "the add was refused: " + adder.inner_text("body")[:1000]

    notification = viewer.locator("#dam-notification-text")
    expect(notification).to_have_text(f"Dam {name} was added", timeout=10_000)
    expect(viewer.locator("#dam-notification")).to_be_visible()
    row = viewer.locator("#dam-table tbody tr", has_text=name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Weber")
    expect(row).to_contain_text("Other")
    assert viewer.evaluate("window.__sameDocument") == "not reloaded", "the viewer's page reloaded"


def test_viewer_without_permission_gets_403_on_add_dam(new_page, viewer_credentials):
    # the nav link may be shown to everyone (as upstream does); the server is what refuses
    page = new_page("viewer")
    log_in(page, *viewer_credentials)
    response = page.goto(BASE_URL + ADD_PATH, wait_until="domcontentloaded")
    assert response.status == 403, f"Add Dam for a user without add_dams: HTTP {response.status}"


# The workers announce the outbox's last seq every 5 s (fanout.SYNC_SECONDS); an upper bound.
SYNC_DEADLINE_MS = 15_000


def test_a_lost_frame_is_recovered_without_a_reload(new_page, admin_portal, viewer_credentials):
    """The network loses the frame that announces a new dam; the page learns of it from the
    next sync message and fetches it, on the same socket, without reloading."""
    viewer = new_page("viewer")
    lost = []

    def lossy_network(ws):
        server = ws.connect_to_server()

        def to_page(message):
            if not lost and '"dam_added"' in str(message):
                lost.append(message)  # dropped
                return
            ws.send(message)

        server.on_message(to_page)

    viewer.route_web_socket("**/dams/notifications/ws/", lossy_network)
    log_in(viewer, *viewer_credentials)
    open_home_live(viewer)
    name = unique_name("Lost frame dam")
    admin_portal.add_dam_checked(name)
    row = viewer.locator("#dam-table tbody tr", has_text=name)
    expect(row).to_have_count(1, timeout=SYNC_DEADLINE_MS)
    assert lost and name in str(lost[0]), f"the test network dropped nothing: {lost}"
    assert viewer.get_attribute("#dam-inventory-client", "data-connects") == "1"
    assert viewer.evaluate("window.__sameDocument") == "not reloaded", "the viewer's page reloaded"
