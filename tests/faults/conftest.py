"""Fixtures of the fault and bad-input suites, on the test stack of tests/conftest.py. Each
test leaves every service running and healthy, whatever its fault did, for the next test.

The property-based bad-input tests are also a fuzz campaign (`make fuzz`: the thorough
profile): every generated input is counted and the counts are printed at the end; the run fails
when FUZZ_MIN_INPUTS is set and fewer were tried; and around each property the app's tables are
read straight from the database, since every input it generates is one the portal must refuse
(nothing may have been written, not even part of a dam)."""

from __future__ import annotations

import collections
import functools
import os
from pathlib import Path

import pytest

from stackctl import docker
from stackctl.settings import TEST_STACK, Stack
from tests.stack import APP_DB, TestStack

SERVICES = ("web", "redis", "db")
FAULTS = Path(__file__).resolve().parent
FUZZ_MIN_INPUTS = int(os.environ.get("FUZZ_MIN_INPUTS") or 0)
INPUTS: collections.Counter[str] = collections.Counter()
MISSED = pytest.StashKey[int]()
# What any accepted write would change: dams, hydrograph points, the outbox.
WRITTEN = ("SELECT (SELECT count(*) FROM dams) || ' dams, ' || (SELECT count(*) FROM hydrograph_points) "
           "|| ' hydrograph points, last event ' || (SELECT coalesce(max(seq), 0) FROM dam_events)")


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


# ----------------------------------------------------------------------------- fuzz campaign
def _property(item) -> bool:
    """A Hypothesis test of this folder."""
    return hasattr(getattr(item, "obj", None), "hypothesis") and FAULTS in Path(item.fspath).resolve().parents


def _count_inputs(test) -> None:
    """Wraps the test's per-input body (Hypothesis' documented `inner_test` hook) to count."""
    inner = test.hypothesis.inner_test
    if getattr(inner, "counted", False):
        return  # a parametrized test: one function, wrapped once

    @functools.wraps(inner)
    def counted(*args, **kwargs):
        INPUTS[test.__name__] += 1
        return inner(*args, **kwargs)

    counted.counted = True
    test.hypothesis.inner_test = counted


def pytest_collection_modifyitems(items):
    for item in items:
        if _property(item):
            _count_inputs(item.obj)


def _written() -> str:
    return TestStack(TEST_STACK).psql(APP_DB, WRITTEN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Around each property (its whole batch of inputs, after its fixtures made what they
    need): the app's tables are unchanged."""
    if not _property(item):
        return (yield)
    before = _written()
    result = yield
    after = _written()
    assert after == before, f"{item.name}: refused inputs wrote to the app's tables: {before} -> {after}"
    return result


def pytest_sessionfinish(session):
    total = sum(INPUTS.values())
    if INPUTS and total < FUZZ_MIN_INPUTS:
        session.config.stash[MISSED] = total
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    if not INPUTS:
        return
    profile = os.environ.get("HYPOTHESIS_PROFILE", "stack")
    terminalreporter.write_sep("-", f"bad inputs tried (Hypothesis profile {profile})")
    for name, count in INPUTS.most_common():
        terminalreporter.write_line(f"{count:>8,}  {name}")
    terminalreporter.write_line(f"{sum(INPUTS.values()):>8,}  in all")
    if MISSED in config.stash:
        terminalreporter.write_line(f"FAILED: {config.stash[MISSED]:,} inputs, fewer than FUZZ_MIN_INPUTS="
                                    f"{FUZZ_MIN_INPUTS:,}", red=True)
