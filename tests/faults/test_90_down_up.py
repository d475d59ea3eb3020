"""`make down && make up` keeps all data: the dams (with their ids), the admin account.

Runs last (file order): it replaces every container of the test stack.
"""
from __future__ import annotations

import os
import subprocess

from stackctl import docker
from stackctl.portal import Portal, unique_name
from stackctl.settings import ROOT, Stack


def _make(make_target: str, target: Stack, asgi_processes: int) -> None:
    env = dict(os.environ)
    # Exactly the stack under test, whatever the caller's environment says.
    env.update(target.compose_variables(), ASGI_PROCESSES=str(asgi_processes))
    proc = subprocess.run(["make", "--no-print-directory", make_target], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"make {make_target} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"


def test_make_down_then_up_keeps_all_data(target, credentials, portal, asgi_processes):
    portal.add_dam_checked(unique_name("before-down-up"))
    before = sorted((int(d["id"]), d["name"]) for d in portal.dams_since())

    _make("down", target, asgi_processes)
    assert not docker.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={target.project}").stdout.strip(), \
        "make down left containers running"
    _make("up", target, asgi_processes)

    again = Portal.of(target).login(*credentials)  # the admin account survived too
    after = sorted((int(d["id"]), d["name"]) for d in again.dams_since())
    assert after == before, f"dams changed across down/up: lost {set(before) - set(after)}, new {set(after) - set(before)}"
