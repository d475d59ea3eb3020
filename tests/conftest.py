"""One pytest run for every suite (`make test`). This file owns:

- the order and markers of the suites: static, unit, then the suites on the test stack
  (infra, e2e, browser, faults, soak, and backup last, since it re-creates the stack); select
  with a path (`make test ARGS=tests/e2e`) or a marker (`ARGS='-m "not stack"'`);
- the rule that only GeoServer may be skipped: it cannot exist on a machine without a
  registry; any other skip is reported as a failure;
- the session fixtures: `web_image` builds every image, `stack` brings the test stack up
  once (fresh volumes, three workers) and removes it at the end. With Docker present, a
  stack that does not come up fails every test that needs it: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import pytest

from stackctl import docker, envfiles, images
from stackctl.console import StackError
from stackctl.envfiles import random_secret
from stackctl.lifecycle import up
from stackctl.portal import Portal
from stackctl.portal import admin_credentials as stack_admin
from stackctl.settings import BUILD_DIR, TEST_ASGI_PROCESSES, TEST_STACK
from tests.stack import TestStack

TESTS = Path(__file__).resolve().parent
SUITES = ("static", "unit", "infra", "e2e", "browser", "faults", "soak", "backup", "swarm")
STACK_SUITES = {"infra", "e2e", "browser", "faults", "soak", "backup"}
ALLOWED_SKIP = re.compile(r"geoserver", re.IGNORECASE)
RESULTS = BUILD_DIR / "test-results"
MISSING_SUITES = pytest.StashKey[list]()


def _suite(item: pytest.Item) -> str:
    return Path(item.fspath).resolve().relative_to(TESTS).parts[0]


def pytest_collection_modifyitems(config, items):
    for item in items:
        suite = _suite(item)
        item.add_marker(suite)
        if suite in STACK_SUITES:
            item.add_marker("stack")
    # Stable: within a suite, files and tests keep their order.
    items.sort(key=lambda item: SUITES.index(_suite(item)) if _suite(item) in SUITES else len(SUITES))


@pytest.fixture(autouse=True)
def _stack_suites_get_the_stack(request):
    """A test of a stack suite runs against the stack even when it names no fixture of it."""
    if request.node.get_closest_marker("stack"):
        request.getfixturevalue("stack")


def _full_run(config) -> bool:
    """No selection: every suite must then run at least one test."""
    narrowed = config.getoption("keyword") or config.getoption("markexpr") or config.getoption("lf", False)
    return not narrowed and all(Path(arg).resolve() == TESTS for arg in config.args)


def pytest_sessionfinish(session, exitstatus):
    if not _full_run(session.config):
        return
    ran = {_suite(item) for item in session.items}
    missing = [suite for suite in SUITES if suite not in ran]
    if missing:
        session.config.stash[MISSING_SUITES] = missing
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    missing = config.stash.get(MISSING_SUITES, None)
    if missing:
        terminalreporter.write_line(f"FAILED: these suites ran no test: {', '.join(missing)}", red=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not ALLOWED_SKIP.search(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped, but only GeoServer's tests may skip: {reason}"


@contextlib.contextmanager
def shown(request):
    """Lets a long step's progress (image builds, the stack coming up) reach the terminal,
    which pytest's output capture would otherwise hold back until the end."""
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(file=sys.stderr)
        yield


def _require_docker() -> None:
    if not docker.usable():
        pytest.fail(docker.DOCKER_MISSING, pytrace=False)


@pytest.fixture(scope="session")
def web_image(request) -> str:
    """Every image of the stack, built (or pulled) as `make up` would; the web image's name."""
    _require_docker()
    try:
        with shown(request):
            images.prepare()
    except StackError as exc:
        pytest.fail(f"the images could not be built: {exc}", pytrace=False)
    return images.compose_variables()["WEB_IMAGE"]


def _save_logs(stack: TestStack) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = stack.compose("logs", "--no-color", "--timestamps", check=False)
    (RESULTS / "stack.log").write_text((logs.stdout or "") + (logs.stderr or ""))


# Settings of the test stack's web that suites prove: the fan-out across this many workers
# (ASGI_PROCESSES, above), the official image's site, e-mail, sign-in provider and catch-all
# settings (tests/e2e/test_portal_settings.py; SMTP_SINK is the SMTP server that test starts).
SMTP_SINK = "smtp-sink"
# The OpenID Connect provider tests/e2e/test_portal_settings.py starts beside the stack (its
# name on the stack's network, and the client the portal is registered as there).
IDP_HOST = "idp:9000"
IDP_CLIENT_ID = "dam-inventory-portal"
IDP_CLIENT_SECRET = "test-only-client-secret"
TEST_WEB_SETTINGS = {
    "SITE_TITLE": "Dams of the Test Basin",
    "PRIMARY_COLOR": "#7a3b8f",
    "EMAIL_HOST": SMTP_SINK,
    "EMAIL_PORT": "1025",
    "DEFAULT_FROM_EMAIL": "portal@dam-inventory.test",
    "OTHER_SETTINGS": "--set DAM_INVENTORY_OTHER_SETTINGS_PROOF '[42, proven]'",
    "ADD_BACKENDS": "social_core.backends.github.GithubOAuth2,social_core.backends.open_id_connect.OpenIdConnectAuth",
    "OAUTH_OPTIONS": ("{SOCIAL_AUTH_GITHUB_KEY: test-client-id, SOCIAL_AUTH_GITHUB_SECRET: test-client-secret, "
                      f"SOCIAL_AUTH_OIDC_OIDC_ENDPOINT: 'http://{IDP_HOST}/o', SOCIAL_AUTH_OIDC_KEY: {IDP_CLIENT_ID}, "
                      f"SOCIAL_AUTH_OIDC_SECRET: {IDP_CLIENT_SECRET}}}"),
}


@pytest.fixture(scope="session")
def stack(web_image, request) -> TestStack:
    """The test stack, fresh: project dam-inventory-test on 127.0.0.1:18443 (HTTPS), env/test, three
    workers of the ASGI_SERVER the caller's environment names, else the example's. It is removed
    with its volumes at the end, also when it failed to come up; KEEP_STACK=1 leaves it up."""
    test_stack = TestStack(TEST_STACK)
    test_stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
    # The suites run on the example's ASGI_SERVER unless the caller's environment names another
    # (ASGI_SERVER=uvicorn make test).
    workers = {"ASGI_PROCESSES": str(TEST_ASGI_PROCESSES),
               "ASGI_SERVER": os.environ.get("ASGI_SERVER") or envfiles.example_value("web", "ASGI_SERVER")}
    try:
        try:
            envfiles.write_env_files(TEST_STACK, workers)
            # Set whatever env/test/web.env (kept between runs) was edited to since.
            for key, value in {**workers, **TEST_WEB_SETTINGS}.items():
                envfiles.set_value(TEST_STACK.env_file("web"), key, value)
            with shown(request):
                up(TEST_STACK, workers)
        except StackError as exc:
            pytest.fail(f"the test stack did not come up: {exc}\n(logs: {RESULTS / 'stack.log'})", pytrace=False)
        yield test_stack
    finally:
        _save_logs(test_stack)
        if os.environ.get("KEEP_STACK") != "1":
            test_stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)


@pytest.fixture(scope="session")
def admin_credentials(stack) -> tuple[str, str]:
    return stack_admin(stack.stack)


@pytest.fixture(scope="session")
def viewer_credentials(stack) -> tuple[str, str]:
    """A plain portal user without the add_dams permission (created as an operator would)."""
    name, password = "stack-test-viewer", random_secret()
    stack.ensure_user(name, password, superuser=False)
    return name, password


@pytest.fixture(scope="session")
def asgi_processes(stack) -> int:
    """How many ASGI workers the web container runs (X-Asgi-Worker values 1..N)."""
    return len(docker.asgi_workers(stack.container_id("web")))


@pytest.fixture
def admin_portal(stack, admin_credentials) -> Portal:
    """A fresh admin session per test (a restart must not leave a stale one)."""
    return stack.portal().login(*admin_credentials)


@pytest.fixture
def viewer_portal(stack, viewer_credentials) -> Portal:
    return stack.portal().login(*viewer_credentials)
