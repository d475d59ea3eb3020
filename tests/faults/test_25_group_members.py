"""The `notifications` group does not grow with restarts: a worker leaves the group when web
stops, keeps its one member through Redis outages, and renews it while it lives, so a member
that did not leave (a killed worker) expires after group_expiry instead of weighing on every
notification for a day. Read from Redis through the channel layer, inside web."""

from __future__ import annotations

import asyncio

from stackctl import docker
from tests.notifications import open_clients_on_every_worker

# What the image configures (salt/defaults.yaml) and how often a worker renews (fanout.py).
GROUP_EXPIRY = 900
REJOIN_SECONDS = 300

GROUP_MEMBERS = """
import time
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

layer = get_channel_layer()

async def members():
    key = layer._group_key("notifications")
    connection = layer.connection(layer.consistent_hash("notifications"))
    return [[m.decode(), score] for m, score in await connection.zrange(key, 0, -1, withscores=True)]

result = {"expiry": layer.group_expiry, "members": async_to_sync(members)(), "now": time.time()}
"""


def group(stack, portal, workers) -> dict:
    """The group as Redis holds it, once every worker has a socket (a worker joins the group
    with its first one)."""

    async def read():
        clients = await open_clients_on_every_worker(portal, workers)
        try:
            return await asyncio.to_thread(stack.portal_python, GROUP_MEMBERS)
        finally:
            await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)

    return asyncio.run(read())


def assert_one_fresh_member_per_worker(state, workers, what):
    names = [m for m, _ in state["members"]]
    assert len(names) == workers, f"{what}: {len(names)} group members for {workers} workers: {names}"
    stale = [m for m, score in state["members"] if state["now"] - score > REJOIN_SECONDS + 60]
    assert not stale, f"{what}: members not renewed within {REJOIN_SECONDS} s: {stale}"


def test_restarts_and_redis_outages_leave_no_dead_member(stack, portal, containers, asgi_processes):
    before = group(stack, portal, asgi_processes)
    assert before["expiry"] == GROUP_EXPIRY
    # the Redis restarts and the web restart of the earlier fault tests left nothing behind
    assert_one_fresh_member_per_worker(before, asgi_processes, "after the earlier faults")
    for _ in range(2):
        docker.docker("restart", "-t", "30", containers["web"], timeout=120)
        stack.wait_healthy("web", timeout=180)
    after = group(stack, portal, asgi_processes)
    assert_one_fresh_member_per_worker(after, asgi_processes, "after two web restarts")
    assert not {m for m, _ in before["members"]} & {m for m, _ in after["members"]}, (
        "the stopped workers' members are still in the group")
