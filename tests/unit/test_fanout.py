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

    def make(read_last_seq=lambda: 0, read_events_after=lambda seq, limit: []):
        made.append(fanout.Fanout(layer, read_last_seq=read_last_seq, read_events_after=read_events_after))
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
async def test_layer_failure_keeps_the_sockets_and_rejoins(fan, layer):
    sockets = attached(fan, 3)
    layer.down = True
    await layer.queue.put(ConnectionError("connection reset by peer"))
    await wait_for(lambda: not fan.member.is_set())
    await asyncio.sleep(0.1)
    assert [s.closed_with for s in sockets] == [None] * 3, "a Redis outage closed sockets"
    assert fan.sockets == set(sockets)

    layer.down = False  # Redis is back: the process joins the group again by itself
    await wait_for(fan.member.is_set)
    assert layer.adds == 2
    await layer.queue.put({"type": events.EVENT_TYPE, "event": "dam_added", "seq": 1})
    await wait_for(lambda: all(s.sent for s in sockets))


def outbox(*seqs, last=None):
    """A stand-in for the outbox: events with these seqs, the last one announced as `last`
    (default: the highest); records each read of events."""
    store = {"events": [{"event": "dam_added", "dam": {"id": s}, "seq": s} for s in seqs],
             "last": max(seqs) if last is None else last, "reads": []}

    def read_events_after(seq, limit):
        store["reads"].append((seq, limit))
        return [e for e in store["events"] if e["seq"] > seq][:limit]

    return store, {"read_last_seq": lambda: store["last"], "read_events_after": read_events_after}


def sent_seqs(socket):
    return [(json.loads(t)["event"], json.loads(t)["seq"]) for t in socket.sent]


async def relay(layer, sock, *seqs):
    """Publishes these events through the layer and waits until SOCK got them live."""
    for seq in seqs:
        await layer.queue.put({"type": events.EVENT_TYPE, "event": "dam_added", "dam": {"id": seq}, "seq": seq})
    await wait_for(lambda: all(("dam_added", seq) in sent_seqs(sock) for seq in seqs))


async def after_first_sync(new_fan, *seqs, last):
    """A Fanout over an outbox of SEQS whose last event is LAST, with one socket that has got
    the first sync message -> (the outbox, the socket, the Fanout)."""
    store, reads = outbox(*seqs, last=last)
    sock, fan = FakeSocket(), new_fan(**reads)
    fan.attach(sock)
    await wait_for(lambda: sock.sent)
    return store, sock, fan


@pytest.mark.asyncio
async def test_sync_replays_the_events_not_relayed_live_in_order(new_fan, layer, monkeypatch):
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    store, sock, _ = await after_first_sync(new_fan, 1, 2, 3, 4, 5, last=1)
    await relay(layer, sock, 2, 4)  # 3 and 5 were never published (Redis was down)
    store["last"] = 5
    await wait_for(lambda: ("sync", 5) in sent_seqs(sock))
    assert sent_seqs(sock) == [("sync", 1), ("dam_added", 2), ("dam_added", 4),
                               ("dam_added", 3), ("dam_added", 5), ("sync", 5)]
    assert store["reads"] == [(1, 4)]


@pytest.mark.asyncio
async def test_a_publish_failing_before_the_second_round_is_replayed(new_fan, layer, monkeypatch):
    # The first round runs at once: it sets the seq to replay from, so an event whose publish
    # fails in a new process's first SYNC_SECONDS is replayed by the next round.
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 30.0)  # only a first round at once can send
    store, sock, fan = await after_first_sync(new_fan, 1, 2, last=1)
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    store["last"] = 2  # committed, its publish failed
    fan.rejoined.set()  # wakes the sleeping round now instead of in 30 s
    await wait_for(lambda: ("sync", 2) in sent_seqs(sock))
    assert sent_seqs(sock) == [("sync", 1), ("dam_added", 2), ("sync", 2)]


@pytest.mark.asyncio
async def test_back_in_the_group_it_replays_at_once(new_fan, layer, monkeypatch):
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.2)
    store, sock, fan = await after_first_sync(new_fan, 1, 2, last=1)
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 30.0)  # from now on only a rejoin can wake it
    await asyncio.sleep(0.3)
    layer.down = True
    await layer.queue.put(ConnectionError("Redis is gone"))
    await wait_for(lambda: not fan.member.is_set())
    store["last"] = 2  # published while the process was out of the group: lost
    layer.down = False
    await wait_for(lambda: ("sync", 2) in sent_seqs(sock), timeout=5)
    assert sent_seqs(sock) == [("sync", 1), ("dam_added", 2), ("sync", 2)]


@pytest.mark.asyncio
async def test_sync_replays_nothing_when_every_event_was_relayed(new_fan, layer, monkeypatch):
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    store, sock, _ = await after_first_sync(new_fan, 1, 2, last=1)
    await relay(layer, sock, 2)
    store["last"] = 2
    await wait_for(lambda: ("sync", 2) in sent_seqs(sock))
    assert sent_seqs(sock) == [("sync", 1), ("dam_added", 2), ("sync", 2)]
    assert store["reads"] == []


@pytest.mark.asyncio
async def test_past_replay_max_the_sync_alone_sends_clients_to_catch_up(new_fan, monkeypatch):
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    store, sock, _ = await after_first_sync(new_fan, *range(1, fanout.REPLAY_MAX + 3), last=1)
    store["last"] = fanout.REPLAY_MAX + 2
    await wait_for(lambda: len(sock.sent) == 2)
    await asyncio.sleep(0.1)
    assert sent_seqs(sock) == [("sync", 1), ("sync", fanout.REPLAY_MAX + 2)]
    assert store["reads"] == []


@pytest.mark.asyncio
async def test_a_failed_replay_read_still_sends_the_sync(new_fan, monkeypatch):
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    store = {"last": 1}

    def read_events_after(seq, limit):
        raise ConnectionError("database is down")

    fan = new_fan(read_last_seq=lambda: store["last"], read_events_after=read_events_after)
    sock = FakeSocket()
    fan.attach(sock)
    await wait_for(lambda: sock.sent)
    store["last"] = 3
    await wait_for(lambda: len(sock.sent) == 2)
    assert sent_seqs(sock) == [("sync", 1), ("sync", 3)]


def test_close_codes_are_ones_an_application_may_send():
    """autobahn (daphne) lets an application close only with 1000 or 3000-4999 and raises on any
    other code: a 1012 from the app never reached the clients (found by tests/faults)."""
    from tethysapp.dam_inventory.consumers import CLOSE_UNAUTHENTICATED

    for code in (fanout.CLOSE_TRY_AGAIN_LATER, CLOSE_UNAUTHENTICATED):
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


@pytest.mark.asyncio
async def test_leave_this_loop_leaves_with_the_loops_fanout_only(layer, monkeypatch):
    # what an ASGI server's lifespan shutdown calls (uvicorn; daphne leaves through its reactor)
    await fanout.leave_this_loop()  # this loop has no Fanout yet: nothing to leave
    assert layer.discarded == []
    monkeypatch.setattr(fanout, "get_channel_layer", lambda: layer)
    fan = fanout.for_this_loop()
    assert await fan.ready()
    await fanout.leave_this_loop()
    assert layer.discarded == [(events.GROUP, "specific.test!1")]
    await asyncio.sleep(0)  # a cancelled task is done once it has run its cancellation
    assert all(task.done() for task in fan._tasks), fan._tasks


@pytest.mark.asyncio
async def test_a_live_message_behind_its_replay_is_not_sent_again(new_fan, layer, monkeypatch):
    # A process that is behind: the sync replays 2 from the outbox before 2's live message,
    # still queued for it, is received; the sockets get 2 once.
    monkeypatch.setattr(fanout, "SYNC_SECONDS", 0.02)
    store, sock, _ = await after_first_sync(new_fan, 1, 2, 3, last=1)
    store["last"] = 2
    await wait_for(lambda: ("sync", 2) in sent_seqs(sock))
    # the live messages, in order: 2 (late), then 3
    await layer.queue.put({"type": events.EVENT_TYPE, "event": "dam_added", "dam": {"id": 2}, "seq": 2})
    await relay(layer, sock, 3)
    assert sent_seqs(sock)[:4] == [("sync", 1), ("dam_added", 2), ("sync", 2), ("dam_added", 3)]
    assert sent_seqs(sock).count(("dam_added", 2)) == 1, sent_seqs(sock)
