"""No notification is lost, by construction: each hole a fan-out over a channel layer has is
forced on the real stack, and every client ends holding every dam without a reload.

- two adds committed in one order and published in the other, a client's socket dropped in
  between: the client sees a seq ahead of its own and fetches what came between;
- a publish that fails (the channel layer refuses it) while the clients stay connected: at
  their next sync each worker replays the event from the outbox on the sockets, so the
  clients get it without a request;
- a client that loses one live message: the same sync message reveals the gap.

The holes are made inside web with the app's own code (`stack.portal_python`): the adds go
through model.add_dam as a request's would, only their publishing is held back or broken.
The clients are tests/notifications.py's (their own implementation of the protocol); the
browser's client meets a lost frame in tests/browser/test_offline_front_end.py."""

from __future__ import annotations

import asyncio
import json

from stackctl.portal import unique_name
from tests.faults import faultkit as fk
from tests.notifications import open_clients_on_every_worker

# The workers announce the outbox's last seq every 5 s (fanout.SYNC_SECONDS): a client that
# missed something has it one sync and one catch-up later. An upper bound, not a speed target.
SYNC_DEADLINE = 15.0

COMMIT_TWO_PUBLISH_REVERSED = """
import datetime, time
from tethysapp.dam_inventory import controllers, events, model
held, publish = [], events.publish
events.publish = held.append  # committed now, published below in the other order
ids = []
for name in NAMES:
    with controllers.store_session() as session:
        ids.append(model.add_dam(session, name=name, owner="Other", river="Held back",
                                 date_built=datetime.date(2001, 1, 1), lon=-110.5, lat=40.5)["id"])
publish(held[1])
time.sleep(GAP_SECONDS)
publish(held[0])
result = ids
"""

COMMIT_WITH_THE_LAYER_REFUSING = """
import datetime
from tethysapp.dam_inventory import controllers, events, model
def refusing_layer():
    raise ConnectionError("the channel layer refuses the publish")
events.get_channel_layer = refusing_layer  # publish() logs the failure, as in a Redis outage
with controllers.store_session() as session:
    result = model.add_dam(session, name=NAME, owner="Other", river="Unannounced",
                           date_built=datetime.date(2002, 2, 2), lon=-111.5, lat=41.5)["id"]
"""


def run_in_web(stack, script: str, **values) -> object:
    assignments = "".join(f"{name} = {json.dumps(value)}\n" for name, value in values.items())
    return stack.portal_python(assignments + script)


async def until(predicate, timeout: float) -> None:
    """Returns once predicate() holds, or after TIMEOUT (the assertions that follow judge)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


def assert_all_hold(clients, dam_ids):
    lacking = {c.label: sorted(set(dam_ids) - c.holding) for c in clients if not set(dam_ids) <= c.holding}
    assert not lacking, f"clients lacking dams: {lacking} ({fk.describe(clients)})"


async def test_two_adds_published_in_the_other_order_with_a_drop_between(stack, admin_portal, asgi_processes):
    clients = await open_clients_on_every_worker(admin_portal, asgi_processes)
    try:
        dropped = clients[0]
        start = dropped.last_seq
        names = [unique_name("Committed first"), unique_name("Committed second")]
        script = asyncio.create_task(asyncio.to_thread(
            run_in_web, stack, COMMIT_TWO_PUBLISH_REVERSED, NAMES=names, GAP_SECONDS=5))
        # the second dam arrives first; then the socket goes, before the first one is published
        await until(lambda: dropped.last_seq > start or script.done(), 60)
        await dropped._ws.close()
        ids = await script
        await asyncio.gather(*(c.wait_for(ids, SYNC_DEADLINE) for c in clients))
        assert_all_hold(clients, ids)
        await until(lambda: dropped.connections >= 2, SYNC_DEADLINE)
        assert dropped.connections >= 2, "the dropped client did not reconnect"
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


async def test_a_failed_publish_is_replayed_to_connected_clients_from_the_outbox(stack, admin_portal, asgi_processes):
    clients = await open_clients_on_every_worker(admin_portal, asgi_processes)
    try:
        dam_id = await asyncio.to_thread(run_in_web, stack, COMMIT_WITH_THE_LAYER_REFUSING,
                                         NAME=unique_name("Unannounced"))
        await asyncio.gather(*(c.wait_for({dam_id}, SYNC_DEADLINE) for c in clients))
        assert_all_hold(clients, {dam_id})
        # "live": it came on the socket (the worker's replay), not from a catch-up request
        assert all(c.connections == 1 and c.seen[dam_id].how == "live" for c in clients), fk.describe(clients)
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


async def test_a_client_that_loses_one_live_message_gets_it_from_the_next_sync(admin_portal, asgi_processes):
    clients = await open_clients_on_every_worker(admin_portal, asgi_processes)
    try:
        lossy = clients[0]
        lossy.skip_live = 1
        dam_id, _ = await fk.add_dam(admin_portal, "Lost on the way")
        await asyncio.gather(*(c.wait_for({dam_id}, SYNC_DEADLINE) for c in clients))
        assert_all_hold(clients, {dam_id})
        assert lossy.skip_live == 0 and lossy.seen[dam_id].how == "catch-up" and lossy.connections == 1
        assert all(c.seen[dam_id].how == "live" for c in clients[1:]), fk.describe(clients)
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
