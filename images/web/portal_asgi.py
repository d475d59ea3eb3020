"""ASGI application of the portal as the web image runs it.

Same routing as tethys_portal.asgi, with three differences: WebSocket connections pass through
AllowedHostsOriginValidator, so a page on another site cannot open a socket with the visitor's
session cookie (cross-site WebSocket hijacking; tethys_portal.asgi checks no Origin); a
database outage gets a clean refusal instead of the server's bare 500
(DatabaseUnavailableGuard); and a server that speaks the ASGI lifespan protocol (uvicorn;
daphne does not) is answered, so that at shutdown the app's fan-out leaves the channel group.
"""

import logging
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tethys_portal.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models (the URL modules below do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.db import InterfaceError, OperationalError  # noqa: E402
from django.urls import re_path  # noqa: E402
from tethys_apps.urls import app_websocket_urls, http_handler_patterns  # noqa: E402
from tethys_portal.urls import websocket_urlpatterns  # noqa: E402

from tethysapp.dam_inventory import fanout  # noqa: E402

logger = logging.getLogger("tethys.asgi")

DB_UNAVAILABLE_PAGE = (
    b"<!doctype html><title>Service temporarily unavailable</title>"
    b"<h1>Service temporarily unavailable</h1>"
    b"<p>The portal's database cannot be reached, so nothing was saved. "
    b"Try again in a moment.</p>"
)


# The close code of a WebSocket refused for now (1013 "try again later" in the 4xxx range an
# application may send; the app's fan-out uses the same): clients reconnect with their backoff.
CLOSE_TRY_AGAIN_LATER = 4013


class DatabaseUnavailableGuard:
    """A clean refusal when the database is down before an answer has begun: HTTP gets 503 with
    a clear page; a WebSocket handshake is accepted and closed at once with
    CLOSE_TRY_AGAIN_LATER, so its client reconnects with its backoff.

    Views handle their own database errors, but AuthMiddlewareStack loads the session user
    before any view or consumer runs: with the database gone that raises out of the application
    and daphne answers a bare 500 "Exception inside application". Once the database is back,
    Django's per-request connection handling recovers by itself; nothing here needs resetting.
    """

    STARTS = ("http.response.start", "websocket.accept", "websocket.close")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False
        connect_received = False

        async def send_tracking(message):
            nonlocal started
            started = started or message["type"] in self.STARTS
            await send(message)

        async def receive_tracking():
            nonlocal connect_received
            message = await receive()
            connect_received = connect_received or message["type"] == "websocket.connect"
            return message

        try:
            await self.app(scope, receive_tracking, send_tracking)
        except (OperationalError, InterfaceError) as error:
            if started:
                raise
            logger.warning("database unavailable, refused %s %s: %s", scope["type"], scope.get("path"), error)
            if scope["type"] == "websocket":
                if not connect_received:
                    await receive()  # the handshake's websocket.connect
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"retry-after", b"5"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": DB_UNAVAILABLE_PAGE})


async def lifespan(scope, receive, send):
    """Startup needs nothing; shutdown takes this process's fan-out member out of the group."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await fanout.leave_this_loop()
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": DatabaseUnavailableGuard(
            AuthMiddlewareStack(URLRouter([*http_handler_patterns, re_path(r"", django_asgi_app)]))
        ),
        "websocket": AllowedHostsOriginValidator(
            DatabaseUnavailableGuard(AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, *app_websocket_urls])))
        ),
        "lifespan": lifespan,
    }
)
