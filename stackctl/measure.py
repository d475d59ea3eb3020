"""`make measure`: the web image's timings on this machine: image size, first start to healthy
(empty database: roles, migrations, app database), stop (SIGTERM to exit), restart to healthy
(everything in place), and a recreate after changing ASGI_PROCESSES.

Runs a throw-away stack of its own (project MEASURE_NAME, default dam-web-measure; env files
under build/measure/; 127.0.0.1:MEASURE_PORT, default 18095) and removes all of it at the end.
db and redis are started and healthy first; each web timing then runs from the start of its
container (its StartedAt) to healthy, so compose's own start-up is not counted.
Knobs (env): WEB_IMAGE, DB_IMAGE, REDIS_IMAGE (the recorded image choice otherwise),
MEASURE_NAME, MEASURE_PORT, MEASURE_TIMEOUT (seconds per wait, 240).
Timings include the HEALTHCHECK's polling and depend on what else runs on the machine: note
the load average printed with them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from stackctl import docker, images
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.envfiles import set_value, write_env_files
from stackctl.health import wait_healthy
from stackctl.lifecycle import ONE_SHOT, services
from stackctl.settings import BUILD_DIR, Stack

FIRST_ASGI_PROCESSES = "2"
CHANGED_ASGI_PROCESSES = "3"


def started_at(cid: str) -> float:
    """The container's last start, as a Unix time (docker gives RFC 3339 with nanoseconds)."""
    stamp = docker.inspect(cid)[0]["State"]["StartedAt"]
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Measurement:
    def __init__(self, name: str, port: int, timeout: float):
        self.stack = Stack(project=name, env_dir=BUILD_DIR / "measure" / "env", port=port)
        self.compose = Compose(self.stack)
        self.timeout = timeout

    def cleanup(self) -> None:
        if self.stack.env_file("web").is_file():
            self.compose("down", "-v", "--remove-orphans", check=False)
        shutil.rmtree(self.stack.env_dir, ignore_errors=True)

    def start_backing_services(self) -> None:
        backing = [s for s in services(self.compose) if s != "web" and s not in ONE_SHOT]
        say(f"waiting for {' and '.join(backing)} to be healthy")
        self.compose("up", "-d", *backing)
        wait_healthy(self.compose, backing, self.timeout, quiet=True)

    def web_to_healthy(self, setup: bool = False) -> float:
        """Creates web's container if it has none, starts it; seconds from its start to healthy.
        setup: the one-shot setup (roles, migrations, admin, store) runs first, and counts."""
        t0 = time.time()
        if setup:
            self.compose("run", "--rm", "--no-deps", "-T", "setup", timeout=self.timeout)
        self.compose("up", "--no-start", "--no-deps", "web")
        # compose, not `docker start`: compose v1 attaches a container to its second network
        # only when it starts it.
        self.compose("start", "web")
        started = t0 if setup else started_at(self.compose.require_container("web"))
        wait_healthy(self.compose, ["web"], self.timeout, quiet=True)
        return time.time() - started

    def run(self) -> dict[str, float]:
        self.cleanup()
        write_env_files(self.stack, {"ASGI_PROCESSES": FIRST_ASGI_PROCESSES})
        self.start_backing_services()

        say("first start (empty database)")
        first = self.web_to_healthy(setup=True)

        say("restart (nothing to do): stop, then start")
        cid = self.compose.require_container("web")
        t0 = time.monotonic()
        docker.docker("stop", cid, timeout=120)
        stop = time.monotonic() - t0
        restart = self.web_to_healthy()

        say(f"restart with ASGI_PROCESSES={CHANGED_ASGI_PROCESSES} (new container, same database and volume)")
        self.compose("rm", "-s", "-f", "web")
        set_value(self.stack.env_file("web"), "ASGI_PROCESSES", CHANGED_ASGI_PROCESSES)
        changed = self.web_to_healthy()
        check = docker.docker("exec", self.compose.require_container("web"), "tethys-healthcheck", check=False)
        print((check.stdout or "") + (check.stderr or ""), end="", file=sys.stderr)
        return {"first": first, "stop": stop, "restart": restart, "changed": changed}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackctl measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)
    variables = images.compose_variables()
    wanted = [os.environ.get(k) or variables[k] for k in ("WEB_IMAGE", "DB_IMAGE", "REDIS_IMAGE")]
    docker.require()
    for image in wanted:
        if not docker.image_exists(image):
            raise StackError(f"image {image} missing: run make images")
    measurement = Measurement(os.environ.get("MEASURE_NAME") or "dam-web-measure",
                              int(os.environ.get("MEASURE_PORT") or 18095),
                              float(os.environ.get("MEASURE_TIMEOUT") or 240))
    load_before = load_average()
    size_mb = docker.image_size_mb(wanted[0])
    try:
        t = measurement.run()
    finally:
        measurement.cleanup()
    print(f"load average before/after:          {load_before} / {load_average()}")
    print(f"image size:                         {size_mb:.0f} MB")
    print(f"first start to healthy:             {t['first']:.1f} s")
    print(f"stop (SIGTERM to exit):             {t['stop']:.1f} s")
    print(f"restart: start to healthy:          {t['restart']:.1f} s")
    print(f"recreate with ASGI_PROCESSES={CHANGED_ASGI_PROCESSES}:     {t['changed']:.1f} s")
    return 0
