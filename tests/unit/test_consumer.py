"""The notifications consumer through Channels' WebsocketCommunicator, routed by the portal's
own WebSocket URL list (so the tutorial's URL is what is tested), on the in-memory layer."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from tethysapp.dam_inventory import events
from tethysapp.dam_inventory.consumers import CLOSE_UNAUTHENTICATED, origin_allowed

WS = "/apps/dam-inventory/dams/notifications/ws/"
GOOD_ORIGIN = (b"origin", b"http://testserver")


def router_with_user(user):
    """The portal's app WebSocket routes, with `user` put in the scope where AuthMiddleware
    would (the session lookup itself is Django's, not the app's)."""
    from tethys_apps.urls import app_websocket_urls

    router = URLRouter(app_websocket_urls)

    async def app(scope, receive, send):
        return await router(dict(scope, user=user), receive, send)

    return app


def communicator(user, headers=(GOOD_ORIGIN,), path=WS):
    return WebsocketCommunicator(router_with_user(user), path, headers=list(headers))


async def next_notification(comm) -> dict:
    """The next message that is not a sync message: a process's fan-out announces the outbox's
    seq as it starts, and a client not behind it has nothing to do with it."""
    while (message := json.loads(await comm.receive_from()))["event"] == "sync":
        pass
    return message


@pytest.mark.asyncio
async def test_logged_in_user_connects_on_the_tutorial_url():
    comm = communicator(User(username="alice"))
    connected, _ = await comm.connect()
    assert connected
    await comm.send_to(text_data="ping")
    assert await comm.receive_from() == "pong"
    await comm.disconnect()


@pytest.mark.asyncio
async def test_anonymous_is_closed_with_4401():
    comm = communicator(AnonymousUser())
    connected, _ = await comm.connect()
    assert connected  # accepted only so that the close code reaches the browser
    assert await comm.receive_output() == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


@pytest.mark.asyncio
@pytest.mark.parametrize("headers", [
    [(b"origin", b"http://evil.example.com")],
    [(b"origin", b"https://testserver.evil.example.com")],
    [(b"origin", b"null")],
    [(b"origin", b"ftp://testserver")],
    [(b"origin", b"http://testserver:notaport")],
    [],  # no Origin at all
])
async def test_foreign_or_missing_origin_is_refused_at_handshake(headers):
    comm = communicator(User(username="alice"), headers=headers)
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.parametrize("origin, ok", [
    ("http://testserver", True),
    ("https://localhost:8443", True),
    ("http://127.0.0.1:18080", True),
    ("https://portal.example.org", True),
    ("https://PORTAL.example.org", True),
    ("https://other.example.org", False),
])
def test_origin_is_checked_against_allowed_hosts(origin, ok):
    assert origin_allowed({"headers": [(b"origin", origin.encode())]}) is ok


def test_empty_allowed_hosts_in_debug_accepts_only_local(settings):
    settings.ALLOWED_HOSTS = []
    settings.DEBUG = True
    assert origin_allowed({"headers": [(b"origin", b"http://localhost:8000")]})
    assert not origin_allowed({"headers": [(b"origin", b"http://example.com")]})
    settings.DEBUG = False
    assert not origin_allowed({"headers": [(b"origin", b"http://localhost:8000")]})


@pytest.mark.asyncio
async def test_group_fan_out_reaches_every_connected_user_with_the_payload():
    alice, bob = communicator(User(username="alice")), communicator(User(username="bob"))
    anon = communicator(AnonymousUser())
    assert (await alice.connect())[0] and (await bob.connect())[0]
    await anon.connect()
    assert (await anon.receive_output())["code"] == CLOSE_UNAUTHENTICATED

    dam = {"id": 7, "name": "Hoover", "owner": "Reclamation", "river": "Colorado",
           "date_built": "1936-03-01", "lon": -114.737, "lat": 36.016}
    # From sync code, as a controller's on_commit callback does.
    await sync_to_async(events.publish)(events.dam_added(dam))
    for comm in (alice, bob):
        assert await next_notification(comm) == {"event": "dam_added", "message": "New Dam", "dam": dam}

    await sync_to_async(events.publish)(events.dam_deleted(7, "Hoover", 3))
    for comm in (alice, bob):
        assert await next_notification(comm) == {
            "event": "dam_deleted", "message": "Dam Deleted", "id": 7, "name": "Hoover", "deletion": 3}
    await alice.disconnect()
    await bob.disconnect()


@pytest.mark.asyncio
async def test_one_group_member_per_process_whatever_the_number_of_sockets():
    from channels.layers import get_channel_layer

    from tethysapp.dam_inventory import fanout

    layer = get_channel_layer()
    members_before = set(layer.groups.get(events.GROUP, {}))  # other tests' (other loops')
    comms = [communicator(User(username=f"user{i}")) for i in range(5)]
    for comm in comms:
        assert (await comm.connect())[0]
    assert len(set(layer.groups.get(events.GROUP, {})) - members_before) == 1
    local = fanout.for_this_loop()
    assert len(local.sockets) == 5

    await comms[0].disconnect()
    assert len(local.sockets) == 4, "a disconnected socket must leave the process's fan-out"
    for comm in comms[1:]:
        await comm.disconnect()
    assert not local.sockets


@pytest.mark.asyncio
async def test_per_socket_mode_is_the_tutorials_one_group_member_per_socket(monkeypatch):
    from channels.layers import get_channel_layer

    monkeypatch.setenv("DAM_INVENTORY_FANOUT", "per-socket")
    layer = get_channel_layer()
    members_before = set(layer.groups.get(events.GROUP, {}))
    comms = [communicator(User(username=f"user{i}")) for i in range(3)]
    for comm in comms:
        assert (await comm.connect())[0]
    assert len(set(layer.groups.get(events.GROUP, {})) - members_before) == 3

    dam = {"id": 9, "name": "Glen Canyon"}
    await sync_to_async(events.publish)(events.dam_added(dam))
    for comm in comms:
        assert json.loads(await comm.receive_from())["dam"] == dam
    for comm in comms:
        await comm.disconnect()
    assert not set(layer.groups.get(events.GROUP, {})) - members_before


def test_an_unknown_fanout_mode_is_a_clear_configuration_error(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from tethysapp.dam_inventory.consumers import fanout_mode

    monkeypatch.setenv("DAM_INVENTORY_FANOUT", "broadcast")
    with pytest.raises(ImproperlyConfigured, match="per-process, per-socket"):
        fanout_mode()
