"""The database goes away: an add gets a clear refusal and saves nothing; when the database
comes back, web recovers by itself (no restart of web)."""
from __future__ import annotations

import asyncio
import re
import time

from stackctl import docker
from stackctl.portal import CATCHUP_PATH, WORKER_HEADER, Portal, add_succeeded, unique_name, visible_text
from tests.notifications import wait_until, ws_headers, ws_origin

CLEAR_OUTAGE_MESSAGE = re.compile(r"database|unavailable|try again|temporar", re.I)


def test_db_outage_refuses_add_cleanly_and_web_recovers(stack, target, credentials, portal, containers, asgi_processes):
    db, web = containers["db"], containers["web"]
    web_started = docker.inspect(web)[0]["State"]["StartedAt"]
    name = unique_name("during-db-outage")

    docker.docker("stop", "-t", "30", db)
    try:
        resp = portal.add_dam(name)
        text = visible_text(resp.text)
    finally:
        docker.docker("start", db)
        stack.wait_healthy("db", timeout=120)

    assert not add_succeeded(resp), f"add during a db outage claimed success (HTTP {resp.status_code})"
    assert "Traceback" not in resp.text, f"a traceback reached the user: {text[:400]}"
    assert resp.status_code == 503, (
        f"an add during a db outage should answer 503 Service Unavailable with a clear message; "
        f"got HTTP {resp.status_code}: {text[:300]}"
    )
    assert CLEAR_OUTAGE_MESSAGE.search(text), f"the refusal does not say what happened: {text[:300]}"

    # Recovery without touching web: a fresh login and the app's JSON work again...
    def recovered() -> bool:
        fresh = Portal.of(target).login(*credentials)
        return fresh.get(CATCHUP_PATH, params={"since": 0}).status_code == 200

    wait_until(recovered, 90, 1.0, "web answering again after the db came back")
    assert docker.inspect(web)[0]["State"]["StartedAt"] == web_started, "web had to be restarted to recover"

    # ...on every worker, for more than one request: no stale pooled connection is left to fail.
    after = Portal.of(target).login(*credentials)
    statuses = []
    for _ in range(6 * asgi_processes):
        r = after.get(CATCHUP_PATH, params={"since": 0})
        statuses.append((r.headers.get(WORKER_HEADER), r.status_code))
        time.sleep(0.05)
    failed = [s for s in statuses if s[1] != 200]
    assert not failed, f"requests still failing after recovery (worker, status): {failed}"

    assert name not in after.dam_names(), f"the add refused during the outage was half-saved: {name!r}"
    after.add_dam_checked(unique_name("after-db-outage"))


# The app's "try again later" close code (fanout.py, the image's portal_asgi.py): the client
# reconnects with its backoff.
CLOSE_TRY_AGAIN_LATER = 4013


async def _handshake_outcome(portal: Portal) -> str:
    """What a WebSocket handshake gets: "closed <code>" after an accept, or "HTTP <status>"."""
    import websockets
    from websockets.asyncio.client import connect

    try:
        async with connect(portal.ws_url, additional_headers=ws_headers(portal), origin=ws_origin(portal),
                           proxy=None, open_timeout=30, **portal.ws_options()) as ws:
            await asyncio.wait_for(ws.recv(), 30)
            return "a message, the socket stayed open"
    except websockets.InvalidStatus as exc:
        return f"HTTP {exc.response.status_code}"
    except websockets.ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else 1006}"


def test_websocket_handshake_during_db_outage_is_refused_cleanly(stack, portal, containers):
    """The session user is loaded from the database before the consumer runs: with the database
    down that raised out of the application and daphne answered the handshake with a bare 500
    (found by the soak campaign). It must be a clean "try again later" instead."""
    db = containers["db"]
    docker.docker("stop", "-t", "30", db)
    try:
        outcome = asyncio.run(_handshake_outcome(portal))
    finally:
        docker.docker("start", db)
        stack.wait_healthy("db", timeout=120)
    assert outcome == f"closed {CLOSE_TRY_AGAIN_LATER}", (
        f"a WebSocket handshake during a db outage got {outcome}, not a close with {CLOSE_TRY_AGAIN_LATER}")
