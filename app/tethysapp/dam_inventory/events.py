"""Notifications to the `notifications` group, sent only after the data is committed.

Every change is first an event in the outbox (model.DamEvent), written in the change's own
transaction; its seq is in the live message. What is published here is a fast path: a client
that misses it (a failed publish, a dropped socket, a lost frame) sees a seq ahead of its own
in a later message or in a sync message, and catches up from the outbox.

A write queues its message on the SQLAlchemy session (`queue`). When that session commits, the
messages are handed to Django's `transaction.on_commit`, so they also wait for an enclosing
Django transaction (ATOMIC_REQUESTS, tests) and are dropped if it rolls back. A session that
rolls back drops its queued messages: a refused or failed add never notifies anyone.
"""

import functools
import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from sqlalchemy import event

log = logging.getLogger(__name__)

GROUP = "notifications"
# The consumer method that receives group messages (the tutorial's event type).
EVENT_TYPE = "dam_notifications"
_QUEUE_KEY = "dam_inventory_events"


def dam_added(dam_payload):
    # "message": "New Dam" is the tutorial's payload, kept for clients written against it.
    return {"event": "dam_added", "message": "New Dam", "dam": dam_payload}


def dam_deleted(dam_id, name, deletion):
    # "deletion": the dam_deletions row's number, which the older catch-up (since /
    # deleted_since) counts by; "seq", added by the outbox, orders every event.
    return {"event": "dam_deleted", "message": "Dam Deleted", "id": dam_id, "name": name, "deletion": deletion}


def sync(seq):
    """The last event's seq, sent now and then to every socket (fanout.py): a client behind it
    missed a message, or a publish failed, and it catches up."""
    return {"event": "sync", "seq": seq}


def client_text(event):
    """The JSON text a WebSocket client gets for a group event: the event without its
    channel-layer `type`."""
    return json.dumps({k: v for k, v in event.items() if k != "type"})


def publish(message):
    """Sends one message to the group. A channel layer outage must not turn a committed add into
    an error page: the event is in the outbox, every worker's next sync message (fanout.py)
    tells its clients there is more, and they fetch it from the events endpoint."""
    try:
        layer = get_channel_layer()
        if layer is None:
            log.warning("no channel layer configured; notification not sent: %s", message)
            return
        async_to_sync(layer.group_send)(GROUP, {"type": EVENT_TYPE, **message})
    except Exception:
        log.exception("could not publish %s to group %s", message.get("event"), GROUP)


def _after_commit(session):
    for message in session.info.pop(_QUEUE_KEY, []):
        transaction.on_commit(functools.partial(publish, message))


def _after_rollback(session):
    session.info.pop(_QUEUE_KEY, None)


def queue(session, message):
    """Queues `message` to be published once `session` commits."""
    # Make sure the message belongs to a begun transaction: with none begun, a rollback() is a
    # no-op that fires no event, and a later commit would publish the message.
    session.connection()
    if not session.info.get("dam_inventory_listening"):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_soft_rollback", lambda s, _tx: _after_rollback(s))
        session.info["dam_inventory_listening"] = True
    session.info.setdefault(_QUEUE_KEY, []).append(message)
