"""The map's base_map setting: what it accepts, and what the pages hand the map for it."""

import pytest
from django.urls import reverse

from tethysapp.dam_inventory.validation import base_map_tiles

TEMPLATE = "https://tile.example.org/{z}/{x}/{y}.png"


@pytest.mark.parametrize("setting, tiles", [
    ("offline", ""), ("", ""), (None, ""), (" osm ", "osm"), (TEMPLATE, TEMPLATE),
])
def test_accepted_values(setting, tiles):
    assert base_map_tiles(setting or "offline") == tiles


@pytest.mark.parametrize("setting, says", [
    ("ftp://tiles/{z}/{x}/{y}.png", "http(s) tile URL"),
    ("javascript:alert(1)//{z}{x}{y}", "http(s) tile URL"),
    ('https://t/{z}/{x}/{y}.png" onload="x', "http(s) tile URL"),
    ("https://tile.example.org/{z}/{x}.png", "lacks {y}"),
    ("satellite", "http(s) tile URL"),
])
def test_refused_values_say_why(setting, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}")):
        base_map_tiles(setting)


@pytest.fixture
def set_base_map(db):
    from tethysapp.dam_inventory.app import App

    yield lambda value: App.set_custom_setting("base_map", value)
    App.set_custom_setting("base_map", "offline")


@pytest.mark.parametrize("page, mode", [("home", "browse"), ("add_dam", "place")])
def test_pages_give_the_map_its_offline_layers_and_mode(editor_client, page, mode):
    html = editor_client.get(reverse(f"dam_inventory:{page}")).content.decode()
    assert f'data-mode="{mode}"' in html
    assert 'data-countries-url="/static/dam-inventory-basemap/countries.geojson"' in html
    assert 'data-lakes-url="/static/dam-inventory-basemap/lakes.geojson"' in html
    assert 'data-tiles=""' in html
    assert "dam_inventory/js/dam_map.js" in html


def test_tiles_follow_the_setting_and_a_bad_value_falls_back_to_offline(editor_client, set_base_map):
    set_base_map(TEMPLATE)
    assert f'data-tiles="{TEMPLATE}"' in editor_client.get(reverse("dam_inventory:home")).content.decode()
    set_base_map("osm")
    assert 'data-tiles="osm"' in editor_client.get(reverse("dam_inventory:home")).content.decode()
    set_base_map("ftp://nope/{z}/{x}/{y}")
    assert 'data-tiles=""' in editor_client.get(reverse("dam_inventory:home")).content.decode()
