"""ASGI application of the portal as the web image runs it.

Same routing as tethys_portal.asgi, with one difference: WebSocket connections pass through
AllowedHostsOriginValidator, so a page on another site cannot open a socket with the visitor's
session cookie (cross-site WebSocket hijacking); tethys_portal.asgi checks no Origin.
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

logger = logging.getLogger("tethys.asgi")

DB_UNAVAILABLE_PAGE = (
    b"<!doctype html><title>Service temporarily unavailable</title>"
    b"<h1>Service temporarily unavailable</h1>"
    b"<p>The portal's database cannot be reached, so nothing was saved. "
    b"Try again in a moment.</p>"
)


class DatabaseUnavailableGuard:
    """Answers 503 with a clear page when the database is down before a response has begun.

    Views handle their own database errors, but AuthMiddlewareStack loads the session user
    before any view runs: with the database gone that raises out of the application and daphne
    answers a bare 500 "Exception inside application". Once the database is back, Django's
    per-request connection handling recovers by itself; nothing here needs resetting.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        response_started = False

        async def send_tracking(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except (OperationalError, InterfaceError) as error:
            if response_started:
                raise
            logger.warning("database unavailable, answered 503 for %s: %s", scope.get("path"), error)
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


application = ProtocolTypeRouter(
    {
        "http": DatabaseUnavailableGuard(
            AuthMiddlewareStack(URLRouter([*http_handler_patterns, re_path(r"", django_asgi_app)]))
        ),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, *app_websocket_urls]))
        ),
    }
)
