"""Compose for one stack: `docker compose` (v2) where the plugin exists, else
`docker-compose` (v1.29), with the stack's project, env files and image choice in its
environment. docker-compose.yml interpolates nothing else, so a stack is fully named here."""

from __future__ import annotations

import os
import shutil
from functools import cache

from stackctl import docker, images
from stackctl.console import StackError, say
from stackctl.settings import COMPOSE_FILE, Stack


@cache
def command() -> tuple[str, ...]:
    if docker.run(["docker", "compose", "version"], check=False).returncode == 0:
        return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise StackError(
        "neither `docker compose` (v2 plugin) nor `docker-compose` is installed: install one "
        "(Debian: apt-get install docker-compose)"
    )


class Compose:
    def __init__(self, stack: Stack, profiles: tuple[str, ...] = ()):
        self.stack = stack
        # Profiles on top of the image choice's (geoserver) and the stack's (backup, while
        # scheduled): `make backup` runs the backup service whether scheduled or not.
        self.profiles = profiles

    def environment(self) -> dict[str, str]:
        variables = {**os.environ, **images.compose_variables(), **self.stack.compose_variables()}
        profiles = [p for p in variables.get("COMPOSE_PROFILES", "").split(",") if p]
        profiles += [*(["backup"] if self.stack.backup_scheduled else []), *self.profiles]
        variables["COMPOSE_PROFILES"] = ",".join(dict.fromkeys(profiles))
        return variables

    def argv(self, *args: str) -> list[str]:
        return [*command(), "--project-name", self.stack.project, "--file", str(COMPOSE_FILE), *args]

    def __call__(self, *args: str, check: bool = True, capture: bool = True, timeout: float = 600):
        return docker.run(self.argv(*args), env=self.environment(), check=check, capture=capture,
                          timeout=timeout)

    def exec_interactive(self, *args: str):
        """Replaces this process with compose: a terminal, signals and no time limit (logs -f,
        exec into a container)."""
        argv = self.argv(*args)
        os.execvpe(argv[0], argv, self.environment())

    def announce(self) -> None:
        say(f"using `{' '.join(command())}`, project {self.stack.project}, env {self.stack.env_dir_ref}")

    def container_id(self, service: str) -> str:
        """The id of SERVICE's container, running or not ('' when it has none)."""
        proc = docker.docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.stack.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        )
        return (proc.stdout.split() or [""])[0]

    def require_container(self, service: str) -> str:
        cid = self.container_id(service)
        if not cid:
            raise StackError(
                f"service {service!r} has no container in project {self.stack.project!r}: "
                "is the stack up? (make up)"
            )
        return cid

    def containers(self) -> dict[str, str]:
        """{service: container id} for every container of the project."""
        proc = docker.docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.stack.project}")
        return {
            info["Config"]["Labels"]["com.docker.compose.service"]: info["Id"]
            for info in docker.inspect(*proc.stdout.split())
        }

    def state(self, service: str) -> str:
        cid = self.container_id(service)
        return docker.container_state(cid) if cid else "missing"

    def exec(self, service: str, argv, *, user: str | None = None, input: str | None = None,
             check: bool = True, timeout: float = 120) -> str:
        args = ["exec", "-i"] + (["-u", user] if user else []) + [self.require_container(service), *argv]
        return docker.docker(*args, input=input, check=check, timeout=timeout).stdout

    def volumes(self) -> list[str]:
        proc = docker.docker("volume", "ls", "-q", "--filter",
                             f"label=com.docker.compose.project={self.stack.project}")
        return proc.stdout.split()

