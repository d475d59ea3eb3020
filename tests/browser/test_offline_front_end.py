"""The front end as a user sees it with no internet, in Debian's Chromium over HTTPS.

Every request that does not go to the stack is aborted and recorded (conftest's new_page):
the portal's pages and the app's must make none, and must still be styled and scripted by
the libraries the stack serves itself. The home map is real OpenLayers drawing the offline
base map and one marker per dam; a click on a marker opens its popup; Add Dam places the
point by a click; another user's open map gains and loses the marker live.

Screenshots of the map, the popup and Add Dam are written to tests/browser/artifacts/screens/
(the README shows copies of them)."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from stackctl.portal import ADD_PATH, APP_PATH, HYDROGRAPH_ASSIGN_PATH, LOGIN_PATH, unique_name
from stackctl.settings import TEST_STACK
from tests.browser.test_live_notification import log_in

BASE_URL = TEST_STACK.base_url
SCREENS = Path(__file__).resolve().parent / "artifacts" / "screens"

# Bootstrap's stylesheet defines this on :root; Tethys' own css sets the portal font.
BOOTSTRAP_PRIMARY = "#0d6efd"


def dam_paths(dam_id: int) -> list[str]:
    return [APP_PATH, APP_PATH + "dams/", ADD_PATH, HYDROGRAPH_ASSIGN_PATH,
            f"{APP_PATH}dams/{dam_id}/hydrograph/", f"{APP_PATH}dams/{dam_id}/delete/"]


# A few more dams across the West, so the map (and its screenshot) shows what the app is for.
NEIGHBOURS = [("Colorado", -114.74, 36.02), ("Columbia", -118.98, 47.96), ("Missouri", -100.4, 44.45),
              ("Snake", -116.9, 43.25), ("Rio Grande", -107.2, 33.15)]


@pytest.fixture(scope="module")
def a_dam(stack, admin_credentials) -> dict:
    portal = stack.portal().login(*admin_credentials)
    name = unique_name("Offline dam")
    dam_id = portal.add_dam_checked(name, lon=-111.9, lat=40.8, river="Jordan")
    for river, lon, lat in NEIGHBOURS:
        portal.add_dam_checked(unique_name(f"{river} dam"), lon=lon, lat=lat, river=river)
    return {"id": dam_id, "name": name}


def styled_and_scripted(page) -> dict:
    """What the page got from the stack's own copies of the libraries."""
    return page.evaluate("""() => ({
        bootstrap: getComputedStyle(document.documentElement).getPropertyValue('--bs-primary').trim(),
        fontsFailed: [...document.fonts].filter(f => f.status === 'error').map(f => f.family),
        openSans: [...document.fonts].filter(f => f.family.includes('Open Sans') && f.status === 'loaded').length,
        jquery: typeof window.jQuery === 'function',
        bootstrapJs: typeof window.bootstrap === 'object',
    })""")


def visit(page, path: str) -> dict:
    response = page.goto(BASE_URL + path, wait_until="load")
    assert response.status == 200, f"{path}: HTTP {response.status}"
    # Tethys' stylesheet declares the portal font: load it as a page that uses it would
    page.evaluate("document.fonts.load(\"16px 'Open Sans'\").then(() => document.fonts.ready)")
    return styled_and_scripted(page)


def test_every_page_loads_nothing_from_outside_and_is_styled(new_page, admin_credentials, a_dam):
    page = new_page("admin")
    anonymous = visit(page, LOGIN_PATH)
    log_in(page, *admin_credentials)
    seen = {LOGIN_PATH: anonymous}
    for path in ["/apps/", *dam_paths(a_dam["id"]), "/admin/"]:
        seen[path] = visit(page, path)

    assert page.outside_requests == [], f"requests left the stack: {page.outside_requests}"
    for path, got in seen.items():
        if path == "/admin/":  # Django's admin has its own stylesheet, served by the stack too
            continue
        assert got["bootstrap"] == BOOTSTRAP_PRIMARY, f"{path}: Bootstrap's stylesheet did not apply: {got}"
        assert got["jquery"] and got["bootstrapJs"], f"{path}: jQuery or Bootstrap's script missing: {got}"
        assert got["fontsFailed"] == [], f"{path}: fonts failed to load: {got}"
    assert seen["/apps/"]["openSans"] >= 1, f"Open Sans did not load from the stack: {seen['/apps/']}"


def map_state(page) -> dict:
    return page.evaluate("""() => {
        const m = window.damInventoryMap;
        const canvas = document.querySelector('#dam-map canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const colours = new Set();
        for (let i = 0; i < data.length; i += 4 * 97) { colours.add(data.slice(i, i + 4).join(',')); }
        const layers = Object.fromEntries(m.map.getLayers().getArray().map(l => [l.get('name'),
            l.getSource().getFeatures ? l.getSource().getFeatures().length : -1]));
        return {version: window.ol.VERSION || '', markers: m.dams.getFeatures().map(f => f.getId()),
                colours: colours.size, layers: layers};
    }""")


def open_map(page) -> None:
    page.goto(BASE_URL + APP_PATH, wait_until="load")
    expect(page.locator("#dam-ws-status")).to_have_attribute("data-state", "open", timeout=20_000)
    # the base map's two layers loaded, and every dam of the table is a marker
    page.wait_for_function("""() => {
        const m = window.damInventoryMap; if (!m) return false;
        const rows = document.querySelectorAll('#dam-table tr[data-dam-id]').length;
        const base = m.map.getLayers().getArray().filter(l => ['countries', 'lakes'].includes(l.get('name')));
        return rows > 0 && m.dams.getFeatures().length === rows
            && base.every(l => l.getSource().getFeatures().length > 100);
    }""", timeout=20_000)
    page.evaluate("new Promise(r => { const m = window.damInventoryMap.map; m.once('rendercomplete', r); m.render(); })")


def click_dam(page, dam_id: int) -> None:
    """Clicks the marker of DAM_ID where the map draws it."""
    x, y = page.evaluate("""(id) => {
        const m = window.damInventoryMap, f = m.dams.getFeatureById(id);
        m.map.getView().setCenter(f.getGeometry().getCoordinates());
        m.map.renderSync();
        const p = m.map.getPixelFromCoordinate(f.getGeometry().getCoordinates());
        const box = document.getElementById('dam-map').getBoundingClientRect();
        return [box.left + p[0], box.top + p[1]];
    }""", dam_id)
    page.mouse.click(x, y)


def test_home_map_draws_the_offline_base_and_a_marker_per_dam_and_opens_a_popup(new_page, admin_credentials, a_dam):
    page = new_page("admin")
    log_in(page, *admin_credentials)
    open_map(page)
    state = map_state(page)
    rows = sorted(int(i) for i in page.eval_on_selector_all("#dam-table tr[data-dam-id]", "rs => rs.map(r => r.dataset.damId)"))
    assert sorted(state["markers"]) == rows, state
    assert state["layers"]["countries"] > 200 and state["layers"]["lakes"] > 1000, state
    assert state["colours"] >= 3, f"the map canvas looks blank: {state}"  # sea, land, lakes, markers
    assert page.outside_requests == []
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "home-map.png"))

    click_dam(page, a_dam["id"])
    popup = page.locator(".ol-overlay-container #dam-details")
    expect(popup).to_be_visible(timeout=10_000)
    expect(popup.locator("#dam-details-name")).to_have_text(a_dam["name"])
    expect(popup.locator("#dam-details-owner")).to_have_text("Reclamation")
    expect(popup.locator("#dam-details-river")).to_have_text("Jordan")
    expect(popup.locator("#dam-details-date")).not_to_be_empty()
    assert popup.locator("#dam-details-hydrograph-link").get_attribute("href").endswith(
        f"/dams/{a_dam['id']}/hydrograph/")
    # the map moves so that the whole popup shows
    page.wait_for_function("""() => {
        const map = document.getElementById('dam-map').getBoundingClientRect();
        const box = document.getElementById('dam-details').getBoundingClientRect();
        return box.top >= map.top && box.bottom <= map.bottom && box.left >= map.left && box.right <= map.right;
    }""", timeout=5_000)
    page.screenshot(path=str(SCREENS / "popup.png"))


def test_add_dam_by_a_click_on_the_map_appears_and_goes_live_on_another_map(
        new_page, admin_credentials, viewer_credentials):
    viewer = new_page("viewer")
    log_in(viewer, *viewer_credentials)
    open_map(viewer)

    adder = new_page("adder")
    log_in(adder, *admin_credentials)
    adder.goto(BASE_URL + ADD_PATH, wait_until="load")
    adder.wait_for_function("window.damInventoryMap && window.damInventoryMap.mode === 'place'")
    name = unique_name("Clicked dam")
    adder.fill("input[name=name]", name)
    adder.fill("input[name=river]", "Green")
    adder.fill("input[name=date-built]", "1964-06-01")
    box = adder.locator("#dam-map").bounding_box()
    adder.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
    # OpenLayers reports a single click once no second one followed (a double click zooms)
    expect(adder.locator("#longitude")).not_to_have_value("", timeout=5_000)
    lon, lat = float(adder.input_value("#longitude")), float(adder.input_value("#latitude"))
    assert -180 <= lon <= 180 and -90 <= lat <= 90, (lon, lat)
    assert adder.get_attribute("#dam-map", "data-placed") == f"{lon:.5f},{lat:.5f}"
    adder.screenshot(path=str(SCREENS / "add-dam.png"))
    with adder.expect_navigation(wait_until="load"):
        adder.click("[name=add-button]")
    assert ADD_PATH not in adder.url, "the add was refused: " + adder.inner_text("body")[:1000]

    # the viewer's open map gains the marker, at the clicked place
    viewer.wait_for_function("""(name) => window.damInventoryMap.dams.getFeatures()
        .some(f => (f.get('dam') || {}).name === name)""", arg=name, timeout=10_000)
    placed = viewer.evaluate("""(name) => {
        const f = window.damInventoryMap.dams.getFeatures().find(f => (f.get('dam') || {}).name === name);
        return {id: f.getId(), lonLat: window.ol.proj.toLonLat(f.getGeometry().getCoordinates())};
    }""", name)
    assert placed["lonLat"] == pytest.approx([lon, lat], abs=1e-4)
    viewer.click("#dam-notification-show")  # "Show on map" centres on it and opens its popup
    expect(viewer.locator(".ol-overlay-container #dam-details-name")).to_have_text(name, timeout=10_000)
    viewer.wait_for_function("""([lon, lat]) => {
        const view = window.damInventoryMap.map.getView();
        const [x, y] = window.ol.proj.toLonLat(view.getCenter());
        return !view.getAnimating() && view.getZoom() >= 10 && Math.abs(x - lon) < 0.5 && Math.abs(y - lat) < 0.5;
    }""", arg=[lon, lat], timeout=10_000)

    # deleted by the adder: the marker goes from the viewer's map
    adder.goto(f"{BASE_URL}{APP_PATH}dams/{placed['id']}/delete/", wait_until="load")
    with adder.expect_navigation(wait_until="load"):
        adder.click("[name=delete-button]")
    viewer.wait_for_function("(id) => !window.damInventoryMap.dams.getFeatureById(id)", arg=placed["id"],
                             timeout=10_000)
    assert viewer.outside_requests == [] and adder.outside_requests == []


def test_base_map_osm_draws_tiles_over_the_offline_base(new_page, stack, admin_credentials, a_dam):
    stack.set_app_setting_raw("base_map", "osm")
    try:
        page = new_page("admin")
        log_in(page, *admin_credentials)
        # the browser asks OpenStreetMap for tiles (aborted here: no load leaves this machine)...
        with page.expect_request(lambda request: "tile.openstreetmap.org" in request.url, timeout=20_000):
            open_map(page)  # ...and the offline layers load all the same
        layers = page.evaluate("window.damInventoryMap.map.getLayers().getArray().map(l => l.get('name'))")
        assert layers == ["countries", "lakes", "tiles", "dams"], layers
        assert all("tile.openstreetmap.org" in url for url in page.outside_requests), page.outside_requests
    finally:
        stack.set_app_setting_raw("base_map", "offline")
