"""The shape every notification fault test shares: clients on every worker, a dam before
the fault, the fault, a dam after it, and the check that every client has every dam."""
from __future__ import annotations

import asyncio
import os
import time
from typing import Awaitable, Callable

from stackctl.portal import Portal, unique_name
from tests.notifications import NotificationClient, open_clients_on_every_worker

# The bound: the next dam reaches every client (live or by catch-up) within 5 s.
# It is a deadline for a functional property, not a speed measurement (speed: make bench).
DELIVERY_DEADLINE = float(os.environ.get("FAULT_DELIVERY_DEADLINE", "5"))
# After a web restart the clients are in the JS client's backoff (at most 30 s between tries):
# they must be back and caught up within one full backoff step plus margin.
RECONNECT_DEADLINE = NotificationClient.backoff_max + 10


def describe(clients: list[NotificationClient]) -> str:
    return "; ".join(
        f"{c.label}: workers={c.workers} connections={c.connections} closes={c.closes} "
        f"seen={sorted(c.seen)} errors={c.errors[-2:]}"
        for c in clients
    )


async def add_dam(portal: Portal, prefix: str) -> tuple[int, float]:
    """Adds a dam (in a thread: the clients keep running) -> (id, monotonic time of the post)."""
    t0 = time.monotonic()
    dam_id = await asyncio.to_thread(portal.add_dam_checked, unique_name(prefix))
    return dam_id, t0


async def missing_after(clients, dam_ids, deadline_from: float,
                        deadline: float = DELIVERY_DEADLINE) -> dict[str, set[int]]:
    """Waits until `deadline` s after `deadline_from`; returns what each client lacks."""
    left = max(0.0, deadline_from + deadline - time.monotonic())
    await asyncio.gather(*(c.wait_for(dam_ids, left) for c in clients))
    return {c.label: set(dam_ids) - c.seen.keys() for c in clients if set(dam_ids) - c.seen.keys()}


async def baseline_dam(portal: Portal, clients: list[NotificationClient], prefix: str) -> int:
    """Adds a dam before the fault and asserts every client got it in time -> its id."""
    dam_id, t = await add_dam(portal, prefix)
    missing = await missing_after(clients, {dam_id}, t)
    assert not missing, f"baseline: a dam did not reach {missing} ({describe(clients)})"
    return dam_id


async def with_clients(portal: Portal, workers: int, per_worker: int,
                       body: Callable[[list[NotificationClient]], Awaitable[None]]):
    clients = await open_clients_on_every_worker(portal, workers, per_worker)
    try:
        await body(clients)
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


def run(coro):
    return asyncio.run(coro)
