"""Static files through the edge, as a browser fetches them: compressed, with cache lifetimes
(long for the vendored libraries, fonts and base map; an hour for Tethys' and the app's own
files, whose names do not change across releases), and the right content types."""

import pytest

from stackctl.portal import Portal
from stackctl.settings import TEST_STACK

MONTH = 30 * 24 * 3600
HOUR = 3600


@pytest.fixture(scope="module")
def portal(stack):
    return Portal.of(TEST_STACK)


@pytest.mark.parametrize("path, content_type, max_age", [
    ("/static/openlayers-dist/ol.js", "application/javascript", MONTH),
    ("/static/bootstrap/dist/css/bootstrap.min.css", "text/css", MONTH),
    ("/static/dam-inventory-basemap/countries.geojson", "application/geo+json", MONTH),
    ("/static/dam_inventory/js/dam_map.js", "application/javascript", HOUR),
    ("/static/tethys_portal/css/tethys_main.min.css", "text/css", HOUR),
])
def test_text_assets_are_compressed_and_cached(portal, path, content_type, max_age):
    resp = portal.get(path, headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200, f"{path}: HTTP {resp.status_code}"
    assert resp.headers["Content-Type"].startswith(content_type), resp.headers
    assert resp.headers.get("Content-Encoding") == "gzip", resp.headers
    assert f"max-age={max_age}" in resp.headers.get("Cache-Control", ""), resp.headers
    assert len(resp.content) > 1000  # requests decompressed it: the body is whole


def test_fonts_are_served_as_fonts_for_a_month(portal):
    resp = portal.get("/static/open-sans/OpenSans-Regular.woff2")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "font/woff2", resp.headers
    assert f"max-age={MONTH}" in resp.headers["Cache-Control"]


def test_tethys_stylesheet_loads_no_font_from_the_internet(portal):
    css = portal.get("/static/tethys_portal/css/tethys_main.min.css").text
    assert "googleusercontent" not in css and "url(https:" not in css and "url(http:" not in css
    assert "url(../../open-sans/OpenSans-Regular.woff2)" in css
