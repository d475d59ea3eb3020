"""The catch-up endpoint a reconnecting client calls, and Delete Dam (creator or admin only,
notified after commit, recorded for catch-up)."""

import pytest
from sqlalchemy import text

from tests.unit.factories import dam_form, make_user

SINCE = "/apps/dam-inventory/dams/since/"
ADD = "/apps/dam-inventory/dams/add/"


def add(client, store_engine, name):
    assert client.post(ADD, dam_form(name=name)).status_code == 302
    with store_engine.connect() as conn:
        return conn.execute(text("SELECT max(id) FROM dams")).scalar()


def test_since_returns_only_newer_dams_with_the_full_payload(editor_client, store_engine):
    a = add(editor_client, store_engine, "A")
    b = add(editor_client, store_engine, "B")
    data = editor_client.get(SINCE, {"since": a}).json()
    assert [d["id"] for d in data["dams"]] == [b]
    assert set(data["dams"][0]) == {"id", "name", "owner", "river", "date_built", "lon", "lat"}
    assert data["last_id"] == b and data["deleted"] == [] and data["last_deletion"] == 0
    everything = editor_client.get(SINCE).json()
    assert [d["id"] for d in everything["dams"]] == [a, b]
    assert editor_client.get(SINCE, {"since": b}).json()["dams"] == []


def test_since_is_open_to_any_logged_in_user(client, viewer, editor_client, store_engine):
    add(editor_client, store_engine, "A")
    client.force_login(viewer)
    assert len(client.get(SINCE).json()["dams"]) == 1


@pytest.mark.parametrize("params, field", [
    ({"since": "abc"}, "since"),
    ({"since": "-1"}, "since"),
    ({"since": "1e3"}, "since"),
    ({"since": "99999999999999999999"}, "since"),
    ({"deleted_since": "x"}, "deleted_since"),
])
def test_bad_since_is_a_400_naming_the_parameter(editor_client, store_engine, params, field):
    r = editor_client.get(SINCE, params)
    assert r.status_code == 400
    assert field in r.json()["errors"]


def test_creator_deletes_and_everybody_is_told_after_commit(
    editor_client, store_engine, listener, django_capture_on_commit_callbacks
):
    a = add(editor_client, store_engine, "A")
    listener.pending()
    assert editor_client.get(f"/apps/dam-inventory/dams/{a}/delete/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = editor_client.post(f"/apps/dam-inventory/dams/{a}/delete/")
    assert r.status_code == 302 and len(callbacks) == 1
    [message] = listener.pending()
    assert message["event"] == "dam_deleted" and message["id"] == a and message["name"] == "A"
    data = editor_client.get(SINCE, {"since": a}).json()
    assert data["deleted"] == [{"id": a, "seq": message["deletion"]}]
    assert data["last_deletion"] == message["deletion"]
    assert editor_client.get(SINCE, {"deleted_since": message["deletion"]}).json()["deleted"] == []
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dams")).scalar() == 0


def test_delete_takes_the_hydrograph_along(editor_client, store_engine):
    from django.core.files.uploadedfile import SimpleUploadedFile

    a = add(editor_client, store_engine, "A")
    editor_client.post("/apps/dam-inventory/hydrographs/assign/", {
        "dam-select": a, "hydrograph-file": SimpleUploadedFile("h.csv", b"0,1\n", content_type="text/csv")})
    editor_client.post(f"/apps/dam-inventory/dams/{a}/delete/")
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hydrograph_points")).scalar() == 0


def test_other_users_cannot_delete_but_an_admin_can(
    client, editor_client, store_engine, django_user_model, listener, django_capture_on_commit_callbacks
):
    a = add(editor_client, store_engine, "A")
    listener.pending()
    # A logged-in user who neither created it nor has delete_dams.
    other = make_user(django_user_model, "other")
    client.force_login(other)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert client.get(f"/apps/dam-inventory/dams/{a}/delete/").status_code == 403
        assert client.post(f"/apps/dam-inventory/dams/{a}/delete/").status_code == 403
    assert callbacks == [] and listener.pending() == []
    admin = make_user(django_user_model, "root", superuser=True)
    client.force_login(admin)
    assert client.post(f"/apps/dam-inventory/dams/{a}/delete/").status_code == 302
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dams")).scalar() == 0


def test_dam_json_offers_delete_only_to_who_may(client, editor_client, store_engine, viewer):
    a = add(editor_client, store_engine, "A")
    assert editor_client.get(f"/apps/dam-inventory/dams/{a}/json/").json()["delete_url"] == f"/apps/dam-inventory/dams/{a}/delete/"
    client.force_login(viewer)
    assert client.get(f"/apps/dam-inventory/dams/{a}/json/").json()["delete_url"] is None
