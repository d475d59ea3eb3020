"""The limit row of `make bench`: the fastest broadcast this machine does in Python, for the
same load generator (fanout.py), the same clients and the same message. No Django, no proxy, no
channel layer: one asyncio process that answers what fanout.py asks of a portal (a login, the
Add Dam form, the WebSocket) and, for each add, builds one frame and writes it to every socket.
Ours divided by this is what the whole stack costs over the bare minimum.

    python limit.py --port 8080      (stackctl/bench.py runs it in a container of the web image)

It is not a portal: no password is checked and nothing is stored. It exists only to be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
from urllib.parse import parse_qs

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LOGIN_PATH = "/accounts/login/"
ADD_PATH = "/apps/dam-inventory/dams/add/"
WS_PATH = "/apps/dam-inventory/dams/notifications/ws/"
HOME = "/apps/dam-inventory/"


class Broadcaster:
    def __init__(self):
        self.sockets: set[asyncio.StreamWriter] = set()
        self.seq = 0

    def broadcast(self, form: dict[str, str]) -> None:
        """One text frame, built once, written to every socket (as the app's fan-out does)."""
        self.seq += 1
        dam = {"id": self.seq, "name": form.get("name", ""), "owner": form.get("owner", ""),
               "river": form.get("river", ""), "date_built": form.get("date-built", ""),
               "geometry": form.get("geometry", "")}
        payload = json.dumps({"event": "dam_added", "message": "New Dam", "dam": dam, "seq": self.seq}).encode()
        n = len(payload)
        header = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
        frame = header + payload
        for writer in self.sockets:
            writer.write(frame)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                path = target.split("?")[0]
                if path == WS_PATH and headers.get("upgrade", "").lower() == "websocket":
                    await self._websocket(reader, writer, headers)
                    return
                writer.write(self._answer(method, path, body))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def _answer(self, method: str, path: str, body: bytes) -> bytes:
        if method == "POST" and path == ADD_PATH:
            self.broadcast({k: v[0] for k, v in parse_qs(body.decode()).items()})
            return _response("302 Found", [f"Location: {HOME}"])
        if method == "POST" and path == LOGIN_PATH:
            return _response("302 Found", [f"Location: {HOME}", "Set-Cookie: sessionid=limit; Path=/"])
        return _response("200 OK", ["Set-Cookie: csrftoken=limit; Path=/", "Content-Type: text/html"], b"<html></html>")

    async def _websocket(self, reader, writer, headers) -> None:
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()).decode()
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept}\r\nX-Asgi-Worker: 1\r\n\r\n").encode())
        self.sockets.add(writer)
        try:
            await reader.read(4096)  # a client sends nothing but its close
        finally:
            self.sockets.discard(writer)


def _response(status: str, headers: list[str], body: bytes = b"") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def main(port: int) -> None:
    server = await asyncio.start_server(Broadcaster().serve, "0.0.0.0", port, backlog=4096)
    print(f"[limit] broadcasting on :{port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    asyncio.run(main(ap.parse_args().port))
