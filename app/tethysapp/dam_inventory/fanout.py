"""Per-process fan-out of the `notifications` group to this process's WebSockets.

Why not one group member per socket (the tutorial's way)? With the Redis core layer a group_send
to N members runs a Lua script that pushes N copies of the message, and every copy is then
popped with its own Redis round trip and serialized to JSON once per socket: the cost grows
with the number of sockets, in Redis and in every worker (1,000 sockets: p99 0.4 s, see
docs/benchmarks.md). Here each worker process (each event loop) has ONE member of the group, a
`Fanout`, which serializes a notification once and writes the same text to every local socket.
A group_send then costs a few Redis operations whatever the number of sockets.

Guarantees kept from the per-socket design:
  * membership is re-added every REJOIN_SECONDS, so it never reaches the layer's group_expiry
    and is restored if Redis lost it;
  * a socket is accepted only while the process is a member of the group; a handshake that
    cannot get there within JOIN_TIMEOUT is closed with 4013 (after 1013, "try again later").
    autobahn, daphne's WebSocket layer, lets an application close only with 1000 or 3000-4999
    (it raises on 1012), hence the 4xxx mirror.

What the group alone cannot guarantee, the outbox does (model.DamEvent): as it starts and then
every SYNC_SECONDS, each process reads the last event's seq and, when it is not the one it last
announced (or RESYNC_SECONDS went by), sends it to its sockets in a sync message. Before that
message it replays, from the outbox, the events since the last announcement that this process
did not relay live (a publish that failed, a message Redis lost): up to REPLAY_MAX of them, so
a client normally needs no request to fill the hole. A client still behind the sync message
fetches what it lacks. So a lost notification costs a client at most SYNC_SECONDS, never a
reload.

That is also why a channel layer failure (Redis stopped, killed, restarted) closes no socket:
the sync and the replay read PostgreSQL, not Redis, so the clients keep getting every event,
late by at most SYNC_SECONDS, while the process joins the group again. Closing them instead
would send every client back at once (a reconnect storm: thousands of handshakes and
catch-up requests) at the moment the stack is recovering.

A process leaves the group when its server shuts it down (daphne: a reactor shutdown trigger;
uvicorn: the ASGI lifespan's shutdown, `leave_this_loop`); one that dies without leaving is
dropped by the layer after group_expiry, which every live member renews each REJOIN_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref

from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from . import events

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 4013
JOIN_TIMEOUT = 5.0
REJOIN_SECONDS = 300.0
# While Redis is down each process retries at least this often: a retry is one connection
# attempt, and every second sooner back in the group is a second of live delivery sooner.
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 0.25, 1.0
# A send only queues the frame in Twisted's transport; the event loop writes it out. Yielding
# every YIELD_EVERY sockets lets those writes (and nginx, and the clients) start while the loop
# goes on, instead of after all of it: 5,000 clients, p99 535 ms -> 254 ms (100: 308 ms, 250:
# 494 ms; docs/benchmarks.md).
YIELD_EVERY = 25
SYNC_SECONDS = 5.0
RESYNC_SECONDS = 60.0
# Replaying an event costs about 54 us of CPU per socket under daphne (one frame written); a catch-up
# request costs each client's worker a few milliseconds (a Django view and a query). Past this
# many missed events a client's one request is the cheaper way, and the sync message makes it.
REPLAY_MAX = 20
LEAVE_TIMEOUT = 2.0

# One Fanout per event loop: daphne runs one loop per process; tests may run several in turn.
_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def for_this_loop() -> "Fanout":
    loop = asyncio.get_running_loop()
    fanout = _by_loop.get(loop)
    if fanout is None:
        layer = get_channel_layer()
        if layer is None:
            raise ImproperlyConfigured("no channel layer in CHANNEL_LAYERS: live notifications need one")
        fanout = _by_loop[loop] = Fanout(layer)
    return fanout


async def leave_this_loop() -> None:
    """Leaves the group if this event loop has a Fanout (an ASGI server's shutdown)."""
    fanout = _by_loop.get(asyncio.get_running_loop())
    if fanout is not None:
        await fanout.leave()


def last_event_seq() -> int:
    """The outbox's last seq, from the app's store (blocking: run it in a thread)."""
    from . import model
    from .controllers import store_session

    with store_session() as session:
        return model.last_event_seq(session)


def events_after(seq: int, limit: int) -> list[dict]:
    """The outbox's events after SEQ, at most LIMIT (blocking: run it in a thread)."""
    from . import model
    from .controllers import store_session

    with store_session() as session:
        return model.events_after(session, seq, limit)


def _leave_when_daphne_stops(fanout: "Fanout") -> None:
    """Under daphne (Twisted's asyncio reactor, already imported there), leave the group
    before the process exits. Elsewhere (tests) nothing is imported or installed."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    reactor.addSystemEventTrigger("before", "shutdown",
                                  lambda: Deferred.fromFuture(asyncio.ensure_future(fanout.leave())))


class Fanout:
    def __init__(self, layer, read_last_seq=last_event_seq, read_events_after=events_after):
        self.layer = layer
        self.sockets: set = set()
        self.member = asyncio.Event()
        self.channel: str | None = None
        self.read_last_seq = read_last_seq
        self.read_events_after = read_events_after
        self.announced: int | None = None  # the seq last sent in a sync message
        self.relayed: set[int] = set()  # seqs relayed live since then
        self.replayed: set[int] = set()  # seqs replayed whose live message has not come yet
        self.rejoined = asyncio.Event()  # back in the group after a failure: sync at once
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name="dam-inventory-fanout"),
                       loop.create_task(self._sync(), name="dam-inventory-sync")]
        _leave_when_daphne_stops(self)

    async def ready(self) -> bool:
        """Waits until this process is a member of the group; False after JOIN_TIMEOUT."""
        try:
            await asyncio.wait_for(self.member.wait(), JOIN_TIMEOUT)
        except asyncio.TimeoutError:
            return False
        return True

    def attach(self, socket) -> None:
        """Adds an accepted socket (a consumer with `send` and `close`). Synchronous, so a
        consumer that calls it right after its accept misses no message in between."""
        self.sockets.add(socket)

    def detach(self, socket) -> None:
        self.sockets.discard(socket)

    async def _run(self) -> None:
        retry, failed = RETRY_MIN_SECONDS, False
        while True:
            try:
                # One channel for the process's life: after a Redis outage the same member
                # comes back, instead of a new one beside a dead one.
                channel = self.channel = self.channel or await self.layer.new_channel()
                await self.layer.group_add(events.GROUP, channel)
                if failed:  # what was published while it was out is replayed now
                    self.rejoined.set()
                self.member.set()
                retry, failed = RETRY_MIN_SECONDS, False
                await self._relay(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: the sockets stay, the sync keeps them current
                if self.member.is_set():
                    log.warning("channel layer failed (%s: %s); rejoining, while %d sockets get "
                                "events from the outbox every %.0f s", type(exc).__name__, exc,
                                len(self.sockets), SYNC_SECONDS)
                self.member.clear()
                failed = True
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)

    async def _relay(self, channel: str) -> None:
        """Receives the group's messages until the layer fails; re-adds the membership every
        REJOIN_SECONDS while it waits."""
        loop = asyncio.get_running_loop()
        rejoin_at = loop.time() + REJOIN_SECONDS
        receive = None
        try:
            while True:
                receive = receive or asyncio.ensure_future(self.layer.receive(channel))
                done, _ = await asyncio.wait({receive}, timeout=max(0.0, rejoin_at - loop.time()))
                if not done:
                    await self.layer.group_add(events.GROUP, channel)
                    rejoin_at = loop.time() + REJOIN_SECONDS
                    continue
                message, receive = receive.result(), None
                if message.get("type") == events.EVENT_TYPE and self._first_copy(message.get("seq")):
                    await self.deliver(message)
        finally:
            if receive is not None:
                receive.cancel()

    def _first_copy(self, seq) -> bool:
        """Whether a live message with SEQ is news to the sockets: False when the replay sent
        it already (its live message was still queued for this process, which was behind)."""
        if not isinstance(seq, int):
            return True
        if seq in self.replayed:
            self.replayed.discard(seq)
            return False
        self.relayed.add(seq)
        return True

    async def _sync(self) -> None:
        """At once, then every SYNC_SECONDS: the outbox's last seq to every local socket, when
        it is not the one announced last or RESYNC_SECONDS went by (a client may have missed
        that one too), after the events this process did not relay (`_replay`). The first
        round runs at once: the seq it announces is where the next round replays from, so a
        publish failing in the process's first seconds is replayed like any later one."""
        loop = asyncio.get_running_loop()
        announced_at = loop.time()
        failing = False
        while True:
            self.rejoined.clear()
            try:
                seq = await asyncio.to_thread(self.read_last_seq)
            except Exception as exc:  # the store is down: nothing to announce until it is back
                if not failing:
                    log.warning("sync: cannot read the last event (%s: %s); retrying every %.0f s",
                                type(exc).__name__, exc, SYNC_SECONDS)
                failing = True
            else:
                failing = False
                if seq != self.announced or loop.time() - announced_at >= RESYNC_SECONDS:
                    await self._replay(seq)
                    await self.deliver(events.sync(seq))
                    self.announced, announced_at = seq, loop.time()
            try:
                await asyncio.wait_for(self.rejoined.wait(), SYNC_SECONDS)
            except asyncio.TimeoutError:
                pass

    async def _replay(self, seq: int) -> None:
        """Sends the events after the last announced seq up to SEQ that were not relayed live,
        in order, when there are at most REPLAY_MAX of them. Their live messages, should they
        still come, are then not sent again (`_first_copy`) until the next round: one that is
        later still costs a client one frame it ignores, never a duplicate."""
        since, relayed = self.announced, self.relayed
        self.relayed = {s for s in relayed if s > seq}
        self.replayed = {s for s in self.replayed if since is not None and s > since}
        if since is None or not since < seq <= since + REPLAY_MAX or all(
                s in relayed for s in range(since + 1, seq + 1)):
            return
        try:
            missed = await asyncio.to_thread(self.read_events_after, since, seq - since)
        except Exception as exc:  # the sync message still tells the clients to catch up
            log.warning("replay: cannot read the events after %d (%s: %s)", since, type(exc).__name__, exc)
            return
        for event in missed:
            if event["seq"] not in relayed and event["seq"] not in self.relayed:  # or came during the read
                self.replayed.add(event["seq"])
                await self.deliver(event)

    async def leave(self) -> None:
        """Stops relaying and leaves the group (bounded: a dead Redis must not hold up a stop)."""
        for task in self._tasks:
            task.cancel()
        if self.channel is not None:
            try:
                await asyncio.wait_for(self.layer.group_discard(events.GROUP, self.channel), LEAVE_TIMEOUT)
            except Exception as exc:  # the member then expires after group_expiry
                log.warning("could not leave group %s (%s: %s)", events.GROUP, type(exc).__name__, exc)

    async def deliver(self, message: dict) -> None:
        """Serializes `message` once and writes it to every local socket."""
        text = events.client_text(message)
        for i, socket in enumerate(list(self.sockets)):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            try:
                await socket.send(text_data=text)
            except Exception:  # a socket that is going away; its own disconnect detaches it
                self.detach(socket)
