"""One ASGI worker is SIGKILLed: supervisord brings it back; clients on the other workers
notice nothing, the ones on the killed worker reconnect and catch up."""
from __future__ import annotations

import asyncio
import os
import signal
import time

from stackctl import docker
from stackctl.portal import WORKER_HEADER
from tests.faults import faultkit as fk
from tests.notifications import NotificationClient

# More connections than daphne's own listen backlog (50) holds, fewer than the stack's.
QUEUED_CONNECTIONS = 300
# Opens N connections to a unix socket without waiting for them to be accepted; prints how
# many the kernel queued (a full backlog refuses the rest with EAGAIN).
QUEUE_PROBE = """
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.setblocking(False)
    try:
        s.connect(path)
        held.append(s)
    except BlockingIOError:
        s.close()
print(len(held))
"""


def test_a_stalled_worker_queues_connections_instead_of_refusing_them(stack, containers):
    """While a worker is busy (here: stopped), nginx's connections to it wait in the socket's
    queue; a full queue would make nginx answer 502 during a burst of reconnects."""
    web = containers["web"]
    procs = docker.processes(web)
    pid = min(docker.asgi_workers(web, procs).values())
    path, backlog = docker.worker_endpoint(dict(procs)[pid])
    assert backlog >= QUEUED_CONNECTIONS, f"the worker listens with a backlog of {backlog}"
    python = stack.web_python_path()
    os.kill(pid, signal.SIGSTOP)
    try:
        queued = stack.exec("web", [python, "-c", QUEUE_PROBE, path, str(QUEUED_CONNECTIONS)], timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert int(queued) == QUEUED_CONNECTIONS, (
        f"a stalled worker's socket queued {queued.strip()} of {QUEUED_CONNECTIONS} connections")


def test_killed_asgi_worker_is_restarted_and_others_notice_nothing(stack, portal, containers, asgi_processes):
    web = containers["web"]
    assert asgi_processes >= 2, "this test needs at least two ASGI workers (the test stack runs 3)"
    workers = docker.asgi_workers(web)
    assert len(workers) == asgi_processes, f"ASGI workers found in web: {workers}"

    async def body(clients):
        before = await fk.baseline_dam(portal, clients, "before-worker-kill")

        victim = clients[0].worker
        assert victim and victim.isdigit(), f"no {WORKER_HEADER} header on the handshake: {victim!r}"
        await asyncio.to_thread(fk.kill_worker, stack, int(victim))
        after, t = await fk.add_dam(portal, "after-worker-kill")
        missing = await fk.missing_after(clients, {before, after}, t)
        assert not missing, f"dams missing after the worker kill: {missing} ({fk.describe(clients)})"

        others = [c for c in clients if c.workers[0] != victim]
        assert others, "no client landed on another worker"
        disturbed = [c.label for c in others if c.connections != 1 or c.closes or c.seen[after].how != "live"]
        assert not disturbed, (
            f"clients on workers other than {victim} noticed the kill: {disturbed} ({fk.describe(clients)})"
        )
        on_victim = [c for c in clients if c.workers[0] == victim]
        assert all(c.connections >= 2 for c in on_victim), (
            f"clients of the killed worker did not reconnect: {fk.describe(on_victim)}"
        )

        # The restarted worker takes connections again once it listens (daphne needs a few
        # seconds to load Django; nginx also rests a failed server for fail_timeout). Sockets
        # are held open so least_conn moves on to the emptiest worker.
        extra, landed = [], []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(extra) < 60:
                extra.append(await NotificationClient(portal, label=f"x{len(extra)}").start())
                landed.append(extra[-1].worker)
                if landed[-1] == victim:
                    break
                await asyncio.sleep(1)
            assert landed and landed[-1] == victim, (
                f"no new connection landed on restarted worker {victim} within 60 s: {landed}"
            )
        finally:
            await asyncio.gather(*(c.stop() for c in extra), return_exceptions=True)

    fk.run(fk.with_clients(portal, asgi_processes, 2, body))
