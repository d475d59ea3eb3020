#!/opt/tethys-venv/bin/python
"""daphne, plus a clean goodbye to WebSocket clients on shutdown.

Plain daphne stops its reactor on SIGTERM and drops open sockets: clients see an abnormal
closure (1006) and cannot tell a deploy from a crash. This server sends every open WebSocket a
close frame with code 1000 (normal closure; autobahn lets a server send only 1000 or
3000-4999, so not 1001) first, and gives the closing handshakes a moment.
Everything else (arguments, behaviour) is daphne's own.
"""

import logging
import sys

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer, reactor, task

# How long shutdown waits for clients to answer the close frames; well inside the
# supervisord stopwaitsecs and compose's stop timeout.
CLOSE_GRACE_SECONDS = 2.0
logger = logging.getLogger("daphne.server")


class GracefulServer(Server):
    def run(self):
        reactor.addSystemEventTrigger("before", "shutdown", self.close_websockets)
        super().run()

    def close_websockets(self):
        open_sockets = [
            protocol
            for protocol in list(self.connections)
            if isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN
        ]
        logger.info("Shutting down: closing %i WebSocket(s) with 1000", len(open_sockets))
        for protocol in open_sockets:
            try:
                protocol.sendClose(code=1000, reason="server shutting down")
            except Exception:  # noqa: BLE001 - one bad socket must not cut the others short
                logger.exception("could not send a close frame to %s", protocol)
        if not open_sockets:
            return None
        return self._wait_closed(open_sockets)

    @defer.inlineCallbacks
    def _wait_closed(self, sockets):
        waited = 0.0
        while waited < CLOSE_GRACE_SECONDS and any(s.state != s.STATE_CLOSED for s in sockets):
            yield task.deferLater(reactor, 0.1, lambda: None)
            waited += 0.1


class GracefulCommandLineInterface(CommandLineInterface):
    server_class = GracefulServer


if __name__ == "__main__":
    sys.exit(GracefulCommandLineInterface().run(sys.argv[1:]))
