"""ASGI application of the portal as the web image runs it.

Same routing as tethys_portal.asgi, with one difference: WebSocket connections pass through
AllowedHostsOriginValidator, so a page on another site cannot open a socket with the visitor's
session cookie (cross-site WebSocket hijacking); tethys_portal.asgi checks no Origin.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tethys_portal.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models (the URL modules below do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402
from tethys_apps.urls import app_websocket_urls, http_handler_patterns  # noqa: E402
from tethys_portal.urls import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": AuthMiddlewareStack(
            URLRouter([*http_handler_patterns, re_path(r"", django_asgi_app)])
        ),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, *app_websocket_urls]))
        ),
    }
)
