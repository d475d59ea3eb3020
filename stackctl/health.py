"""The one wait loop (`poll`), and the wait until a stack's services are healthy: `make up`,
`make restore`, Swarm deployments, the benchmarks and the tests all wait through them. It fails fast, with the service's last log lines, on
a container that exits, turns unhealthy or keeps crashing at start. A one-shot service (the
`setup` that runs before web) is done when it has exited with code 0, and failed when it
exited with any other."""

from __future__ import annotations

import time

from stackctl import docker
from stackctl.compose import Compose
from stackctl.console import StackError, Ticker, say

POLL_SECONDS = 1.0
# A service that crashes at start is restarted forever by its restart policy: after this
# many restarts during one wait, stop waiting and show why.
MAX_RESTARTS = 3
FAILED_STATES = {"unhealthy", "exited", "dead", "missing"}
# What a one-shot service's state reads as once it has exited with code 0.
COMPLETED = "completed"


def _state(compose: Compose, service: str, one_shot) -> str:
    state = compose.state(service)
    if service in one_shot and state == "exited":
        code = docker.exit_code(compose.container_id(service))
        return COMPLETED if code == 0 else f"exited({code})"
    return state


def poll(check, *, timeout: float, quiet: bool = False, on_timeout=None) -> float:
    """The one wait loop. CHECK() returns None when what is awaited is there, else a line
    saying where things stand (shown when it changes, and every few seconds); it may raise to
    stop the wait. Returns the seconds waited; past TIMEOUT, calls ON_TIMEOUT(last line) or
    raises StackError."""
    ticker = Ticker()
    while True:
        line = check()
        if line is None:
            return ticker.elapsed
        if not quiet:
            ticker.update(line)
        if ticker.elapsed > timeout:
            if on_timeout:
                on_timeout(line)
            raise StackError(f"still waiting after {timeout:.0f}s: {line}")
        time.sleep(POLL_SECONDS)


def wait_healthy(compose: Compose, services, timeout: float = 300, *, quiet: bool = False,
                 fail_fast: bool = True, one_shot=()) -> float:
    """Waits until every service's container is healthy, and every ONE_SHOT service's has
    exited with code 0; returns the seconds it took. fail_fast=False waits through failed
    states too (a fault test recovering a service); a one-shot that exited non-zero fails
    the wait always (it will not run again by itself)."""
    services = list(services)
    one_shot = set(one_shot)
    ids = {s: compose.container_id(s) for s in services}
    restarts0 = {s: docker.restart_count(cid) for s, cid in ids.items() if cid}
    if not quiet:
        say(f"waiting up to {timeout:.0f}s for {', '.join(services)} to be healthy"
            + (f" ({', '.join(sorted(one_shot))}: exited 0)" if one_shot else ""))

    def check() -> str | None:
        states = {s: _state(compose, s, one_shot) for s in services}
        for service, state in states.items():
            if service in one_shot and state.startswith("exited("):
                _fail(compose, service, f"{service} failed: it {state.replace('(', ' with code ').rstrip(')')}")
            if not fail_fast:
                continue
            if state in FAILED_STATES:
                _fail(compose, service, f"{service} is {state}")
            cid = ids.get(service) or compose.container_id(service)
            if cid and docker.restart_count(cid) - restarts0.get(service, 0) >= MAX_RESTARTS:
                _fail(compose, service, f"{service} keeps crashing at start (restarted {MAX_RESTARTS} times)")
        if all(state == (COMPLETED if s in one_shot else "healthy") for s, state in states.items()):
            return None
        return " ".join(f"{s}={state}" for s, state in states.items())

    elapsed = poll(check, timeout=timeout, quiet=quiet,
                   on_timeout=lambda line: _fail(compose, None, f"not healthy after {timeout:.0f}s: {line}"))
    if not quiet:
        say(f"all healthy after {elapsed:.0f}s")
    return elapsed


def _fail(compose: Compose, service: str | None, reason: str):
    detail = ""
    if service and (cid := compose.container_id(service)):
        tail = docker.logs_tail(cid).rstrip().replace("\n", "\n    ")
        detail = f"\nlast lines of {service}'s log:\n    {tail}"
    raise StackError(f"{reason}{detail}\nsee what went wrong with: make logs")
