"""Every page renders for a logged-in user; anonymous users are sent to log in; the client's
data- attributes carry server-made URLs."""

import re

import pytest
from django.urls import reverse

PAGES = ["home", "list_dams", "add_dam", "assign_hydrograph"]


@pytest.mark.parametrize("name", PAGES)
def test_pages_render_for_an_editor(editor_client, name):
    response = editor_client.get(reverse(f"dam_inventory:{name}"))
    assert response.status_code == 200
    assert b"dam_inventory/js/dam_inventory.js" in response.content


@pytest.mark.parametrize("name", PAGES + ["dams_since"])
def test_anonymous_is_refused(client, db, name):
    response = client.get(reverse(f"dam_inventory:{name}"))
    if name == "dams_since":
        assert response.status_code == 401
        assert response.json() == {"error": "Log in to see dams."}
    else:
        assert response.status_code == 302
        assert "login" in response["Location"]


def test_home_exposes_the_socket_path_from_the_server(editor_client):
    html = editor_client.get(reverse("dam_inventory:home")).content.decode()
    assert 'data-ws-path="/apps/dam-inventory/dams/notifications/ws/"' in html
    assert 'data-since-url="/apps/dam-inventory/dams/since/"' in html
    assert 'data-close-unauthenticated="4401"' in html
    assert 'data-hydrograph-url="/apps/dam-inventory/dams/0/hydrograph/"' in html
    assert 'data-dam-json-url="/apps/dam-inventory/dams/0/json/"' in html
    assert "dam_inventory/js/dam_inventory.js" in html


def test_app_templates_have_no_inline_script(editor_client):
    from pathlib import Path

    import tethysapp.dam_inventory as pkg

    for tpl in (Path(pkg.__file__).parent / "templates").rglob("*.html"):
        text = tpl.read_text()
        # only <script src=...> tags, and no on*= handler attributes
        for tag in re.findall(r"<script[^>]*>", text):
            assert "src=" in tag, (tpl.name, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), tpl.name


def test_js_client_has_no_hard_coded_app_prefix_and_picks_wss_on_https():
    from pathlib import Path

    import tethysapp.dam_inventory as pkg

    js = (Path(pkg.__file__).parent / "public" / "js" / "dam_inventory.js").read_text()
    assert "/apps/" not in js
    assert '"https:" ? "wss:" : "ws:"' in js
    # plain DOM: no jQuery, no Bootstrap JS, no OpenLayers needed for the notifications
    assert not re.search(r"\bjQuery\s*[(.]|\$\.|\bbootstrap\.", js)
