"""The web container restarts while clients are connected: they reconnect, catch up, and
the dams survive."""
from __future__ import annotations

import asyncio

from tests.faults import faultkit as fk


def test_web_restart_clients_reconnect_catch_up_and_dams_persist(stack, portal, asgi_processes):
    async def body(clients):
        before = await fk.baseline_dam(portal, clients, "before-web-restart")

        await asyncio.to_thread(fk.restart, stack, "web")

        names = {d["name"]: int(d["id"]) for d in await asyncio.to_thread(portal.dams_since)}
        assert before in names.values(), "a dam added before the web restart is gone after it"

        after, t = await fk.add_dam(portal, "after-web-restart")
        missing = await fk.missing_after(clients, {before, after}, t, fk.RECONNECT_DEADLINE)
        assert not missing, (
            f"dams missing {fk.RECONNECT_DEADLINE:.0f}s after the first add past the web restart: "
            f"{missing} ({fk.describe(clients)})"
        )
        stuck = [c.label for c in clients if c.connections < 2]
        assert not stuck, f"clients never reconnected after the web restart: {stuck} ({fk.describe(clients)})"
        # A restart is a deploy, not a crash: the image promises a close frame on SIGTERM
        # (daphne's 1000 normal closure, uvicorn's 1012 service restart; 1001 going away),
        # never a dropped connection (1006), so a client can tell the two apart.
        abnormal = {c.label: c.closes[0] for c in clients if c.closes[:1] not in ([1000], [1001], [1012])}
        assert not abnormal, f"close codes seen on a web restart (want 1000, 1001 or 1012): {abnormal}"

    fk.run(fk.with_clients(portal, asgi_processes, 1, body))
