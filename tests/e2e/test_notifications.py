"""End to end through nginx: login, WebSocket clients on every ASGI worker, form POSTs.

Receive waits are timeouts (the 1 s budget of the contract), not speed measurements: a client
either has the dam by then or the test fails. Silence after a refused add is checked the same
bounded way, then confirmed meaningful by a valid add that must be the next message."""

import asyncio
import contextlib
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stackctl.portal import ADD_PATH, APP_PATH, WORKER_HEADER, Portal, add_succeeded, dam_form, unique_name
from stackctl.settings import TEST_STACK

BASE_URL = TEST_STACK.base_url

DELIVERY_TIMEOUT = 1.0  # every client must hold the new dam within this (docs/architecture.md)
SILENCE_WINDOW = 1.5  # how long a refused add is watched for a stray message
MAX_CONNECT_ATTEMPTS = 30  # bound on connections opened while looking for every worker


async def open_ws(cookie=None, origin=BASE_URL):
    headers = {"Cookie": cookie} if cookie else {}
    portal = Portal.of(TEST_STACK)
    return await connect(
        portal.ws_url,
        **portal.ws_options(),
        origin=origin,
        additional_headers=headers,
        open_timeout=10,
        proxy=None,  # straight to 127.0.0.1, whatever the environment says
        max_queue=None,
    )


def add_dam(portal: Portal, name: str, **fields) -> dict[str, str]:
    form = dam_form(name, **fields)
    resp = portal.post(ADD_PATH, form)
    assert add_succeeded(resp), f"adding dam {name!r} was not accepted: HTTP {resp.status_code}\n{resp.text[:1500]}"
    return form


def json_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


def message_mentions(raw: str | bytes, name: str) -> bool:
    """True when a notification carries the dam `name` as a value (any payload shape)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return name in json_strings(json.loads(raw))
    except ValueError:
        return name in raw


@contextlib.asynccontextmanager
async def clients_on_every_worker(portal, workers):
    """Opens clients until each of the workers 1..N holds one (bounded), yields {worker: ws}."""
    cookie = portal.cookie_header
    by_worker, extra = {}, []
    try:
        for _ in range(MAX_CONNECT_ATTEMPTS):
            if len(by_worker) == workers:
                break
            ws = await open_ws(cookie)
            worker = ws.response.headers.get(WORKER_HEADER)
            assert worker, "the handshake response has no X-Asgi-Worker header"
            if worker in by_worker:
                extra.append(ws)
            else:
                by_worker[worker] = ws
        assert sorted(by_worker) == [str(n) for n in range(1, workers + 1)], (
            f"after {MAX_CONNECT_ATTEMPTS} connections only workers {sorted(by_worker)} were reached"
        )
        for ws in extra:  # only one client per worker is needed
            await ws.close()
        extra.clear()
        yield by_worker
    finally:
        for ws in list(by_worker.values()) + extra:
            await ws.close()


def is_sync(raw) -> bool:
    """The server's periodic {"event": "sync", "seq": N}: not a notification."""
    try:
        return json.loads(raw).get("event") == "sync"
    except (ValueError, AttributeError):
        return False


async def recv_notification(ws, timeout):
    """The next frame that is not a sync message; TimeoutError when none comes in time."""
    async with asyncio.timeout(timeout):
        while is_sync(raw := await ws.recv()):
            pass
        return raw


async def next_message_for(ws, name, timeout):
    """The first message, which must be about `name`; fails if none arrives in `timeout`."""
    try:
        raw = await recv_notification(ws, timeout)
    except TimeoutError:
        raise AssertionError(f"no message within {timeout} s") from None
    assert message_mentions(raw, name), f"expected dam {name!r} first, got {raw!r}"
    return json.loads(raw)


async def assert_silent(clients, window):
    async def one(worker, ws):
        try:
            raw = await recv_notification(ws, window)
        except TimeoutError:
            return None
        return f"worker {worker}: {raw!r}"

    stray = [m for m in await asyncio.gather(*(one(w, ws) for w, ws in clients.items())) if m]
    assert not stray, f"a refused add sent messages: {stray}"


async def assert_all_receive(clients, name):
    payloads = await asyncio.gather(
        *(next_message_for(ws, name, DELIVERY_TIMEOUT) for ws in clients.values()),
        return_exceptions=True,
    )
    failed = {w: repr(p) for w, p in zip(clients, payloads) if isinstance(p, BaseException)}
    assert not failed, f"clients that did not get dam {name!r}: {failed}"
    return payloads


@pytest.fixture
def workers(stack):
    return int(stack.env("web")["ASGI_PROCESSES"])


def test_login_through_nginx(admin_portal):
    r = admin_portal.get(APP_PATH, allow_redirects=True)
    assert r.status_code == 200, f"app home after login: HTTP {r.status_code}"
    assert "nginx" in r.headers.get("Server", ""), "the response did not come through nginx"
    assert "/accounts/login" not in r.url


def test_anonymous_http_is_sent_to_login():
    r = Portal.of(TEST_STACK).get(APP_PATH)
    assert r.status_code in (302, 303) and "/accounts/login" in r.headers["Location"]


async def test_a_new_dam_reaches_clients_on_every_worker(admin_portal, workers):
    assert workers == 3, "the test stack runs ASGI_PROCESSES=3"
    async with clients_on_every_worker(admin_portal, workers) as clients:
        name = unique_name("E2E fan-out dam")
        form = await asyncio.to_thread(add_dam, admin_portal, name, owner="Army Corp", river="Provo")
        payloads = await assert_all_receive(clients, name)
        for payload in payloads:
            values = json_values(payload)
            assert form["owner"] in values and form["river"] in values, f"payload lacks the dam: {payload}"


def json_values(obj):
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in json_values(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in json_values(x)]
    return [obj]


BAD_FORMS = {
    "missing name": dict(name=""),
    "unknown owner": dict(owner="Somebody"),
    "future date": dict(date_built="2999-01-01"),
    "not a date": dict(date_built="someday"),
    "latitude out of range": dict(lat=123.0),
    "not GeoJSON": dict(geometry="{not json"),
    "two points": dict(geometry=json.dumps({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]})),
}


@pytest.mark.parametrize("case", sorted(BAD_FORMS))
async def test_a_refused_bad_input_sends_nothing(admin_portal, workers, case):
    async with clients_on_every_worker(admin_portal, workers) as clients:
        bad = dict(BAD_FORMS[case])
        name = bad.pop("name", None)
        name = unique_name("E2E bad dam") if name is None else name
        resp = await asyncio.to_thread(admin_portal.post, ADD_PATH, dam_form(name, **bad))
        assert resp.status_code not in (302, 303), f"{case}: the add was accepted"
        assert resp.status_code < 500, f"{case}: HTTP {resp.status_code}"
        await assert_silent(clients, SILENCE_WINDOW)
        # the clients were listening all along: the next valid dam is their very next message
        good = unique_name("E2E control dam")
        await asyncio.to_thread(add_dam, admin_portal, good)
        await assert_all_receive(clients, good)


async def test_a_user_without_permission_cannot_add_and_nothing_is_sent(admin_portal, viewer_portal, workers):
    async with clients_on_every_worker(admin_portal, workers) as clients:
        name = unique_name("E2E forbidden dam")
        resp = await asyncio.to_thread(viewer_portal.post, ADD_PATH, dam_form(name))
        assert resp.status_code == 403, f"a user without add_dams got HTTP {resp.status_code}"
        await assert_silent(clients, SILENCE_WINDOW)
        good = unique_name("E2E control dam")
        await asyncio.to_thread(add_dam, admin_portal, good)
        await assert_all_receive(clients, good)


async def test_a_full_inventory_refuses_and_sends_nothing(stack, admin_portal, workers):
    original = stack.get_max_dams_raw()
    async with clients_on_every_worker(admin_portal, workers) as clients:
        first = unique_name("E2E before-full dam")
        await asyncio.to_thread(add_dam, admin_portal, first)
        await assert_all_receive(clients, first)
        try:
            stack.set_max_dams_raw("1")  # at least one dam exists now: the inventory is full
            name = unique_name("E2E overflow dam")
            resp = await asyncio.to_thread(admin_portal.post, ADD_PATH, dam_form(name))
            assert resp.status_code not in (302, 303), "an add was accepted with the inventory full"
            assert resp.status_code < 500, f"HTTP {resp.status_code}"
            assert "full" in resp.text.lower(), "no 'inventory full' message on the refused add"
            await assert_silent(clients, SILENCE_WINDOW)
        finally:
            stack.set_max_dams_raw(original)
        good = unique_name("E2E control dam")
        await asyncio.to_thread(add_dam, admin_portal, good)
        await assert_all_receive(clients, good)


CLOSE_UNAUTHENTICATED = 4401  # documented in app/README.md ("log in again", no reconnect)


async def test_anonymous_websocket_is_closed_with_4401():
    ws = await open_ws(cookie=None, origin=BASE_URL)
    try:
        with pytest.raises(ConnectionClosed) as closed:
            raw = await asyncio.wait_for(ws.recv(), 5)
            pytest.fail(f"an anonymous socket received {raw!r}")
    finally:
        await ws.close()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_UNAUTHENTICATED, closed.value


@pytest.mark.parametrize("origin", ["http://evil.example.com", "https://127.0.0.1.evil.example.com:18443", None])
async def test_foreign_or_missing_origin_websocket_is_refused(admin_portal, origin):
    # a logged-in user's cookie, sent from another site (cross-site WebSocket hijacking)
    with pytest.raises(InvalidStatus) as refused:
        ws = await open_ws(admin_portal.cookie_header, origin=origin)
        await ws.close()
    assert refused.value.response.status_code == 403


async def test_websocket_with_session_and_right_origin_is_accepted(admin_portal):
    # the control for the two refusals above: same client, only cookie/origin differ
    ws = await open_ws(admin_portal.cookie_header, BASE_URL)
    try:
        with pytest.raises(TimeoutError):
            await recv_notification(ws, 0.5)  # open and quiet: not closed on us
    finally:
        await ws.close()
