"""Helpers for the suites that run against the test stack (infra, e2e, browser, backup): env
files, docker/compose, the portal shell, HTTP through nginx, WebSocket payloads.

The stack is the one scripts/test.sh brings up:
  ENV_DIR=env/test COMPOSE_PROJECT_NAME=dam-inventory-test WEB_PORT=18080 scripts/up.sh
The same variables, if set, point these tests at another stack.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import time
import uuid
from pathlib import Path, PurePosixPath

import requests

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = (ROOT / os.environ.get("ENV_DIR", "env/test")).resolve()
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "dam-inventory-test")
WEB_PORT = int(os.environ.get("WEB_PORT", "18080"))
# The published port is bound to loopback only (WEB_BIND): load never leaves this machine.
BASE_URL = f"http://127.0.0.1:{WEB_PORT}"
WS_BASE = f"ws://127.0.0.1:{WEB_PORT}"
APP_PATH = "/apps/dam-inventory/"
ADD_PATH = APP_PATH + "dams/add/"
WS_PATH = APP_PATH + "dams/notifications/ws/"
LOGIN_PATH = "/accounts/login/"
APP_DB = "dam_inventory_primary_db"  # Tethys names a persistent store <app package>_<setting>

# Env keys whose values are secrets; *_FILE keys name a file instead and are handled apart.
SECRET_KEY_RE = re.compile(r"(PASSWORD|_PASS|SECRET|SECRET_KEY|TOKEN|PRIVATE_KEY)$")
MIN_SECRET_LEN = 8  # shorter values ("postgres", ports) would match by accident anywhere


# --------------------------------------------------------------------------------------------
# env files
# --------------------------------------------------------------------------------------------
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker/compose read them (comments, blank lines, optional quotes)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def env_file_value(values: dict[str, str], key: str, base: Path = ROOT) -> str | None:
    """A value or, when only KEY_FILE is given, the content of that file (host path)."""
    if values.get(key):
        return values[key]
    path = values.get(key + "_FILE")
    if path:
        for candidate in (Path(path), base / path):
            if candidate.is_file():
                return candidate.read_text().strip()
    return None


def secret_values(dirs: list[Path]) -> dict[str, str]:
    """{value: 'file:KEY'} for every secret found in the env files of the given directories."""
    found: dict[str, str] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.env")):
            values = read_env_file(path)
            for key in values:
                name = key[: -len("_FILE")] if key.endswith("_FILE") else key
                if not SECRET_KEY_RE.search(name):
                    continue
                value = env_file_value(values, name, base=ROOT)
                if value and len(value) >= MIN_SECRET_LEN:
                    found[value] = f"{path.relative_to(ROOT)}:{name}"
        # Docker secrets written by scripts/gen-env.sh: every file there is a secret
        for path in sorted((directory / "secrets").glob("*")):
            if path.is_file() and not path.name.startswith("."):
                value = path.read_text().strip()
                if len(value) >= MIN_SECRET_LEN:
                    found.setdefault(value, str(path.relative_to(ROOT)))
    return found


# --------------------------------------------------------------------------------------------
# docker / compose
# --------------------------------------------------------------------------------------------
def stack_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ENV_DIR=os.path.relpath(ENV_DIR, ROOT),
        COMPOSE_PROJECT_NAME=PROJECT,
        WEB_PORT=str(WEB_PORT),
    )
    return env


def run(argv, *, input: str | bytes | None = None, timeout: float = 120, check: bool = True,
        cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    proc = subprocess.run(
        [str(a) for a in argv], input=input, capture_output=True, text=text,
        timeout=timeout, cwd=cwd, env=env or stack_env(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {shlex.join(map(str, argv))}\n"
            f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
        )
    return proc


def compose(*args: str, timeout: float = 300) -> str:
    return run([ROOT / "scripts/compose.sh", *args], timeout=timeout).stdout


def docker_inspect(*ids: str) -> list[dict]:
    return json.loads(run(["docker", "inspect", *ids]).stdout)


class Stack:
    """The running test stack: containers by service, effective env, HTTP and shell helpers."""

    def container_id(self, service: str) -> str:
        cid = compose("ps", "-q", service).strip()
        if not cid:
            raise AssertionError(
                f"service {service!r} has no container in project {PROJECT!r}: "
                f"is the test stack up? (scripts/test.sh brings it up)"
            )
        return cid.splitlines()[0]

    def containers(self) -> dict[str, str]:
        """{service: container id} for every container of the project, running or not."""
        ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout.split()
        out = {}
        for info in docker_inspect(*ids) if ids else []:
            out[info["Config"]["Labels"]["com.docker.compose.service"]] = info["Id"]
        return out

    def inspect(self, service: str) -> dict:
        return docker_inspect(self.container_id(service))[0]

    def env(self, service: str) -> dict[str, str]:
        """The container's effective environment (image ENV + compose env_file/environment)."""
        return dict(kv.split("=", 1) for kv in self.inspect(service)["Config"]["Env"])

    def secret(self, service: str, key: str) -> str | None:
        """KEY from the container's env, or the content of KEY_FILE read inside the container."""
        env = self.env(service)
        if env.get(key):
            return env[key]
        if env.get(key + "_FILE"):
            return self.exec(service, ["cat", env[key + "_FILE"]]).strip()
        return None

    def env_file(self, service: str) -> dict[str, str]:
        return read_env_file(ENV_DIR / f"{service}.env")

    def host(self, service: str):
        import testinfra  # only the infra suite needs it

        return testinfra.get_host(f"docker://{self.container_id(service)}")

    def exec(self, service: str, argv, *, input: str | None = None, timeout: float = 120,
             check: bool = True, user: str | None = None) -> str:
        cmd = ["docker", "exec", "-i"] + (["-u", user] if user else []) + [self.container_id(service), *argv]
        proc = run(cmd, input=input, timeout=timeout, check=check)
        return proc.stdout

    def health(self, service: str) -> str:
        state = self.inspect(service)["State"]
        return (state.get("Health") or {}).get("Status") or state.get("Status", "?")

    def wait_healthy(self, service: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            try:
                status = self.health(service)
            except AssertionError:
                status = "no container"
            if status == "healthy":
                return
            time.sleep(2)
        raise AssertionError(f"{service} not healthy after {timeout:.0f} s (last status: {status})")

    # ---- inside the web container ------------------------------------------------------
    def web_python_path(self) -> str:
        """The python of the venv that holds tethys in the web image."""
        tethys = self.exec("web", ["sh", "-c", "command -v tethys"]).strip()
        if not tethys:
            raise AssertionError("no `tethys` on PATH in the web container")
        return str(PurePosixPath(tethys).parent / "python")

    def portal_python(self, code: str, timeout: float = 120) -> dict:
        """Runs code with Django set up in the web container; the code sets `result` (JSON-able),
        which is returned. Used for test users and app settings, as an operator would do
        with `tethys manage shell`."""
        marker = "@@RESULT@@"
        script = (
            "import os, json, django\n"
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tethys_portal.settings')\n"
            "django.setup()\n"
            "result = None\n"
            f"{code}\n"
            f"print({marker!r} + json.dumps(result))\n"
        )
        out = self.exec("web", [self.web_python_path(), "-"], input=script, timeout=timeout)
        for line in reversed(out.splitlines()):
            if line.startswith(marker):
                return json.loads(line[len(marker):])
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

    def set_max_dams_raw(self, value) -> None:
        """Sets the stored value directly (None or '' = no limit), as `tethys app_settings set`
        would, without restarting anything: the app reads it per request."""
        self.portal_python(
            "from tethys_apps.models import TethysApp\n"
            "cs = TethysApp.objects.get(package='dam_inventory').custom_settings.get(name='max_dams')\n"
            f"cs.value = {value!r}\n"
            "cs.save()\n"
        )


# --------------------------------------------------------------------------------------------
# HTTP through nginx
# --------------------------------------------------------------------------------------------
CSRF_INPUT_RE = re.compile(r'name=["\']csrfmiddlewaretoken["\']\s+value=["\']([^"\']+)["\']'
                           r'|value=["\']([^"\']+)["\']\s+name=["\']csrfmiddlewaretoken["\']')


def csrf_from(html: str, session: requests.Session) -> str:
    m = CSRF_INPUT_RE.search(html)
    if m:
        return m.group(1) or m.group(2)
    token = session.cookies.get("csrftoken")
    if not token:
        raise AssertionError("no CSRF token in the page nor in a cookie")
    return token


def new_session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
    return s


def login(username: str, password: str) -> requests.Session:
    """Django's login form at /accounts/login/, with its CSRF token, through nginx."""
    s = new_session()
    page = s.get(BASE_URL + LOGIN_PATH, timeout=30)
    assert page.status_code == 200, f"login page: HTTP {page.status_code}"
    resp = s.post(
        BASE_URL + LOGIN_PATH,
        data={
            "csrfmiddlewaretoken": csrf_from(page.text, s),
            "username": username,
            "password": password,
            "login-submit": "login-submit",
        },
        headers={"Referer": BASE_URL + LOGIN_PATH, "Origin": BASE_URL},
        timeout=30,
    )
    assert resp.status_code == 200, f"login POST: HTTP {resp.status_code}"
    assert s.cookies.get("sessionid"), f"login as {username!r} failed: no session cookie (final URL {resp.url})"
    return s


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def unique_name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def dam_form(name: str, *, owner: str = "Reclamation", river: str = "Test River",
             date_built: str = "2001-02-03", lon: float = -111.65, lat: float = 40.25,
             geometry: str | None = None) -> dict[str, str]:
    """The tutorial's form contract: name, owner, river, date-built, geometry, add-button."""
    if geometry is None:
        geometry = json.dumps({"type": "Point", "coordinates": [lon, lat]})
    return {"name": name, "owner": owner, "river": river, "date-built": date_built,
            "geometry": geometry, "add-button": "add-button"}


def post_dam(session: requests.Session, form: dict[str, str]) -> requests.Response:
    page = session.get(BASE_URL + ADD_PATH, timeout=30)
    token = csrf_from(page.text, session) if page.status_code == 200 else session.cookies.get("csrftoken", "")
    return session.post(
        BASE_URL + ADD_PATH,
        data={"csrfmiddlewaretoken": token, **form},
        headers={"Referer": BASE_URL + ADD_PATH, "Origin": BASE_URL},
        allow_redirects=False,
        timeout=30,
    )


def add_dam(session: requests.Session, name: str, **kw) -> dict[str, str]:
    form = dam_form(name, **kw)
    resp = post_dam(session, form)
    assert resp.status_code in (302, 303), (
        f"adding dam {name!r} was not accepted: HTTP {resp.status_code}\n{resp.text[:1500]}"
    )
    return form


def dam_names_on_page(session: requests.Session) -> str:
    """The HTML of the app's pages that list dams (home and the dams list)."""
    text = ""
    for path in (APP_PATH + "dams/", APP_PATH):
        r = session.get(BASE_URL + path, timeout=30)
        if r.status_code == 200:
            text += r.text
    return text


# --------------------------------------------------------------------------------------------
# WebSocket messages
# --------------------------------------------------------------------------------------------
def json_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


def message_mentions(raw: str | bytes, name: str) -> bool:
    """True when a notification carries the dam `name` as a value (any payload shape)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return name in json_strings(json.loads(raw))
    except ValueError:
        return name in raw
