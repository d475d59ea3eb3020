"""Redis goes away while WebSocket clients are connected: no dam may be lost, and no socket
is dropped (the workers keep their clients current from the outbox until Redis is back, so
a Redis restart sends no crowd of clients back at once).

Clients behave like the app's JS client (events in order; a gap or a sync message ahead makes
a catch-up from the last seq they applied), so a dam reaches a client live, replayed by its
worker, or through the catch-up endpoint.
"""
from __future__ import annotations

import asyncio

from stackctl import docker
from stackctl.portal import Portal, add_succeeded, unique_name, visible_text
from tests.faults import faultkit as fk


def _dam_id_by_name(portal: Portal, name: str) -> int | None:
    for dam in portal.dams_since():
        if dam.get("name") == name:
            return int(dam["id"])
    return None


def assert_none_dropped(clients, fault: str) -> None:
    dropped = [c.label for c in clients if c.connections != 1 or c.closes]
    assert not dropped, f"the {fault} dropped sockets: {dropped} ({fk.describe(clients)})"


def test_redis_stopped_and_restarted_loses_no_dam(stack, portal, containers, asgi_processes):
    redis = containers["redis"]

    async def body(clients):
        before = await fk.baseline_dam(portal, clients, "before-redis-stop")

        await asyncio.to_thread(docker.docker, "stop", "-t", "10", redis)
        # An add while Redis is down: the database is fine, so either the dam is saved (and
        # reaches the clients by catch-up) or it is refused cleanly and not saved at all.
        name = unique_name("during-redis-outage")
        resp = await asyncio.to_thread(portal.add_dam, name)
        assert resp.status_code < 500, (
            f"add during a Redis outage answered HTTP {resp.status_code}: "
            f"{visible_text(resp.text)[:300]}"
        )
        await asyncio.to_thread(docker.docker, "start", redis)
        await asyncio.to_thread(stack.wait_healthy, "redis", timeout=90)

        during = await asyncio.to_thread(_dam_id_by_name, portal, name)
        if add_succeeded(resp):
            assert during is not None, f"add of {name!r} during the outage said OK but saved nothing"
        else:
            assert during is None, f"add of {name!r} during the outage was refused but saved"

        after, t = await fk.add_dam(portal, "after-redis-restart")
        want = {before, after} | ({during} if during else set())
        missing = await fk.missing_after(clients, want, t)
        assert not missing, (
            f"dams missing {fk.DELIVERY_DEADLINE:.0f}s after the first add past the Redis restart: "
            f"{missing} ({fk.describe(clients)})"
        )
        assert_none_dropped(clients, "Redis restart")

    fk.run(fk.with_clients(portal, asgi_processes, 2, body))


def test_redis_sigkilled_loses_no_dam(stack, portal, asgi_processes):
    async def body(clients):
        before = await fk.baseline_dam(portal, clients, "before-redis-kill")

        await asyncio.to_thread(fk.kill_redis, stack)

        after, t = await fk.add_dam(portal, "after-redis-kill")
        missing = await fk.missing_after(clients, {before, after}, t)
        assert not missing, (
            f"dams missing {fk.DELIVERY_DEADLINE:.0f}s after the first add past the Redis SIGKILL: "
            f"{missing} ({fk.describe(clients)})"
        )
        assert_none_dropped(clients, "Redis SIGKILL")

    fk.run(fk.with_clients(portal, asgi_processes, 2, body))
