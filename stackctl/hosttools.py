"""What the host needs besides Docker for the tests, the benchmarks and `make dev`: a few
Debian packages (debootstrap for the base image, PostgreSQL + PostGIS for the local cluster,
Chromium for the browser tests, each installed by what needs it) and the project's Python
environment (.venv, from requirements-dev.txt). Installed on first use, checked cheaply after."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

from stackctl.console import StackError, say
from stackctl.settings import ROOT, versions

VENV = ROOT / ".venv"
REQUIREMENTS = [ROOT / "requirements-dev.txt", ROOT / "images" / "web" / "requirements.txt"]


def postgres_packages() -> list[str]:
    """PostgreSQL and PostGIS of the pinned majors, for the unit suite's and `make dev`'s cluster."""
    pins = versions()
    major = pins["POSTGRES_MAJOR"]
    return [f"postgresql-{major}", f"postgresql-{major}-postgis-{pins['POSTGIS_MAJOR']}"]


def _missing_packages(names) -> list[str]:
    missing = []
    for name in names:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if "ok installed" not in proc.stdout:
            missing.append(name)
    return missing


def _as_root(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", *argv]
    raise StackError(f"need root to run: {' '.join(argv)} (run as root, or install the packages first)")


def ensure_debian_packages(names) -> None:
    missing = _missing_packages(names)
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)} (first time only, a minute or two)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        if subprocess.run(_as_root(argv), env=env, stdout=subprocess.DEVNULL).returncode != 0:
            raise StackError(f"apt-get could not install {' '.join(missing)}: check the apt sources and the network")


def venv_python() -> str:
    """The project venv's python, created or refreshed when its requirements changed."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in REQUIREMENTS)).hexdigest()
    stamp = VENV / ".requirements.sha256"
    python = VENV / "bin" / "python"
    if not python.exists() or not stamp.exists() or stamp.read_text().strip() != digest:
        say("installing requirements-dev.txt into .venv (first time: about a minute)")
        if not python.exists():
            if subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode != 0:
                raise StackError(f"{sys.executable} -m venv failed: install python3-venv (apt-get install python3-venv)")
        for args in (["--upgrade", "pip"], ["-r", str(REQUIREMENTS[0])]):
            if subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args]).returncode != 0:
                raise StackError("pip could not install requirements-dev.txt: see its output above")
        stamp.write_text(digest + "\n")
    return str(python)
