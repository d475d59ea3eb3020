"""The swarm suite's stack: the bundle deployed by `stackctl swarm up` on a single-node swarm
of this machine's engine (made for the suite when the engine is in none, and left again at the
end), with WEB_REPLICAS web tasks. It has its own stack name, env files and ports, beside the
compose test stack. Everything it made goes at the end: services, secrets, networks, volumes."""

from __future__ import annotations

import os

import pytest

from stackctl import envfiles, swarm
from stackctl.console import StackError
from stackctl.portal import Portal, admin_credentials
from stackctl.settings import ROOT, Stack

SWARM_STACK = Stack(project=os.environ.get("TEST_SWARM_PROJECT") or "dam-inventory-swarmtest",
                    env_dir=ROOT / "env" / "swarmtest", port=19443, http_port=19080)
REPLICAS = 2
WORKERS_PER_REPLICA = 2


@pytest.fixture(scope="session")
def swarm_stack(web_image):
    state, _ = swarm.swarm_state()
    if state not in ("inactive", "active"):
        pytest.fail(f"this engine cannot run the swarm suite: its swarm state is {state!r}", pytrace=False)
    made_here = state == "inactive"
    envfiles.write_env_files(SWARM_STACK, {"ASGI_PROCESSES": str(WORKERS_PER_REPLICA)})
    envfiles.set_value(SWARM_STACK.env_file("web"), "ASGI_PROCESSES", str(WORKERS_PER_REPLICA))
    try:
        try:
            swarm.up(SWARM_STACK, replicas=REPLICAS)
        except StackError as exc:
            pytest.fail(f"the swarm stack did not come up: {exc}", pytrace=False)
        yield SWARM_STACK
    finally:
        swarm.down(SWARM_STACK, volumes=True, leave=made_here)


@pytest.fixture
def swarm_portal(swarm_stack) -> Portal:
    return Portal.of(swarm_stack).login(*admin_credentials(swarm_stack))
