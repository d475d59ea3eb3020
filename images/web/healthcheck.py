#!/opt/tethys-venv/bin/python
"""HEALTHCHECK of the web image: healthy only if nginx AND every ASGI worker answer.

The targets come from health.json, written by the Salt states at start (so a changed
ASGI_PROCESSES is probed as configured), with the request timeout HEALTHCHECK_REQUEST_TIMEOUT
that Salt rendered there: one request straight to each worker's unix socket,
one through nginx. Any status below 500 counts as an answer; a 5xx, a refused connection or a
timeout does not. Exit 0 healthy, 1 unhealthy, with one line per failure.
"""

import http.client
import json
import os
import socket
import sys

# The image's ENV sets it; every other value (and its default) comes from health.json.
RUN_DIR = os.environ["TETHYS_RUN_DIR"]
# The portal's login page: served by Django without touching the app, cheap to render.
PATH = "/accounts/login/"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def probe(conn, host):
    try:
        conn.request("GET", PATH, headers={"Host": host, "User-Agent": "tethys-healthcheck"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("X-Asgi-Worker")
    finally:
        conn.close()


def main():
    try:
        with open(os.path.join(RUN_DIR, "health.json")) as fh:
            targets = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"unhealthy: no health targets yet ({exc}); the Salt states have not finished")
        return 1
    failures = []
    for sock_path in targets["sockets"]:
        try:
            status, _ = probe(UnixHTTPConnection(sock_path, targets["request_timeout"]), targets["host"])
            if status >= 500:
                failures.append(f"worker {sock_path}: HTTP {status}")
        except OSError as exc:
            failures.append(f"worker {sock_path}: {exc}")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", targets["nginx_port"], timeout=targets["request_timeout"])
        status, worker = probe(conn, targets["host"])
        if status >= 500 or not worker:
            failures.append(f"nginx: HTTP {status}, X-Asgi-Worker {worker!r}")
    except OSError as exc:
        failures.append(f"nginx :{targets['nginx_port']}: {exc}")
    for failure in failures:
        print(f"unhealthy: {failure}")
    if not failures:
        print(f"healthy: nginx and {len(targets['sockets'])} ASGI workers answer")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
