"""`make test`: installs what the suites need on this host, then runs them all as ONE pytest
run (tests/, ordered and marked by tests/conftest.py). Arguments go to pytest:
`python -m stackctl test -m "not stack"`, `python -m stackctl test tests/e2e`."""

from __future__ import annotations

import os

from stackctl import hosttools
from stackctl.settings import ROOT


def main(argv: list[str]) -> int:
    hosttools.ensure_debian_packages(hosttools.test_packages())
    python = hosttools.venv_python()
    os.chdir(ROOT)
    os.execv(python, [python, "-m", "pytest", *argv])
