"""The running test stack as the suites see it: its containers by service, their effective
environment, a shell inside them, the portal's Django shell, and testinfra hosts.
Compose, health waits and env files are stackctl's; nothing here asserts."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from stackctl import docker, envfiles
from stackctl.compose import Compose
from stackctl.health import wait_healthy
from stackctl.portal import Portal
from stackctl.settings import Stack

# Tethys names an app's persistent store database <app package>_<setting name>.
APP_DB = "dam_inventory_primary_db"
RESULT_MARKER = "@@RESULT@@"
# psql inside the db container, as the image's superuser, over its local socket; PGPASSWORD from
# the container's own env (or *_FILE) in case local connections ask for it.
PSQL = (
    'PGPASSWORD="${POSTGRES_PASSWORD:-$(cat "${POSTGRES_PASSWORD_FILE:-/dev/null}" 2>/dev/null)}" '
    'psql -v ON_ERROR_STOP=1 -X -At -U "${POSTGRES_USER:-postgres}" -d "$0" -c "$1"'
)


class TestStack:
    __test__ = False  # a helper, not a test class

    def __init__(self, stack: Stack):
        self.stack = stack
        self.compose = Compose(stack)

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    def portal(self) -> Portal:
        return Portal.of(self.stack)

    def container_id(self, service: str) -> str:
        return self.compose.require_container(service)

    def containers(self) -> dict[str, str]:
        return self.compose.containers()

    def inspect(self, service: str) -> dict:
        return docker.inspect(self.container_id(service))[0]

    def env(self, service: str) -> dict[str, str]:
        """The container's effective environment (image ENV + compose env_file/environment)."""
        return dict(kv.split("=", 1) for kv in self.inspect(service)["Config"]["Env"])

    def env_file(self, service: str) -> dict[str, str]:
        return envfiles.read_env_file(self.stack.env_file(service))

    def secret(self, service: str, key: str) -> str | None:
        """KEY from the container's env, or the content of KEY_FILE read inside the container."""
        env = self.env(service)
        if env.get(key):
            return env[key]
        if env.get(key + "_FILE"):
            return self.exec(service, ["cat", env[key + "_FILE"]]).strip()
        return None

    def exec(self, service: str, argv, *, input: str | None = None, timeout: float = 120,
             check: bool = True, user: str | None = None) -> str:
        return self.compose.exec(service, argv, user=user, input=input, check=check, timeout=timeout)

    def psql(self, database: str, sql: str, timeout: float = 120) -> str:
        """SQL's output in DATABASE, unaligned, one row a line, fields split by |."""
        return self.exec("db", ["sh", "-c", PSQL, database, sql], timeout=timeout).strip()

    def host(self, service: str):
        import testinfra

        return testinfra.get_host(f"docker://{self.container_id(service)}")

    def health(self, service: str) -> str:
        return self.compose.state(service)

    def wait_healthy(self, *services: str, timeout: float = 180) -> float:
        return wait_healthy(self.compose, services or ("web",), timeout, quiet=True, fail_fast=False)

    # ---- the portal's Django, inside the web container
    def web_python_path(self) -> str:
        tethys = self.exec("web", ["sh", "-c", "command -v tethys"]).strip()
        return str(PurePosixPath(tethys).parent / "python")

    def portal_python(self, code: str, timeout: float = 120):
        """Runs code with Django set up in the web container, as an operator would with
        `tethys manage shell`; the code sets `result` (JSON-able), which is returned."""
        script = (
            "import os, json, django\n"
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tethys_portal.settings')\n"
            "django.setup()\n"
            "result = None\n"
            f"{code}\n"
            f"print({RESULT_MARKER!r} + json.dumps(result))\n"
        )
        out = self.exec("web", [self.web_python_path(), "-"], input=script, timeout=timeout)
        for line in reversed(out.splitlines()):
            if line.startswith(RESULT_MARKER):
                return json.loads(line[len(RESULT_MARKER):])
        raise AssertionError(f"no result from the portal shell; output: {out[-2000:]}")

    def ensure_user(self, username: str, password: str, superuser: bool = False) -> None:
        self.portal_python(
            "from django.contrib.auth.models import User\n"
            f"u, _ = User.objects.get_or_create(username={username!r})\n"
            f"u.set_password({password!r})\n"
            f"u.is_superuser = u.is_staff = {superuser!r}\n"
            "u.is_active = True\n"
            "u.save()\n"
        )

    def get_max_dams_raw(self):
        return self.portal_python(
            "from tethys_apps.models import TethysApp\n"
            "cs = TethysApp.objects.get(package='dam_inventory').custom_settings.get(name='max_dams')\n"
            "result = cs.value\n"
        )

    def set_app_setting_raw(self, name: str, value) -> None:
        """Stores the app's custom setting NAME directly, as `tethys app_settings set` would,
        without restarting anything (web re-applies its env's value at its next start)."""
        self.portal_python(
            "from tethys_apps.models import TethysApp\n"
            f"cs = TethysApp.objects.get(package='dam_inventory').custom_settings.get(name={name!r})\n"
            f"cs.value = {value!r}\n"
            "cs.save()\n"
        )

    def set_max_dams_raw(self, value) -> None:
        """max_dams (None or '' = no limit)."""
        self.set_app_setting_raw("max_dams", value)

    # ---- extra containers beside the stack (another edge, an ACME server)
    def start_beside(self, name: str, image: str, *, alias: str, publish: int | None = None,
                     args: tuple[str, ...] = (), command: tuple[str, ...] = ()) -> int | None:
        """Starts container NAME of IMAGE on the stack's `front` network as ALIAS, publishing
        container port PUBLISH on a free 127.0.0.1 port (returned). It is created on `public`
        first: a port is published only through a network with a route out."""
        project = self.stack.project
        docker.docker("create", "--name", name, "--network", f"{project}_public",
                      *(["-p", f"127.0.0.1::{publish}"] if publish else []), *args, image, *command)
        docker.docker("network", "connect", "--alias", alias, f"{project}_front", name)
        docker.docker("start", name)
        if not publish:
            return None
        return int(docker.docker("port", name, f"{publish}/tcp").stdout.split(":")[-1])
