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
  * when the layer fails (Redis stopped, killed, restarted) every local socket is closed with
    4012 (after 1012, "service restart"): its client reconnects and catches up from the last id
    it saw, so nothing published around the outage is lost silently;
  * a socket is accepted only while the process is a member of the group; a handshake that
    cannot get there within JOIN_TIMEOUT is closed with 4013 (after 1013, "try again later").
    autobahn, daphne's WebSocket layer, lets an application close only with 1000 or 3000-4999
    (it raises on 1012), hence the 4xxx mirrors.

What the group alone cannot guarantee, the outbox does (model.DamEvent): every SYNC_SECONDS
each process reads the last event's seq and, when it is not the one it last announced (or
RESYNC_SECONDS went by), sends it to its sockets in a sync message. A client behind it (a
publish that failed, a frame it missed) fetches what it lacks. So a lost notification costs
a client at most SYNC_SECONDS, never a reload.

A process leaves the group when daphne shuts it down; one that dies without leaving is
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

CLOSE_LAYER_LOST = 4012
CLOSE_TRY_AGAIN_LATER = 4013
JOIN_TIMEOUT = 5.0
REJOIN_SECONDS = 300.0
RETRY_MAX_SECONDS = 5.0
# A send only queues the frame in Twisted's transport; the event loop writes it out. Yielding
# every YIELD_EVERY sockets lets those writes (and nginx, and the clients) start while the loop
# goes on, instead of after all of it: 5,000 clients, p99 535 ms -> 254 ms (100: 308 ms, 250:
# 494 ms; docs/benchmarks.md).
YIELD_EVERY = 25
SYNC_SECONDS = 5.0
RESYNC_SECONDS = 60.0
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


def last_event_seq() -> int:
    """The outbox's last seq, from the app's store (blocking: run it in a thread)."""
    from . import model
    from .controllers import store_session

    with store_session() as session:
        return model.last_event_seq(session)


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
    def __init__(self, layer, read_last_seq=last_event_seq):
        self.layer = layer
        self.sockets: set = set()
        self.member = asyncio.Event()
        self.channel: str | None = None
        self.read_last_seq = read_last_seq
        self.announced: int | None = None  # the seq last sent in a sync message
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
        retry = 0.5
        while True:
            try:
                # One channel for the process's life: after a Redis outage the same member
                # comes back, instead of a new one beside a dead one.
                channel = self.channel = self.channel or await self.layer.new_channel()
                await self.layer.group_add(events.GROUP, channel)
                self.member.set()
                retry = 0.5
                await self._relay(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: every local client must reconnect and catch up
                was_member = self.member.is_set()
                self.member.clear()
                if was_member:
                    log.warning("channel layer failed (%s: %s); closing %d sockets so their clients "
                                "reconnect and catch up", type(exc).__name__, exc, len(self.sockets))
                    await self._close_all(CLOSE_LAYER_LOST)
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
                if message.get("type") == events.EVENT_TYPE:
                    await self.deliver(message)
        finally:
            if receive is not None:
                receive.cancel()

    async def _sync(self) -> None:
        """Every SYNC_SECONDS: the outbox's last seq to every local socket, when it is not the
        one announced last or RESYNC_SECONDS went by (a client may have missed that one too)."""
        loop = asyncio.get_running_loop()
        announced_at = loop.time()
        failing = False
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                seq = await asyncio.to_thread(self.read_last_seq)
            except Exception as exc:  # the store is down: its clients will reconnect anyway
                if not failing:
                    log.warning("sync: cannot read the last event (%s: %s); retrying every %.0f s",
                                type(exc).__name__, exc, SYNC_SECONDS)
                failing = True
                continue
            failing = False
            if seq != self.announced or loop.time() - announced_at >= RESYNC_SECONDS:
                await self.deliver(events.sync(seq))
                self.announced, announced_at = seq, loop.time()

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

    async def _close_all(self, code: int) -> None:
        sockets, self.sockets = list(self.sockets), set()
        for socket in sockets:
            try:
                await socket.close(code=code)
            except Exception:  # one socket that cannot be closed must not keep the others open
                log.exception("could not close a socket with code %d", code)
