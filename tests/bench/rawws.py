"""A minimal RFC 6455 WebSocket client for the fan-out benchmark's load generator.

Why not a library client: the load generator shares the machine's two cores with the stack it
measures, and every microsecond it spends on a frame is added to the latency it reports. Parsing
5,000 frames per dam took ~0.25 s of CPU with aiohttp and ~0.4 s with websockets; here a frame
is a few slices in `data_received`. It only needs what the portal's consumer sends: unfragmented,
unmasked text frames, pings (answered) and a close. The functional suites (e2e, faults) keep
using the `websockets` library.

ws:// goes straight to a server (web); wss:// through TLS (the stack's edge), by the stdlib's
ssl with the context the caller gives: the caller decides what the certificate is checked
against (the stack's local CA), the name checked is the URL's host.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import time
from typing import Callable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFAULT_PORTS = {"ws": 80, "wss": 443}


class HandshakeRefused(ConnectionError):
    pass


class Client(asyncio.Protocol):
    """One connection. `on_text(payload_bytes, arrival_monotonic)` is called for every text
    message; `opened` resolves to the response headers (lower-case names), `closed` when the
    connection ends (its result: True if it ended before `close()` was called)."""

    def __init__(self, request: bytes, accept: str, on_text: Callable[[bytes, float], None]):
        loop = asyncio.get_running_loop()
        self.request, self.accept, self.on_text = request, accept, on_text
        self.opened: asyncio.Future = loop.create_future()
        self.closed: asyncio.Future = loop.create_future()
        self.buf = bytearray()
        self.partial: tuple[int, list[bytes]] | None = None  # a fragmented message so far
        self.transport = None
        self.closing = False

    # --------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes):
        now = time.monotonic()
        self.buf += data
        if not self.opened.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin1")
            del self.buf[: end + 4]
            status, *lines = head.split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if status.split(" ")[1:2] != ["101"] or headers.get("sec-websocket-accept") != self.accept:
                self.opened.set_exception(HandshakeRefused(status))
                self.transport.close()
                return
            self.opened.set_result(headers)
        self._parse(now)

    def connection_lost(self, exc):
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(not self.closing)

    # --------------------------------------------------------------- frames
    def _parse(self, now: float):
        buf, pos, size = self.buf, 0, len(self.buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if b1 & 0x80:  # a server must not mask (RFC 6455 5.1)
                self._fail(1002)
                return
            if size - pos < head + n:
                break
            payload = bytes(buf[pos + head:pos + head + n])
            pos += head + n
            self._frame(b0 & 0x80, b0 & 0x0F, payload, now)
        del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes, now: float):
        if opcode == OP_PING:
            self._send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if not self.closing:
                self._send(OP_CLOSE, payload[:2])
            self.transport.close()
        elif opcode in (OP_TEXT, OP_BINARY):
            if not fin:
                self.partial = (opcode, [payload])
            elif opcode == OP_TEXT:
                self.on_text(payload, now)
        elif opcode == OP_CONT and self.partial is not None:
            self.partial[1].append(payload)
            if fin:
                first, parts = self.partial
                self.partial = None
                if first == OP_TEXT:
                    self.on_text(b"".join(parts), now)

    def _send(self, opcode: int, payload: bytes = b""):
        # Client frames are masked (RFC 6455 5.3); control payloads are < 126 bytes.
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _fail(self, code: int):
        self._send(OP_CLOSE, code.to_bytes(2, "big"))
        self.transport.close()

    def close(self):
        """Ends the connection from this side (a close frame, then the TCP connection)."""
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._send(OP_CLOSE, (1000).to_bytes(2, "big"))
            self.transport.close()


def tls_options(parts, ssl_context: ssl.SSLContext | None) -> dict:
    """create_connection()'s TLS arguments for a split URL: none for ws:, the caller's context
    and the URL's host as the name to verify for wss:."""
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"not a WebSocket URL (ws: or wss:): {parts.geturl()}")
    if parts.scheme == "ws":
        return {}
    if ssl_context is None:
        raise ValueError(f"{parts.geturl()}: a wss: URL needs an ssl_context (what its certificate is checked against)")
    return {"ssl": ssl_context, "server_hostname": parts.hostname}


async def connect(url: str, headers: dict[str, str], origin: str,
                  on_text: Callable[[bytes, float], None], timeout: float = 60,
                  host: str | None = None, port: int | None = None,
                  ssl_context: ssl.SSLContext | None = None) -> tuple[Client, dict]:
    """Opens a WebSocket to `url` (ws://host:port/path, or wss:// over TLS with `ssl_context`)
    and returns (client, response headers). `host` and `port` connect elsewhere than the URL
    says (the certificate is still checked for the URL's host). Raises HandshakeRefused on any
    answer but a valid 101, ssl.SSLError (an OSError) when the certificate is not trusted."""
    parts = urlsplit(url)
    tls = tls_options(parts, ssl_context)
    key = base64.b64encode(os.urandom(16)).decode()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    lines = [f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
             f"Host: {parts.netloc}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", f"Origin: {origin}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(loop.create_connection(
        lambda: Client(request, accept, on_text), host or parts.hostname,
        port or parts.port or DEFAULT_PORTS[parts.scheme], **tls), timeout)
    try:
        response_headers = await asyncio.wait_for(client.opened, timeout)
    except BaseException:
        client.transport.close()
        raise
    return client, response_headers
