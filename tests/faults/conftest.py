"""Fixtures for the fault and bad-input suites: they run against the RUNNING test stack
(`make test` brings it up: project dam-inventory-test, port 18080, ASGI_PROCESSES=3).

They fail, never skip, when the stack is not there: a fault suite that silently skips
proves nothing.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# --import-mode=importlib (tests/pytest-stack.ini) puts nothing on sys.path: add tests/ (for
# stackclient) and this directory (for faultkit) ourselves.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import stackclient as sc  # noqa: E402

SERVICES = ("web", "redis", "db")


@pytest.fixture(scope="session")
def target() -> sc.StackSettings:
    settings = sc.stack_settings()
    try:
        web = sc.container_id(settings.project, "web")
    except Exception as exc:  # no docker, no stack
        pytest.fail(f"the test stack is not up ({exc}); run it through `make test` or scripts/up.sh "
                    f"with COMPOSE_PROJECT_NAME={settings.project}")
    sc.wait_healthy(web, timeout=180)
    return settings


@pytest.fixture
def containers(target) -> dict[str, str]:
    return {name: sc.container_id(target.project, name) for name in SERVICES}


@pytest.fixture(scope="session")
def credentials(target) -> tuple[str, str]:
    return sc.admin_credentials(target)


@pytest.fixture
def portal(target, credentials) -> sc.Portal:
    """A fresh admin session per test (a db or web restart must not leave a stale one)."""
    return sc.Portal(target.base_url).login(*credentials)


@pytest.fixture(scope="session")
def asgi_processes(target) -> int:
    """How many daphne workers the web container runs (X-Asgi-Worker values 1..N)."""
    found = len(sc.daphne_workers(sc.container_id(target.project, "web")))
    wanted = int(os.environ.get("ASGI_PROCESSES", found or 1))
    return found or wanted


@pytest.fixture(autouse=True)
def stack_healthy_after(request, target):
    """Whatever a fault test did (or failed to undo), leave every service running and healthy
    for the next test and the next suite."""
    yield
    for name in SERVICES:
        try:
            cid = sc.container_id(target.project, name)
        except RuntimeError:
            continue
        if not sc.container_state(cid).get("Running"):
            sc.docker("start", cid, check=False)
    for name in SERVICES:
        try:
            sc.wait_healthy(sc.container_id(target.project, name), timeout=180)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"after {request.node.name}, service {name} did not come back: {exc}")
