"""Reconnect storm: Redis restarted under N connected WebSocket clients (`python -m stackctl
bench`, which runs this in the load-generator container as it runs fanout.py).

A Redis restart could send every client back at once (N handshakes, then N catch-up requests)
if the workers closed their sockets when the channel layer fails. They do not (fanout.py): the
sockets stay open and each worker replays, from the outbox, what it could not relay. What has
to hold: every client holds every dam (one added while Redis is down, one after it is back)
within TARGET_SECONDS of Redis being started again, the events endpoint answers no 5xx,
and any client that does drop comes back spread by its backoff with jitter (reconnections,
refused handshakes and the peak catch-up rate per second are reported). The time from the
stop is reported too: how long Redis stays down is the operator's, not the stack's.

The clients here are written for this script, apart from the app's JS client and the tests'
Python client: rawws.py's WebSocket (cheap enough for 5,000 in a few processes) and a plain
HTTP/1.0 GET for the catch-up. They behave as the JS client does: events applied in seq order,
a gap or a sync message ahead makes a catch-up, a drop makes a reconnect after 1 s doubling to
30 s, half of it random.

This container cannot reach Redis (it is on `internal` only), so the host restarts it. The
conversation, a line at a time: this prints "ready" when every client is connected; the host
stops Redis and answers "down"; this adds a dam (saved, but the publish fails) and prints
"added"; the host starts Redis and answers "started" (the clock starts), waits until it is
healthy and answers "back"; this adds another dam and, once every client holds both or the
time is up, prints the results JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import fanout  # beside this file
import rawws

from stackctl.portal import EVENTS_PATH, Portal, admin_credentials, unique_name
from stackctl.settings import Stack

TARGET_SECONDS = 15.0
BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0
# After the target, how much longer the clients are watched (to report how late the late ones were).
WATCH_SECONDS = 60.0
CONNECT_CONCURRENCY = 50


async def http_get(url: str, path: str, cookie: str, ssl_context) -> tuple[int, bytes]:
    """(status, body) of GET PATH at URL, over a connection of its own (HTTP/1.0: no chunking,
    the server closes when done); status 0 when no answer came."""
    parts = urlsplit(url)
    tls = {"ssl": ssl_context, "server_hostname": parts.hostname} if parts.scheme == "https" else {}
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            parts.hostname, parts.port or (443 if tls else 80), **tls), 10)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nCookie: {cookie}\r\n\r\n".encode("latin1"))
        raw = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return 0, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return 0, b""


class Shared:
    """What one process's clients share, and what they record."""

    def __init__(self, url: str, ws_url: str, cookie: str, ssl_context):
        self.url, self.ws_url, self.cookie, self.ssl_context = url, ws_url, cookie, ssl_context
        self.headers = {"Cookie": cookie}
        self.catch_ups: list[tuple[float, int]] = []  # (monotonic time, status) of each request
        self.refused = 0  # handshakes that failed
        self.closes = 0
        self.target_seq: int | None = None
        self.stop = False


class StormClient:
    def __init__(self, shared: Shared, last_seq: int):
        self.shared = shared
        self.last_seq = last_seq
        self.ws = None
        self.connections = 0
        self.attempts = 0
        self.fetching: asyncio.Task | None = None
        self.again = False
        self.reached_at: float | None = None  # when last_seq first reached the target
        self.connected = asyncio.Event()

    def _advance(self, seq: int) -> None:
        self.last_seq = seq
        target = self.shared.target_seq
        if target is not None and seq >= target and self.reached_at is None:
            self.reached_at = time.monotonic()

    def on_text(self, payload: bytes, now: float) -> None:
        try:
            message = json.loads(payload)
            seq = message["seq"]
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(seq, int):
            return
        if message.get("event") == "sync":
            if seq > self.last_seq:
                self.catch_up()
        elif seq == self.last_seq + 1:
            self._advance(seq)
        elif seq > self.last_seq + 1:
            self.catch_up()

    def catch_up(self) -> None:
        if self.fetching is not None and not self.fetching.done():
            self.again = True
            return
        self.fetching = asyncio.create_task(self._fetch(self.ws))

    async def _fetch(self, ws) -> None:
        failures = 0
        shared = self.shared
        while self.ws is ws and ws is not None and not shared.stop:
            status, body = await http_get(shared.url, f"{EVENTS_PATH}?after={self.last_seq}", shared.cookie,
                                          shared.ssl_context)
            shared.catch_ups.append((time.monotonic(), status))
            try:
                page = json.loads(body) if status == 200 else None
            except ValueError:
                page = None
            if page is None:
                await asyncio.sleep(self._pause(failures))
                failures += 1
                continue
            for event in page["events"]:
                if event["seq"] == self.last_seq + 1:
                    self._advance(event["seq"])
            if page["more"] and page["events"]:
                continue
            if not self.again:
                return
            self.again = False

    def _pause(self, attempts: int) -> float:
        base = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempts)
        return base / 2 + random.random() * base / 2

    async def _connect(self):
        shared = self.shared
        return await rawws.connect(shared.ws_url, shared.headers, shared.url, self.on_text,
                                   ssl_context=shared.ssl_context)

    async def run(self, ready: asyncio.Semaphore) -> None:
        """READY paces the first connections (the population coming online); reconnections are
        not paced here: spreading them is the backoff's job, and what is measured."""
        shared = self.shared
        while not shared.stop:
            try:
                if self.connections:
                    ws, _ = await self._connect()
                else:
                    async with ready:
                        ws, _ = await self._connect()
            except Exception:
                shared.refused += 1
                await asyncio.sleep(self._pause(self.attempts))
                self.attempts += 1
                continue
            self.ws, self.attempts = ws, 0
            self.connections += 1
            self.connected.set()
            self.catch_up()  # what happened while it was away
            try:
                await asyncio.shield(ws.closed)
            finally:
                self.ws = None
                ws.close()
            if shared.stop:
                return
            shared.closes += 1
            await asyncio.sleep(self._pause(self.attempts))
            self.attempts += 1


async def storm_process(conn, url: str, ws_url: str, cookie: str, ca_file, n: int, last_seq: int) -> None:
    """N clients in this process; reports to the parent through CONN: connected, then results."""
    shared = Shared(url, ws_url, cookie, fanout.tls_context(ws_url, ca_file))
    clients = [StormClient(shared, last_seq) for _ in range(n)]
    ready = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [asyncio.create_task(c.run(ready)) for c in clients]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 300)
    except asyncio.TimeoutError:
        pass
    loop = asyncio.get_running_loop()
    conn.send({"connected": sum(1 for c in clients if c.connections)})
    shared.target_seq, until = await loop.run_in_executor(None, conn.recv)
    for client in clients:
        if client.last_seq >= shared.target_seq and client.reached_at is None:
            client.reached_at = time.monotonic()
    while time.monotonic() < until and any(c.reached_at is None for c in clients):
        await asyncio.sleep(0.2)
    shared.stop = True
    for task in tasks:
        task.cancel()
    for client in clients:
        if client.ws is not None:
            client.ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send({"reached": [c.reached_at for c in clients], "connections": sum(c.connections for c in clients),
               "catch_ups": shared.catch_ups, "refused": shared.refused, "closes": shared.closes})


def child(conn, *args) -> None:
    asyncio.run(storm_process(conn, *args))


def hear(expect: str) -> None:
    """Waits for the host's next line (stdin), which must be EXPECT."""
    answer = sys.stdin.readline().strip()
    if answer != expect:
        raise RuntimeError(f"the host said {answer!r}, not {expect!r}")


def converse(say: str, expect: str) -> None:
    """Tells the host SAY (stdout) and waits for its answer EXPECT."""
    print(say, flush=True)
    hear(expect)


def peak_per_second(times: list[float]) -> int:
    bins: dict[int, int] = {}
    for t in times:
        bins[int(t)] = bins.get(int(t), 0) + 1
    return max(bins.values(), default=0)


def run(portal: Portal, n: int, procs: int) -> dict:
    last_seq = portal.last_event_seq()
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    ctx = multiprocessing.get_context("fork")
    pipes, children = [], []
    for share in shares:
        mine, theirs = ctx.Pipe()
        process = ctx.Process(target=child, daemon=True, args=(
            theirs, portal.base_url, portal.ws_url, portal.cookie_header, portal.ca_file, share, last_seq))
        process.start()
        pipes.append(mine)
        children.append(process)
    try:
        connected = sum(pipe.recv()["connected"] for pipe in pipes)
        fanout.log(f"storm: {connected}/{n} clients connected; asking the host to restart Redis")
        t_restart = time.monotonic()
        converse("ready", "down")
        during = portal.add_dam(unique_name("storm-during-outage"))  # saved; no publish can work
        converse("added", "started")
        t_started = time.monotonic()
        hear("back")
        t_back = time.monotonic()
        after = portal.add_dam(unique_name("storm-after-outage"))
        target = portal.last_event_seq()
        for pipe in pipes:
            pipe.send((target, t_started + TARGET_SECONDS + WATCH_SECONDS))
        results = [pipe.recv() for pipe in pipes]
    finally:
        for process in children:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    reached = [r for res in results for r in res["reached"]]
    late = [r - t_started for r in reached if r is not None]
    # Each client's first catch-up, when it connected, is not the storm's: counted apart.
    # (CLOCK_MONOTONIC is the host's, the same in every child process.)
    every_catch_up = [c for res in results for c in res["catch_ups"]]
    catch_ups = [c for c in every_catch_up if c[0] >= t_restart]
    statuses: dict[str, int] = {}
    for _, status in every_catch_up:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    within = sum(1 for x in late if x <= TARGET_SECONDS)
    server_errors = sum(k for s, k in statuses.items() if s.startswith("5"))
    return {
        "clients": n, "connected": connected, "receiver_processes": procs,
        "adds": {"during_outage": during.status_code, "after_outage": after.status_code},
        "redis_started_after_s": round(t_started - t_restart, 2),
        "redis_healthy_after_s": round(t_back - t_restart, 2),
        "caught_up_p99_from_stop_s": fanout.percentile([r - t_restart for r in reached if r is not None], 99),
        "target_seconds": TARGET_SECONDS,
        "holding_every_dam_within_target": within,
        "never_caught_up": sum(1 for r in reached if r is None),
        "caught_up_p50_s": fanout.percentile(late, 50), "caught_up_p99_s": fanout.percentile(late, 99),
        "caught_up_max_s": max(late, default=None),
        "reconnections": sum(r["connections"] for r in results) - connected,
        "handshakes_refused": sum(r["refused"] for r in results),
        "catch_up_requests_before_stop": len(every_catch_up) - len(catch_ups),
        "catch_up_requests": len(catch_ups), "catch_up_statuses": statuses,
        "catch_up_peak_per_second": peak_per_second([t for t, _ in catch_ups]),
        "ok": connected == n and within == n and server_errors == 0
              and during.status_code in (301, 302, 303) and after.status_code in (301, 302, 303),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the portal: http://web:8080 or https://edge:8443")
    ap.add_argument("--ca-file", type=Path, help="for an https URL: the CA its certificate is checked against")
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--client-procs", type=int, default=4, help="processes the clients are spread over")
    args = ap.parse_args()
    portal = fanout.portal_client(args.url, args.ca_file, timeout=60).login(*admin_credentials(Stack(project="-")))
    result = run(portal, args.clients, max(1, min(args.client_procs, args.clients)))
    fanout.log(f"storm: {result['holding_every_dam_within_target']}/{args.clients} held every dam within "
               f"{TARGET_SECONDS:.0f} s (p99 {result['caught_up_p99_s']}, max {result['caught_up_max_s']}); "
               f"{result['catch_up_requests']} catch-ups from the stop on, peak {result['catch_up_peak_per_second']}/s; "
               f"every catch-up's status {result['catch_up_statuses']}")
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
