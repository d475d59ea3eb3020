"""Add Dam: every validation message, the permission (403), max_dams, one transaction, and the
notification sent only after commit (against the real PostGIS store)."""

import datetime as dt
import json

import pytest
from django.urls import reverse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.unit.factories import dam_form

ADD = "/apps/dam-inventory/dams/add/"
TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()


def count(store_engine):
    with store_engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM dams")).scalar()


def test_add_url_is_the_tutorials(db):
    assert reverse("dam_inventory:add_dam") == ADD


def test_viewer_without_add_dams_gets_403(client, viewer, store_engine):
    client.force_login(viewer)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, dam_form()).status_code == 403
    assert count(store_engine) == 0


def test_add_saves_a_srid_4326_point_and_notifies_after_commit(
    editor_client, store_engine, listener, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = editor_client.post(ADD, dam_form())
        # Committed in the store, but the event waits for the surrounding Django transaction.
        assert listener.pending() == []
    assert response.status_code == 302
    assert response["Location"] == "/apps/dam-inventory/"
    assert len(callbacks) == 1
    callbacks[0]()
    [message] = listener.pending()
    with store_engine.connect() as conn:
        row = conn.execute(text(
            "SELECT id, name, owner, river, date_built, created_by, ST_SRID(geom), "
            "GeometryType(geom), ST_X(geom), ST_Y(geom) FROM dams"
        )).one()
    assert row[1:6] == ("Hoover", "Reclamation", "Colorado", dt.date(1936, 3, 1), "editor")
    assert row[6:8] == (4326, "POINT")
    assert (row[8], row[9]) == pytest.approx((-114.737, 36.016))
    assert message["type"] == "dam_notifications"
    assert message["event"] == "dam_added"
    assert message["message"] == "New Dam"
    assert message["dam"] == {
        "id": row[0], "name": "Hoover", "owner": "Reclamation", "river": "Colorado",
        "date_built": "1936-03-01", "lon": pytest.approx(-114.737), "lat": pytest.approx(36.016),
    }


REFUSALS = [
    (dict(name=""), "name", "Name is required."),
    (dict(name="   "), "name", "Name is required."),
    (dict(name="x" * 201), "name", "Name must be at most 200 characters."),
    (dict(name="bad\x01name"), "name", "Name must not contain control characters."),
    (dict(owner=None), "owner", "Owner is required."),
    (dict(owner="Somebody"), "owner", "Owner must be one of: Reclamation, Army Corp, Other."),
    (dict(river=""), "river", "River is required."),
    (dict(**{"date-built": ""}), "date-built", "Date Built is required."),
    (dict(**{"date-built": "2021-02-30"}), "date-built", "Date Built must be a real date (YYYY-MM-DD)."),
    (dict(**{"date-built": "yesterday"}), "date-built", "Date Built must be a real date (YYYY-MM-DD)."),
    (dict(**{"date-built": TOMORROW}), "date-built", "Date Built must not be in the future."),
    (dict(**{"date-built": "0999-01-01"}), "date-built", "Date Built must be after the year 1000."),
    (dict(geometry=""), "geometry", "Location is required."),
    (dict(geometry="{not json"), "geometry", "Location must be valid GeoJSON."),
    (dict(geometry="[1, 2]"), "geometry", "Location must be a GeoJSON object."),
    (dict(geometry='{"type":"LineString","coordinates":[[0,0],[1,1]]}'), "geometry", "Location must be a single point."),
    (dict(geometry='{"type":"GeometryCollection","geometries":[]}'), "geometry",
     "Location must be exactly one point (draw one point on the map)."),
    (dict(geometry='{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,1]},'
                   '{"type":"Point","coordinates":[2,2]}]}'), "geometry",
     "Location must be exactly one point (draw one point on the map)."),
    (dict(geometry='{"type":"Point","coordinates":[181,10]}'), "geometry", "Longitude must be between -180 and 180."),
    (dict(geometry='{"type":"Point","coordinates":[10,-91]}'), "geometry", "Latitude must be between -90 and 90."),
    (dict(geometry='{"type":"Point","coordinates":["a",1]}'), "geometry", "Location coordinates must be numbers."),
    (dict(geometry='{"type":"Point","coordinates":[1]}'), "geometry", "Location must be a point with [longitude, latitude]."),
    (dict(geometry='{"type":"Point","coordinates":[NaN,1]}'), "geometry", "Location coordinates must be finite numbers."),
    (dict(geometry="", longitude="abc", latitude="1"), "geometry", "Longitude and latitude must both be numbers."),
    (dict(geometry="", longitude="10", latitude="95"), "geometry", "Latitude must be between -90 and 90."),
    (dict(geometry="", longitude="inf", latitude="1"), "geometry", "Longitude and latitude must be finite numbers."),
]


@pytest.mark.parametrize("overrides, field, message", REFUSALS)
def test_each_refusal_is_per_field_and_saves_nothing(
    editor_client, store_engine, listener, django_capture_on_commit_callbacks, overrides, field, message
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = editor_client.post(ADD, dam_form(**overrides))
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="error-{field}">' in html
    from django.utils.html import escape

    assert escape(message) in html
    assert "Please fix errors." in html
    assert count(store_engine) == 0
    assert callbacks == [] and listener.pending() == []


def test_all_missing_fields_are_reported_at_once(editor_client, store_engine):
    response = editor_client.post(ADD, {"add-button": "add"})
    assert response.status_code == 400
    html = response.content.decode()
    for field in ("name", "owner", "river", "date-built", "geometry"):
        assert f'id="error-{field}"' in html
    assert count(store_engine) == 0


def test_typed_coordinates_work_without_the_map(editor_client, store_engine):
    response = editor_client.post(ADD, dam_form(geometry="", longitude="-111.5", latitude="40.25"))
    assert response.status_code == 302
    with store_engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM dams")).one()) == (-111.5, 40.25)


@pytest.mark.parametrize("geometry", [
    '{"type":"Point","coordinates":[-100,40]}',
    '{"type":"Feature","geometry":{"type":"Point","coordinates":[-100,40]},"properties":{}}',
    '{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[-100,40]}}]}',
])
def test_geojson_forms_of_one_point_are_accepted(editor_client, store_engine, geometry):
    assert editor_client.post(ADD, dam_form(geometry=geometry)).status_code == 302
    assert count(store_engine) == 1


def test_upstream_date_format_still_accepted(editor_client, store_engine):
    assert editor_client.post(ADD, dam_form(**{"date-built": "March 1, 1936"})).status_code == 302


def test_max_dams_refuses_with_a_clear_message_and_no_event(
    editor_client, store_engine, set_max_dams, listener, django_capture_on_commit_callbacks
):
    set_max_dams(1)
    assert editor_client.post(ADD, dam_form(name="First")).status_code == 302
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = editor_client.post(ADD, dam_form(name="Second"))
    assert response.status_code == 409
    assert "Unable to add dam &quot;Second&quot;, because the inventory is full (at most 1 dams)." in response.content.decode()
    assert count(store_engine) == 1
    assert callbacks == []


def test_max_dams_zero_means_full_and_unset_means_unlimited(editor_client, store_engine, set_max_dams):
    set_max_dams(0)
    assert editor_client.post(ADD, dam_form()).status_code == 409
    set_max_dams("")
    for i in range(3):
        assert editor_client.post(ADD, dam_form(name=f"D{i}")).status_code == 302
    assert count(store_engine) == 3


def test_an_admin_change_of_max_dams_applies_to_the_very_next_add(editor_client, store_engine, set_max_dams):
    from tethysapp.dam_inventory.app import App

    set_max_dams(1)
    assert editor_client.post(ADD, dam_form(name="First")).status_code == 302
    assert editor_client.post(ADD, dam_form(name="Refused")).status_code == 409
    App.set_custom_setting("max_dams", 2)  # as the admin pages do: the app is not told
    assert editor_client.post(ADD, dam_form(name="Second")).status_code == 302
    assert count(store_engine) == 2


def test_the_store_url_is_read_at_most_once_per_ttl(monkeypatch):
    from tethysapp.dam_inventory import controllers

    reads = []
    monkeypatch.setattr(controllers.App, "get_persistent_store_database",
                        lambda name, as_url: reads.append(name) or "postgresql://u@h/db")
    controllers.forget_store_url()
    try:
        assert controllers._primary_db_url() == controllers._primary_db_url() == "postgresql://u@h/db"
        assert reads == ["primary_db"]
        monkeypatch.setattr(controllers, "STORE_URL_TTL_SECONDS", 0.0)
        controllers._primary_db_url()
        assert reads == ["primary_db", "primary_db"]
    finally:
        controllers.forget_store_url()


def test_a_failure_inside_the_transaction_saves_nothing_and_sends_nothing(
    editor_client, store_engine, listener, monkeypatch, django_capture_on_commit_callbacks
):
    """The dam row is already flushed when the failure hits: the rollback must remove it."""
    from tethysapp.dam_inventory import events

    def failing_queue(session, message):
        raise OperationalError("SELECT 1", {}, Exception("connection lost"))

    monkeypatch.setattr(events, "queue", failing_queue)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = editor_client.post(ADD, dam_form())
    assert response.status_code == 503
    assert "nothing was changed" in response.content.decode()
    assert count(store_engine) == 0
    assert callbacks == [] and listener.pending() == []


def test_rollback_of_a_queued_event_drops_it(store_engine, listener, django_capture_on_commit_callbacks):
    """Model level: an event queued on a session that rolls back is never handed to on_commit."""
    from sqlalchemy.orm import Session

    from tethysapp.dam_inventory import events

    session = Session(bind=store_engine)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        events.queue(session, events.dam_added({"id": 1}))
        session.rollback()
        session.commit()  # an empty commit afterwards must not resurrect it
    session.close()
    assert callbacks == [] and listener.pending() == []


def test_channel_layer_outage_does_not_fail_a_committed_add(
    editor_client, store_engine, monkeypatch, django_capture_on_commit_callbacks
):
    import channels.layers

    class Broken:
        async def group_send(self, group, message):
            raise ConnectionError("redis down")

    monkeypatch.setattr("tethysapp.dam_inventory.events.get_channel_layer", lambda: Broken())
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(ADD, dam_form())
    assert response.status_code == 302
    assert count(store_engine) == 1
    assert channels.layers  # the real module is untouched


def test_store_not_linked_gives_503_not_500(editor_client, monkeypatch):
    from tethysapp.dam_inventory import controllers

    def unlinked():
        raise controllers.StoreUnavailable("not linked")

    monkeypatch.setattr(controllers, "_sessionmaker", unlinked)
    assert editor_client.get("/apps/dam-inventory/").status_code == 503
    response = editor_client.post(ADD, dam_form())
    assert response.status_code == 503
    assert json.dumps("nothing was changed")[1:-1] in response.content.decode()
