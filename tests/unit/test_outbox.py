"""The outbox: every add and delete is an event with a seq, written in the change's own
transaction; the live message carries that seq; the events endpoint returns what came after
a seq, in order. A publish that fails loses nothing: the event is there to fetch."""

import pytest
from sqlalchemy import text

from tests.unit.factories import dam_form

ADD = "/apps/dam-inventory/dams/add/"
EVENTS = "/apps/dam-inventory/dams/events/"


def add(client, name, **fields):
    return client.post(ADD, dam_form(name=name, **fields))


def outbox(store_engine):
    with store_engine.connect() as conn:
        return conn.execute(text("SELECT seq, kind, dam_id FROM dam_events ORDER BY seq")).all()


def test_adds_and_deletes_are_events_in_order_and_live_messages_carry_their_seq(
        editor_client, store_engine, listener, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert add(editor_client, "A").status_code == 302
        assert add(editor_client, "B").status_code == 302
    a, b = (m["dam"]["id"] for m in listener.pending())
    with django_capture_on_commit_callbacks(execute=True):
        assert editor_client.post(f"/apps/dam-inventory/dams/{a}/delete/").status_code == 302
    [deletion] = listener.pending()
    assert outbox(store_engine) == [(1, "dam_added", a), (2, "dam_added", b), (3, "dam_deleted", a)]
    assert deletion["seq"] == 3 and deletion["id"] == a

    events = editor_client.get(EVENTS, {"after": 0}).json()
    assert [e["seq"] for e in events["events"]] == [1, 2, 3] and events["last_seq"] == 3
    assert events["events"][1]["dam"]["name"] == "B" and events["events"][2]["event"] == "dam_deleted"
    assert editor_client.get(EVENTS, {"after": 2}).json()["events"] == [
        {k: v for k, v in deletion.items() if k != "type"}]
    assert editor_client.get(EVENTS, {"after": 3}).json() == {"events": [], "last_seq": 3, "more": False}


def test_a_refused_add_writes_no_event(editor_client, store_engine, set_max_dams):
    set_max_dams(0)
    assert add(editor_client, "Full").status_code == 409
    assert add(editor_client, "", river="").status_code == 400
    assert outbox(store_engine) == []


def test_a_failed_publish_leaves_the_event_to_fetch(editor_client, store_engine, monkeypatch,
                                                    django_capture_on_commit_callbacks):
    from tethysapp.dam_inventory import events

    def layer_down():
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(events, "get_channel_layer", layer_down)
    with django_capture_on_commit_callbacks(execute=True):
        assert add(editor_client, "Unannounced").status_code == 302  # the add itself succeeds
    [event] = editor_client.get(EVENTS, {"after": 0}).json()["events"]
    assert event["dam"]["name"] == "Unannounced" and event["seq"] == 1


def test_events_come_in_pages(editor_client, store_engine, monkeypatch):
    from tethysapp.dam_inventory import controllers

    monkeypatch.setattr(controllers, "EVENTS_PAGE", 2)
    for name in "ABC":
        add(editor_client, name)
    first = editor_client.get(EVENTS, {"after": 0}).json()
    assert [e["seq"] for e in first["events"]] == [1, 2] and first["more"] is True
    second = editor_client.get(EVENTS, {"after": first["last_seq"]}).json()
    assert [e["seq"] for e in second["events"]] == [3] and second["more"] is False


def test_events_need_a_login_and_a_valid_seq(editor_client, store_engine):
    from django.test import Client

    assert Client().get(EVENTS).status_code == 401
    r = editor_client.get(EVENTS, {"after": "-1"})
    assert r.status_code == 400 and "after" in r.json()["errors"]


def test_a_store_from_before_the_outbox_gets_an_event_per_dam_once(editor_client, store_engine):
    from tethysapp.dam_inventory import model

    for name in "AB":
        add(editor_client, name)
    with store_engine.begin() as conn:  # as a store made before the outbox existed
        conn.execute(text("TRUNCATE dam_events RESTART IDENTITY"))
    model.init_primary_db(store_engine, first_time=False)
    ids = [d for (_, _, d) in outbox(store_engine)]
    with store_engine.connect() as conn:
        assert ids == [r[0] for r in conn.execute(text("SELECT id FROM dams ORDER BY id"))]
    model.init_primary_db(store_engine, first_time=False)  # again: nothing added
    assert [d for (_, _, d) in outbox(store_engine)] == ids


@pytest.mark.parametrize("page", ["home", "list_dams"])
def test_pages_give_the_client_the_last_seq(editor_client, store_engine, page):
    from django.urls import reverse

    add(editor_client, "A")
    html = editor_client.get(reverse(f"dam_inventory:{page}")).content.decode()
    assert 'data-last-seq="1"' in html and 'data-events-url="/apps/dam-inventory/dams/events/"' in html
