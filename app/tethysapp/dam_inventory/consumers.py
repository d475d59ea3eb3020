"""WebSocket consumer: /apps/dam-inventory/dams/notifications/ws/ (group `notifications`).

Refusals (documented in README.md):
  * Origin header missing or not an allowed host: the handshake is rejected (HTTP 403, the
    browser sees close code 1006). The check is here, not only in the portal's ASGI stack,
    because Tethys 4.6's asgi.py does not wrap WebSockets in AllowedHostsOriginValidator.
  * anonymous user: accepted then closed with code 4401, so a client can tell "log in again"
    from a network drop and stop reconnecting.
"""

import os
from urllib.parse import urlsplit

from channels import DEFAULT_CHANNEL_LAYER
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http.request import validate_host
from tethys_sdk.routing import consumer

from . import events
from . import fanout as fanouts

CLOSE_UNAUTHENTICATED = 4401
# Relative to the app root; the page builds the full path from the app's reversed home URL.
NOTIFICATIONS_URL = "dams/notifications"


def allowed_hosts():
    hosts = list(settings.ALLOWED_HOSTS)
    if not hosts and settings.DEBUG:
        # What Django itself accepts for Host when DEBUG is on and ALLOWED_HOSTS is empty.
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def origin_allowed(scope):
    origin = None
    for name, value in scope.get("headers", []):
        if name.lower() == b"origin":
            origin = value.decode("latin1").strip()
            break
    if not origin or origin == "null":
        return False
    try:
        parts = urlsplit(origin)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if ":" in host:
        host = f"[{host}]"
    return validate_host(host, allowed_hosts())


# DAM_INVENTORY_FANOUT=per-socket restores the tutorial's fan-out, every socket its own member
# of the group. It exists so that `make bench` can measure the Tethys docs' reference setup; the
# default, per-process, is what fanout.py explains.
FANOUT_MODES = ("per-process", "per-socket")


def fanout_mode():
    mode = os.environ.get("DAM_INVENTORY_FANOUT", "").strip() or FANOUT_MODES[0]
    if mode not in FANOUT_MODES:
        raise ImproperlyConfigured(f"DAM_INVENTORY_FANOUT={mode!r}: use one of {', '.join(FANOUT_MODES)}")
    return mode


# login_required=False: Tethys' own check leaves an anonymous socket pending without closing
# it; connect() below refuses it explicitly with a documented code instead.
@consumer(name="dam_notification", url=NOTIFICATIONS_URL, login_required=False)
class NotificationsConsumer(AsyncWebsocketConsumer):
    fanout = None
    joined = False  # per-socket mode: this socket's channel is in the group

    @property
    def channel_layer_alias(self):
        # Per process, no channel of its own (an alias that names no layer): the process's
        # Fanout is the group's member and writes every notification to this socket.
        return DEFAULT_CHANNEL_LAYER if fanout_mode() == "per-socket" else None

    async def connect(self):
        if not origin_allowed(self.scope):
            await self.close()  # before accept: the handshake is refused with HTTP 403
            return
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if self.channel_layer is not None:  # per-socket mode
            await self.channel_layer.group_add(events.GROUP, self.channel_name)
            self.joined = True
            await self.accept()
            return
        fanout = fanouts.for_this_loop()
        if not await fanout.ready():
            await self.accept()
            await self.close(code=fanouts.CLOSE_TRY_AGAIN_LATER)
            return
        await self.accept()
        fanout.attach(self)
        self.fanout = fanout

    async def disconnect(self, close_code):
        if self.fanout is not None:
            self.fanout.detach(self)
            self.fanout = None
        if self.joined:
            await self.channel_layer.group_discard(events.GROUP, self.channel_name)
            self.joined = False

    async def receive(self, text_data=None, bytes_data=None):
        # Clients only listen; a "ping" gets a "pong" so they can probe a half-open socket.
        if text_data == "ping":
            await self.send(text_data="pong")

    async def dam_notifications(self, event):
        """Per-socket mode: a group message for this socket alone, serialized for it alone."""
        await self.send(text_data=events.client_text(event))
