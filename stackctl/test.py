"""`make test`: the suites as ONE pytest run (tests/, ordered and marked by tests/conftest.py)
in the project's .venv, made on first use; the Debian packages a suite needs are installed by
that suite's fixtures. Arguments go to pytest:
`python -m stackctl test -m "not stack"`, `python -m stackctl test tests/e2e`."""

from __future__ import annotations

import os

from stackctl import hosttools
from stackctl.settings import ROOT


def main(argv: list[str]) -> int:
    python = hosttools.venv_python()
    os.chdir(ROOT)
    os.execv(python, [python, "-m", "pytest", *argv])
