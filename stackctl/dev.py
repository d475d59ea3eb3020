"""`make dev`: the portal with the dam inventory app on this machine, without Docker: one
process (Django's runserver, which daphne turns into an ASGI server), an in-memory channel
layer, and a project-local PostgreSQL + PostGIS (.local/pg, stackctl.localpg).

The portal is set up by the same steps, in the same code, as the web image's Salt states
(images/web/portal_setup.py): database roles, migrations, admin, persistent store service,
link, store database, max_dams. Each step changes only what differs, so a second run is quick.

    python -m stackctl dev          set up, then run in the foreground (Ctrl-C stops)
    python -m stackctl dev check    set up, start in the background, prove that the app page
                                    serves after login and that the WebSocket delivers, stop
Env: DEV_PORT (default 8000), MAX_DAMS (optional value of the app's max_dams setting),
     KEEP_PG=0 to stop PostgreSQL when the portal stops.
State: .local/tethys (TETHYS_HOME: portal_config.yml), .local/dev-* (generated secrets; the
admin's password in .local/dev-admin.txt).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from stackctl import hosttools, localpg
from stackctl.console import StackError, say
from stackctl.envfiles import ensure_secret_file, write_private
from stackctl.settings import ROOT

LOCAL = ROOT / ".local"
TETHYS_HOME = LOCAL / "tethys"
PORTAL_SETUP = ROOT / "images" / "web" / "portal_setup.py"
CLUSTER = "pg"
ADMIN_USER = "admin"
DB_NAME = "tethys_platform"
DB_USER = "tethys_default"
DB_SUPERUSER = "tethys_super"
PS_SERVICE = "dev_primary"
APP = "dam_inventory"
PS_SETTING = "primary_db"
WAIT = 20  # seconds for any single step of the check before it fails (a hang is a failure)


def portal_setup_module():
    """images/web/portal_setup.py, the portal setup the web image runs, as a module."""
    module = sys.modules.get("portal_setup")
    if module is None:
        spec = importlib.util.spec_from_file_location("portal_setup", PORTAL_SETUP)
        module = importlib.util.module_from_spec(spec)
        sys.modules["portal_setup"] = module
        spec.loader.exec_module(module)
    return module


def stored_secret(name: str) -> str:
    """A generated value kept in a 0600 file under .local (never committed), made once."""
    return ensure_secret_file(LOCAL / name)


def write_portal_config(port: int, pg: dict[str, str]) -> None:
    """Rewritten every run: the local cluster's port may have changed."""
    import yaml

    TETHYS_HOME.mkdir(parents=True, exist_ok=True)
    config = {"settings": {
        "SECRET_KEY": stored_secret("dev-secret-key"),
        "DEBUG": True,
        "ALLOWED_HOSTS": ["localhost", "127.0.0.1"],
        "CSRF_TRUSTED_ORIGINS": [f"http://localhost:{port}", f"http://127.0.0.1:{port}"],
        "DATABASES": {"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": DB_NAME, "USER": DB_USER,
            "PASSWORD": stored_secret("dev-db-password"), "HOST": pg["PGHOST"], "PORT": int(pg["PGPORT"]),
        }},
        "CHANNEL_LAYERS": {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    }}
    write_private(TETHYS_HOME / "portal_config.yml", yaml.safe_dump(config))


def install_app() -> bool:
    """The app in editable mode, so a change under app/ shows on the next request; True when
    it was installed now (only a new process sees it)."""
    try:
        spec = importlib.util.find_spec("tethysapp.dam_inventory")
    except ModuleNotFoundError:  # no tethysapp namespace at all yet
        spec = None
    if spec is None or not str(spec.origin or "").startswith(str(ROOT / "app")):
        say("installing the app in editable mode (pip install -e app)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT / "app")],
                       check=True, stdin=subprocess.DEVNULL)
        return True
    return False


def setup_steps(pg: dict[str, str]) -> list[tuple[str, dict]]:
    """The image's steps (salt/tethys/*.sls), with this machine's cluster and secrets."""
    host, port = pg["PGHOST"], int(pg["PGPORT"])
    db_password, super_password = stored_secret("dev-db-password"), stored_secret("dev-db-super-password")
    steps = [
        ("wait_db", {"host": host, "port": port, "username": DB_USER, "dbname": DB_NAME, "password": db_password,
                     "timeout": 30}),
        ("db_roles", {"host": host, "port": port, "name": DB_NAME, "username": DB_USER, "password": db_password,
                      "superuser": DB_SUPERUSER, "superuser_password": super_password,
                      "admin_user": pg["PGUSER"], "admin_password": pg["PGPASSWORD"]}),
        ("store_database", {"host": host, "port": port, "name": f"{APP}_{PS_SETTING}", "owner": DB_SUPERUSER,
                            "password": super_password, "admin_user": pg["PGUSER"],
                            "admin_password": pg["PGPASSWORD"]}),
        ("migrate", {}),
        ("portal_admin", {"name": ADMIN_USER, "email": f"{ADMIN_USER}@localhost",
                          "password": stored_secret("dev-admin.txt")}),
        ("persistent_store_service", {"name": PS_SERVICE, "host": host, "port": port, "username": DB_SUPERUSER,
                                      "password": super_password}),
        ("persistent_store_link", {"app": APP, "setting": PS_SETTING, "service": PS_SERVICE}),
        ("persistent_store_synced", {"app": APP, "setting": PS_SETTING}),
    ]
    if os.environ.get("MAX_DAMS"):
        steps.append(("app_setting", {"app": APP, "name": "max_dams", "value": os.environ["MAX_DAMS"]}))
    return steps


def set_up(port: int) -> dict[str, str]:
    """Everything `make dev` needs; returns the environment the portal runs with."""
    pg = localpg.ensure_cluster(CLUSTER)
    write_portal_config(port, pg)
    os.environ.update(TETHYS_HOME=str(TETHYS_HOME), DJANGO_SETTINGS_MODULE="tethys_portal.settings")
    setup = portal_setup_module()
    for step, params in setup_steps(pg):
        try:
            outcome = setup.apply(step, **params)
        except setup.StepError as exc:
            raise StackError(f"{step}: {exc}") from None
        say(f"{step}: {outcome.comment}" + (f" {json.dumps(outcome.changes)}" if outcome.changes else ""))
    bin_dir = str(Path(sys.executable).parent)
    # the tethys CLI's own subprocesses need the venv first on PATH
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                VIRTUAL_ENV=str(Path(sys.executable).parent.parent))


def print_login(port: int) -> None:
    say("------------------------------------------------------------------")
    say(f" URL:      http://127.0.0.1:{port}/apps/dam-inventory/")
    say(f" login:    {ADMIN_USER} / {stored_secret('dev-admin.txt')}   (saved in .local/dev-admin.txt)")
    say("------------------------------------------------------------------")


def start_command(port: int) -> list[str]:
    return [str(Path(sys.executable).parent / "tethys"), "manage", "start", "-p", f"127.0.0.1:{port}"]


def run_portal(port: int, env: dict[str, str]) -> int:
    print_login(port)
    try:
        return subprocess.run(start_command(port), env=env, stdin=subprocess.DEVNULL).returncode
    except KeyboardInterrupt:
        return 0


def wait_http(base: str, proc: subprocess.Popen, timeout: float = 60) -> bool:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.get(f"{base}/accounts/login/", timeout=2).raise_for_status()
            return True
        except requests.RequestException:
            time.sleep(1)
    return False


def check_portal(port: int, env: dict[str, str]) -> int:
    base = f"http://127.0.0.1:{port}"
    logfile = LOCAL / "dev-check.log"
    say(f"starting the portal in the background (log: {logfile})")
    with open(logfile, "w") as log:
        # its own session: runserver's autoreloader child is stopped together with it
        proc = subprocess.Popen(start_command(port), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_http(base, proc):
            say("\n".join(logfile.read_text().splitlines()[-20:]))
            raise StackError(f"the portal did not answer on port {port}")
        run_checks(base, ADMIN_USER, stored_secret("dev-admin.txt"))
        say("all checks passed")
        return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        say("portal stopped")


def ok(message: str) -> None:
    say(f"ok: {message}")


def run_checks(base: str, user: str, password: str) -> None:
    """Logs in, loads the app page and the JS client, then the WebSocket: a dam added and
    deleted through the forms is notified, an anonymous socket is closed with 4401 and a
    foreign Origin is refused."""
    from stackctl.portal import APP_PATH, Portal

    portal = Portal(base, timeout=WAIT).login(user, password)
    ok(f"logged in as {user}")
    page = portal.get(APP_PATH)
    match = re.search(r'data-ws-path="([^"]+)"', page.text)
    if page.status_code != 200 or not match:
        raise StackError(f"app page answered {page.status_code} without the client's data-ws-path")
    ok(f"app page served ({len(page.content)} bytes)")
    js = portal.get("/static/dam_inventory/js/dam_inventory.js")
    if js.status_code != 200 or "WebSocket" not in js.text:
        raise StackError(f"JS client not served (HTTP {js.status_code})")
    ok("JS client served")
    asyncio.run(check_sockets(portal, base.replace("http", "ws", 1) + match.group(1)))


async def check_sockets(portal, ws_url: str) -> None:
    import websockets

    from stackctl.portal import ADD_PATH, APP_PATH, dam_form

    base = portal.base_url
    async with websockets.connect(ws_url, origin=base, additional_headers={"Cookie": portal.cookie_header},
                                  open_timeout=WAIT) as ws:
        await ws.send("ping")
        if await asyncio.wait_for(ws.recv(), WAIT) != "pong":
            raise StackError("no pong on the notifications socket")
        ok(f"WebSocket connected: {ws_url}")
        resp = portal.post(ADD_PATH, dam_form("Dev check dam"))
        if resp.status_code != 302:
            raise StackError(f"add dam answered {resp.status_code}")
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if message.get("event") != "dam_added" or message["dam"]["name"] != "Dev check dam":
            raise StackError(f"unexpected notification {message}")
        dam_id = message["dam"]["id"]
        ok(f"notification received for dam id {dam_id}")
        resp = portal.post(f"{APP_PATH}dams/{dam_id}/delete/")
        deleted = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if resp.status_code != 302 or deleted.get("event") != "dam_deleted":
            raise StackError(f"delete answered {resp.status_code}, notification {deleted}")
        ok("deletion notified")

    async with websockets.connect(ws_url, origin=base, open_timeout=WAIT) as anonymous:
        try:
            await asyncio.wait_for(anonymous.recv(), WAIT)
            raise StackError("anonymous socket got a message")
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is None or closed.rcvd.code != 4401:
                raise StackError(f"anonymous socket closed with {closed.rcvd}") from None
    ok("anonymous socket closed with 4401")

    try:
        async with websockets.connect(ws_url, origin="http://evil.example.com",
                                      additional_headers={"Cookie": portal.cookie_header}, open_timeout=WAIT):
            raise StackError("a foreign Origin was accepted")
    except websockets.InvalidStatus as refused:
        ok(f"foreign Origin refused (HTTP {refused.response.status_code})")


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "run"
    if mode not in ("run", "check"):
        say("usage: python -m stackctl dev [run|check]")
        return 2
    python = hosttools.venv_python()
    # Tethys, Django and the app's dependencies live in the project venv, and an app installed
    # just now is importable only in a new process.
    if Path(sys.prefix).resolve() != hosttools.VENV.resolve() or install_app():
        os.chdir(ROOT)
        os.execv(python, [python, "-m", "stackctl", "dev", *argv])
    port = int(os.environ.get("DEV_PORT") or 8000)
    try:
        env = set_up(port)
        return run_portal(port, env) if mode == "run" else check_portal(port, env)
    except StackError as exc:
        say(f"ERROR: {exc}")
        return 1
    finally:
        if os.environ.get("KEEP_PG", "1") == "0":
            localpg.stop_cluster(CLUSTER)
