"""The tests' WebSocket notification client: it connects with a logged-in session's cookie,
applies events in the order of their seq, catches up from the events endpoint on every open,
on a gap and on a sync message ahead of it, and reconnects with exponential backoff after a
drop. Written apart from the app's JS client (the same protocol, not the same code). HTTP
goes through stackctl.portal (the one portal client)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from stackctl.portal import REPLICA_HEADER, WORKER_HEADER, Portal


def dam_from_event(event: Any) -> dict | None:
    """The dam carried by a new-dam WebSocket event, or None for any other event.

    Tolerant of the envelope ({"type": "dam_added", "dam": {...}}, {"message": ..., "dam": ...}
    or the dam's fields at top level); delete events are not adds.
    """
    if not isinstance(event, dict):
        return None
    kind = str(event.get("type") or event.get("event") or event.get("action") or "").lower()
    if "delet" in kind or "remov" in kind:
        return None
    dam = event.get("dam")
    if isinstance(dam, dict) and "id" in dam:
        return dam
    if "id" in event and "name" in event:
        return event
    return None


# --------------------------------------------------------------------------- WebSocket


def ws_headers(portal: Portal) -> dict[str, str]:
    return {"Cookie": portal.cookie_header}


def ws_origin(portal: Portal) -> str:
    return portal.base_url


@dataclass
class Seen:
    at: float  # time.monotonic() of arrival
    how: str  # "live" or "catch-up"


@dataclass
class NotificationClient:
    """Behaves like the app's JS client (public/js/dam_inventory.js): events are applied one
    seq after the other; a live event that is not the next one, or a sync message ahead of
    the client, makes it fetch the events after its own seq; every open does too. After a
    drop it reconnects with exponential backoff (1 s doubling to 30 s, half of it jitter).

    `seen` maps every dam id it learnt of to when and how (live or catch-up); `deleted` the
    ids it saw deleted. `skip_live` drops that many live events on arrival, as a network that
    loses frames would (a test of the recovery). `connections` counts successful handshakes
    (1 = never dropped); `workers` and `replicas` list the X-Asgi-Worker and X-Web-Replica of
    each of them; `closes` the close codes the server sent.
    """

    portal: Portal
    label: str = "client"
    last_seq: int = 0  # like the page: the last event known when the client starts
    backoff_min: float = 1.0
    backoff_max: float = 30.0
    skip_live: int = 0
    seen: dict[int, Seen] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    catch_ups: int = 0
    connections: int = 0
    workers: list[str] = field(default_factory=list)
    replicas: list[str] = field(default_factory=list)
    # seconds from each drop to the next open: how long the client was without live updates
    offline: list[float] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Optional observers (the soak campaign's journal): each event applied, and the HTTP
    # status of each refused handshake.
    on_event: Callable[[dict], None] | None = None
    on_refused: Callable[[int], None] | None = None

    def __post_init__(self):
        self._changed = asyncio.Event()
        # Set once a connection is open and the catch-up of that open has finished.
        self._in_sync = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._ws = None
        self._stop = False
        self._attempts = 0
        self._dropped_at: float | None = None
        self._catching_up: asyncio.Task | None = None
        self._again = False

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def worker(self) -> str | None:
        return self.workers[-1] if self.workers else None

    @property
    def holding(self) -> set[int]:
        """The dams this client shows now."""
        return set(self.seen) - self.deleted

    def launch(self) -> "NotificationClient":
        """Starts connecting (and retrying, like the JS client) without waiting for it."""
        self._task = asyncio.create_task(self._run(), name=self.label)
        return self

    async def start(self, timeout: float = 15) -> "NotificationClient":
        """Connects and returns once the catch-up of the open is done, as a loaded page is:
        from then on, a new event can only reach this client live."""
        self.launch()
        await asyncio.wait_for(self._in_sync.wait(), timeout)
        return self

    async def stop(self):
        self._stop = True
        if self._ws is not None:
            await self._ws.close()
        for task in (self._task, self._catching_up):
            if task:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass

    def _apply(self, event: dict, how: str) -> None:
        """EVENT, which must be the one after last_seq."""
        self.last_seq = int(event["seq"])
        dam = dam_from_event(event)
        if dam is not None:
            dam_id = int(dam["id"])
            self.seen.setdefault(dam_id, Seen(time.monotonic(), how))
        elif str(event.get("event")) == "dam_deleted":
            self.deleted.add(int(event["id"]))
        if self.on_event is not None:
            self.on_event(event)
        self._changed.set()

    def _on_message(self, event: Any) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
            return
        if event.get("event") == "sync":
            if event["seq"] > self.last_seq:
                self._catch_up_soon()
        elif event["seq"] == self.last_seq + 1:
            if self.skip_live > 0:
                self.skip_live -= 1  # lost on the way
                return
            self._apply(event, "live")
        elif event["seq"] > self.last_seq + 1:
            self._catch_up_soon()

    def _catch_up_soon(self) -> None:
        """A catch-up now; if one is running, another right after it (what it fetched may
        predate what prompted this one)."""
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.create_task(self._catch_up(self._ws))
        else:
            self._again = True

    async def _catch_up(self, ws):
        """Every event after last_seq, in order; a failure is retried with backoff while this
        socket stays open."""
        failures = 0
        while self._ws is ws and not self._stop:
            try:
                page = await asyncio.to_thread(self.portal.events_after, self.last_seq)
            except Exception as exc:
                self.errors.append(f"catch-up: {type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(min(self.backoff_max, self.backoff_min * 2 ** failures))
                failures += 1
                continue
            for event in page["events"]:
                if event["seq"] == self.last_seq + 1:  # else applied meanwhile, live
                    self._apply(event, "catch-up")
            if page["more"] and page["events"]:
                continue
            self.catch_ups += 1
            if not self._again:
                self._in_sync.set()
                return
            self._again = False

    def _backoff(self) -> float:
        base = min(self.backoff_max, self.backoff_min * 2 ** self._attempts)
        self._attempts += 1
        return base / 2 + random.random() * base / 2

    async def _run(self):
        import websockets
        from websockets.asyncio.client import connect

        while not self._stop:
            try:
                async with connect(
                    self.portal.ws_url,
                    additional_headers=ws_headers(self.portal),
                    origin=ws_origin(self.portal),
                    proxy=None,
                    compression=None,
                    **self.portal.ws_options(),
                    open_timeout=10,
                    # Like a browser: no client pings; a dead peer shows up as a close.
                    ping_interval=None,
                ) as ws:
                    self._ws = ws
                    self._attempts = 0
                    self.connections += 1
                    self.workers.append(ws.response.headers.get(WORKER_HEADER, "?"))
                    self.replicas.append(ws.response.headers.get(REPLICA_HEADER, "?"))
                    if self._dropped_at is not None:
                        self.offline.append(time.monotonic() - self._dropped_at)
                        self._dropped_at = None
                    self._catching_up = None
                    self._catch_up_soon()
                    try:
                        async for raw in ws:
                            try:
                                self._on_message(json.loads(raw))
                            except ValueError:
                                continue
                    finally:
                        self._ws = None
                        if self._catching_up:
                            self._catching_up.cancel()
                    self.closes.append(ws.close_code)
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed as exc:
                # No close frame from the server = 1006 (abnormal closure), as a browser reports it.
                self.closes.append(exc.rcvd.code if exc.rcvd else 1006)
            except Exception as exc:  # refused, reset, 502 during a restart: retry like the JS
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status is not None and self.on_refused is not None:
                    self.on_refused(int(status))
            finally:
                self._ws = None
                if self._dropped_at is None and self.connections:
                    self._dropped_at = time.monotonic()
            if self._stop:
                return
            if self.closes and self.closes[-1] == 4401:  # logged out: the JS client stops too
                self.errors.append("closed 4401 (not logged in): stopped")
                return
            await asyncio.sleep(self._backoff())

    async def wait_for(self, dam_ids: Iterable[int], timeout: float) -> bool:
        """True once every id in dam_ids was seen (live or by catch-up) within timeout."""
        want = set(dam_ids)
        deadline = time.monotonic() + timeout
        while not want <= self.seen.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass  # a missed event shows as a gap or in the next sync message
        return True


async def open_clients_on_every_worker(
    portal: Portal, workers: int, per_worker: int = 1, max_attempts: int = 60
) -> list[NotificationClient]:
    """Open clients until each of `workers` workers holds at least `per_worker` of them.

    nginx balances round-robin, so this normally takes workers*per_worker connections; extra
    clients that land on an already-full worker are kept too (they are clients like any other).
    """
    clients: list[NotificationClient] = []
    counts: dict[str, int] = {}
    last_seq = await asyncio.to_thread(portal.last_event_seq)
    for attempt in range(max_attempts):
        client = await NotificationClient(portal, label=f"c{attempt}", last_seq=last_seq).start()
        clients.append(client)
        counts[client.worker] = counts.get(client.worker, 0) + 1
        if len(counts) >= workers and all(v >= per_worker for v in counts.values()):
            return clients
    for c in clients:
        await c.stop()
    raise RuntimeError(f"after {max_attempts} connections the clients landed only on workers {counts}")


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.5, what: str = "condition") -> float:
    """Seconds until predicate() holds; an exception from it counts as "not yet", and the last
    one is named if the time runs out."""
    start = time.monotonic()
    last_error = ""
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception as exc:  # a service coming back raises until it is back
            last_error = f" (last error: {type(exc).__name__}: {exc})"
        time.sleep(poll)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s{last_error}")
