"""Fixtures of the fault and bad-input suites, on the test stack of tests/conftest.py. Each
test leaves every service running and healthy, whatever its fault did, for the next test."""

from __future__ import annotations

import pytest

from stackctl import docker
from stackctl.settings import Stack

SERVICES = ("web", "redis", "db")


@pytest.fixture(scope="session")
def target(stack) -> Stack:
    return stack.stack


@pytest.fixture(scope="session")
def credentials(admin_credentials) -> tuple[str, str]:
    return admin_credentials


@pytest.fixture
def portal(admin_portal):
    return admin_portal


@pytest.fixture
def containers(stack) -> dict[str, str]:
    return {name: stack.container_id(name) for name in SERVICES}


@pytest.fixture(autouse=True)
def stack_healthy_after(request, stack):
    yield
    for name in SERVICES:
        cid = stack.compose.container_id(name)
        if cid and not docker.inspect(cid)[0]["State"]["Running"]:
            docker.docker("start", cid, check=False)
    try:
        stack.wait_healthy(*SERVICES, timeout=180)
    except Exception as exc:
        pytest.fail(f"after {request.node.name}, the services did not come back: {exc}")
