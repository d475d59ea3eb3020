"""Shared fixtures for the suites that run against the test stack (infra, e2e, browser, backup).

Everything here is lazy (fixtures only: no autouse, no hooks), so a suite that does not ask for
the stack (tests/unit) is not affected if pytest happens to load this file. The helpers live in
stacklib.py (tests/ is on sys.path through tests/pytest-stack.ini's `pythonpath`).
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

try:
    import stacklib
except ImportError:  # loaded without tests/pytest-stack.ini
    sys.path.append(str(Path(__file__).resolve().parent))
    import stacklib

from stacklib import ENV_DIR, PROJECT, Stack, env_file_value, login, run


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running test stack; fails (never skips) when it is not there: with Docker present,
    the stack suites must run."""
    st = Stack()
    try:
        run(["docker", "info"], timeout=30)
    except (AssertionError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"Docker is not usable here, so the stack cannot be tested: {e}")
    try:
        st.wait_healthy("web", timeout=float(os.environ.get("STACK_WAIT", "60")))
    except AssertionError as e:
        pytest.fail(f"test stack {PROJECT!r} is not healthy: {e}. Bring it up with scripts/test.sh.")
    return st


@pytest.fixture(scope="session")
def admin_credentials(stack) -> tuple[str, str]:
    web = stack.env_file("web")
    name = env_file_value(web, "PORTAL_SUPERUSER_NAME")
    password = env_file_value(web, "PORTAL_SUPERUSER_PASSWORD")
    assert name and password, f"PORTAL_SUPERUSER_NAME/_PASSWORD missing from {ENV_DIR}/web.env"
    return name, password


@pytest.fixture(scope="session")
def viewer_credentials(stack) -> tuple[str, str]:
    """A plain portal user without the add_dams permission (created like an operator would)."""
    name, password = "stack-test-viewer", secrets.token_urlsafe(18)
    stack.ensure_user(name, password, superuser=False)
    return name, password


@pytest.fixture
def admin_session(admin_credentials) -> requests.Session:
    return login(*admin_credentials)


@pytest.fixture
def viewer_session(viewer_credentials) -> requests.Session:
    return login(*viewer_credentials)
