"""The per-process fan-out (fanout.py) against a scripted channel layer: pure logic, so a fake
layer stands in for Redis and its failures. The real layer is covered by the consumer tests
(in-memory layer) and by tests/e2e and tests/faults (Redis 5 in the stack)."""

import asyncio
import json

import pytest
import pytest_asyncio

from tethysapp.dam_inventory import events, fanout


class ScriptedLayer:
    """A channel layer whose receive() returns queued messages, or raises when `down`."""

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.down = False
        self.adds = 0
        self.discarded: list = []

    async def new_channel(self):
        return "specific.test!1"

    async def group_add(self, group, channel):
        if self.down:
            raise ConnectionError("Redis is down")
        assert group == events.GROUP
        self.adds += 1

    async def group_discard(self, group, channel):
        if self.down:
            raise ConnectionError("Redis is down")
        self.discarded.append((group, channel))

    async def receive(self, channel):
        item = await self.queue.get()
        if isinstance(item, Exception):
            raise item
        return item


class FakeSocket:
    def __init__(self, fail=False):
        self.sent: list[str] = []
        self.closed_with = None
        self.fail = fail

    async def send(self, text_data):
        if self.fail:
            raise RuntimeError("socket already gone")
        self.sent.append(text_data)

    async def close(self, code):
        self.closed_with = code


async def wait_for(predicate, timeout=3.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
def layer():
    return ScriptedLayer()


@pytest_asyncio.fixture
async def new_fan(layer):
    """Makes Fanouts on `layer`; their tasks are stopped after the test, pass or fail."""
    made = []

    def make(read_last_seq=lambda: 0):
        made.append(fanout.Fanout(layer, read_last_seq=read_last_seq))
        return made[-1]

    yield make
    for fan in made:
        for task in fan._tasks:
            task.cancel()


@pytest_asyncio.fixture
async def fan(new_fan):
    """A Fanout that has joined the group."""
    fan = new_fan()
    assert await fan.ready()
    return fan


def attached(fan, n, **kw):
    sockets = [FakeSocket(**kw) for _ in range(n)]
    for s in sockets:
        fan.attach(s)
    return sockets


@pytest.mark.asyncio
async def test_one_message_reaches_every_socket_serialized_once(fan, layer):
    sockets = attached(fan, 50)
    await layer.queue.put({"type": events.EVENT_TYPE, **events.dam_added({"id": 1, "name": "A"})})
    await wait_for(lambda: all(s.sent for s in sockets))
    texts = {s.sent[0] for s in sockets}
    assert len(texts) == 1
    assert json.loads(texts.pop()) == {"event": "dam_added", "message": "New Dam", "dam": {"id": 1, "name": "A"}}


@pytest.mark.asyncio
async def test_a_failing_socket_is_dropped_and_the_others_still_receive(fan, layer):
    [bad] = attached(fan, 1, fail=True)
    [good] = attached(fan, 1)
    await layer.queue.put({"type": events.EVENT_TYPE, "event": "dam_added"})
    await wait_for(lambda: good.sent)
    assert bad not in fan.sockets and good in fan.sockets


@pytest.mark.asyncio
async def test_other_message_types_are_not_relayed(fan, layer):
    [s] = attached(fan, 1)
    await layer.queue.put({"type": "something.else", "x": 1})
    await layer.queue.put({"type": events.EVENT_TYPE, "event": "dam_deleted"})
    await wait_for(lambda: s.sent)
    assert [json.loads(t)["event"] for t in s.sent] == ["dam_deleted"]


@pytest.mark.asyncio
async def test_layer_failure_closes_sockets_with_4012_then_rejoins(fan, layer):
    sockets = attached(fan, 3)
    layer.down = True
    await layer.queue.put(ConnectionError("connection reset by peer"))
    await wait_for(lambda: all(s.closed_with for s in sockets))
    assert {s.closed_with for s in sockets} == {fanout.CLOSE_LAYER_LOST}
    assert not fan.sockets and not fan.member.is_set()

    layer.down = False  # Redis is back: the process joins the group again by itself
    await wait_for(fan.member.is_set)
    assert layer.adds == 2


@pytest.mark.asyncio
async def test_not_ready_while_the_layer_is_down(new_fan, layer, monkeypatch):
    monkeypatch.setattr(fanout, "JOIN_TIMEOUT", 0.2)
    layer.down = True
    fan = new_fan()
    assert not await fan.ready()
    layer.down = False
    await wait_for(fan.member.is_set)
    assert await fan.ready()


@pytest.mark.asyncio
async def test_membership_is_refreshed_while_idle(new_fan, layer, monkeypatch):
    monkeypatch.setattr(fanout, "REJOIN_SECONDS", 0.05)
    fan = new_fan()
    assert await fan.ready()
    await wait_for(lambda: layer.adds >= 3)
    [s] = attached(fan, 1)
    await layer.queue.put({"type": events.EVENT_TYPE, "event": "dam_added"})
    await wait_for(lambda: s.sent)  # the pending receive survived the refreshes


@pytest.mark.asyncio
async def test_a_large_fan_out_yields_to_the_event_loop_and_misses_no_socket(fan):
    sockets = attached(fan, fanout.YIELD_EVERY * 4 + 3)
    ticks = 0

    async def ticker():  # runs only when deliver() gives the loop back
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    tick_task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await fan.deliver({"type": events.EVENT_TYPE, "event": "dam_added"})
    tick_task.cancel()
    assert all(len(s.sent) == 1 for s in sockets)
    assert ticks - before >= 4, "deliver() kept the event loop for the whole fan-out"


def test_close_codes_are_ones_an_application_may_send():
    """autobahn (daphne) lets an application close only with 1000 or 3000-4999 and raises on any
    other code: a 1012 from the app never reached the clients (found by tests/faults)."""
    from tethysapp.dam_inventory.consumers import CLOSE_UNAUTHENTICATED

    for code in (fanout.CLOSE_LAYER_LOST, fanout.CLOSE_TRY_AGAIN_LATER, CLOSE_UNAUTHENTICATED):
        assert code == 1000 or 3000 <= code <= 4999, code


@pytest.mark.asyncio
async def test_sync_announces_the_outbox_seq_when_it_moves_and_again_after_a_while(new_fan, monkeypatch):
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    monkeypatch.setattr(fanout, "RESYNC_SECONDS", 0.5)
    last = {"seq": 7}
    fan = new_fan(read_last_seq=lambda: last["seq"])
    sock = FakeSocket()
    fan.attach(sock)
    await wait_for(lambda: sock.sent)
    assert [json.loads(t) for t in sock.sent] == [{"event": "sync", "seq": 7}]
    await asyncio.sleep(0.2)  # unchanged: not repeated before RESYNC_SECONDS
    assert len(sock.sent) == 1
    last["seq"] = 9
    await wait_for(lambda: len(sock.sent) == 2)
    assert json.loads(sock.sent[1]) == {"event": "sync", "seq": 9}
    await wait_for(lambda: len(sock.sent) == 3, timeout=2)  # RESYNC_SECONDS later, the same again
    assert json.loads(sock.sent[2]) == {"event": "sync", "seq": 9}


@pytest.mark.asyncio
async def test_sync_survives_a_store_outage(new_fan, monkeypatch):
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    state = {"down": True}

    def read():
        if state["down"]:
            raise ConnectionError("database is down")
        return 3

    fan = new_fan(read_last_seq=read)
    sock = FakeSocket()
    fan.attach(sock)
    await asyncio.sleep(0.1)
    assert sock.sent == []
    state["down"] = False
    await wait_for(lambda: sock.sent)
    assert json.loads(sock.sent[0]) == {"event": "sync", "seq": 3}


@pytest.mark.asyncio
async def test_leave_discards_the_member_and_does_not_hang_on_a_dead_layer(fan, layer):
    await fan.leave()
    assert layer.discarded == [(events.GROUP, "specific.test!1")]
    layer.down = True
    await fan.leave()  # logged, not raised
