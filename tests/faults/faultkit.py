"""The shape every notification fault test shares: clients on every worker, a dam before
the fault, the fault, a dam after it, and the check that every client has every dam. And the
faults themselves, each returning once the stack has recovered from it, for the fault tests
and for the soak campaign that injects them on a schedule."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Awaitable, Callable

from stackctl import docker
from stackctl.portal import Portal, unique_name
from tests.notifications import NotificationClient, open_clients_on_every_worker, wait_until

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


# ------------------------------------------------------------------------------ the faults
# How long each service may take to be healthy again (web runs Salt and loads Django first).
RECOVERY_TIMEOUT = {"redis": 90, "db": 120, "web": 180}


def restart(stack, service: str, grace: int = 30) -> None:
    """`docker restart` (SIGTERM, then SIGKILL after GRACE s), until healthy again."""
    docker.docker("restart", "-t", str(grace), stack.container_id(service), timeout=grace + 90)
    stack.wait_healthy(service, timeout=RECOVERY_TIMEOUT[service])


def kill_redis(stack) -> None:
    """A crash, not a stop: SIGKILL to the server from outside, so Docker's restart policy
    (not `docker start`) has to bring it back."""
    redis = stack.container_id("redis")
    old_pid = docker.inspect(redis)[0]["State"]["Pid"]
    assert old_pid, "redis container has no running process"
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: docker.inspect(redis)[0]["State"]["Pid"] not in (0, old_pid),
               60, 0.5, "redis restarted by its restart policy after SIGKILL")
    stack.wait_healthy("redis", timeout=RECOVERY_TIMEOUT["redis"])


# Connects to a unix socket: "listening" once a server accepts there (a stale socket file
# left by a killed process refuses).
CONNECTS = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1]); print('listening')"


def kill_worker(stack, worker: int | None = None) -> int:
    """SIGKILLs ASGI worker WORKER (default: one at random) and waits until supervisord has
    started a new one and it listens on its socket again -> the worker's number."""
    web = stack.container_id("web")
    procs = docker.processes(web)
    workers = docker.asgi_workers(web, procs)
    worker = worker if worker is not None else random.choice(sorted(workers))
    pid = workers[worker]
    socket_path = docker.worker_endpoint(dict(procs)[pid])[0]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: docker.asgi_workers(web).get(worker) not in (None, pid),
               60, 0.5, f"supervisord restarting ASGI worker {worker}")
    python = stack.web_python_path()
    wait_until(lambda: "listening" in stack.exec("web", [python, "-c", CONNECTS, socket_path], check=False),
               60, 0.5, f"ASGI worker {worker} listening on {socket_path} again")
    return worker


# The fault suite's faults by name, each (stack) -> None, returning once recovered. In this
# order the soak campaign injects them: the db's and web's restarts first and last, so the
# processes and connections between them live long enough to judge their growth.
FAULTS: dict[str, Callable] = {
    "db restart": lambda stack: restart(stack, "db"),
    "redis restart": lambda stack: restart(stack, "redis", grace=10),
    "redis SIGKILL": kill_redis,
    "worker SIGKILL": kill_worker,
    "web restart": lambda stack: restart(stack, "web"),
}
