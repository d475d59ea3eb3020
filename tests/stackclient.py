"""Client helpers for the suites that talk to a RUNNING stack (faults, bad input, bench, e2e).

Everything goes to the stack's published port on 127.0.0.1; Docker is driven through the
`docker` CLI with the compose labels, so it works with compose v1 and v2 alike.

Shared by tests/faults, tests/bench and whoever else wants them (import `stackclient`
after putting tests/ on sys.path, as tests/faults/conftest.py does). Nothing here asserts:
the helpers return what they saw and the tests decide.

Settings come from the same env variables `make test` uses:
  WEB_PORT (18080), COMPOSE_PROJECT_NAME (dam-inventory-test), ENV_DIR (env/test),
  STACK_URL (overrides http://127.0.0.1:$WEB_PORT).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import requests

from stacklib import read_env_file  # one parser of env files for every suite

REPO_ROOT = Path(__file__).resolve().parents[1]

# The app's URLs (docs/architecture.md, app/README.md).
APP_ROOT = "/apps/dam-inventory/"
LOGIN_PATH = "/accounts/login/"
ADD_PATH = APP_ROOT + "dams/add/"
WS_PATH = APP_ROOT + "dams/notifications/ws/"
# The catch-up endpoint (app controllers.dams_since): GET ?since=<id> ->
# {"dams": [...], "deleted": [...], "last_id": N, ...}, the dams with id > since, ordered by id.
CATCHUP_PATH = APP_ROOT + "dams/since/"
HYDROGRAPH_ASSIGN_PATH = APP_ROOT + "hydrographs/assign/"


def dam_json_path(dam_id: int) -> str:
    return f"{APP_ROOT}dams/{dam_id}/json/"
WORKER_HEADER = "X-Asgi-Worker"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class StackSettings:
    project: str
    env_dir: Path
    base_url: str

    @property
    def host_port(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def ws_url(self) -> str:
        return "ws://" + self.host_port + WS_PATH


def stack_settings(
    project: str | None = None, port: str | int | None = None, env_dir: str | None = None
) -> StackSettings:
    project = project or os.environ.get("COMPOSE_PROJECT_NAME", "dam-inventory-test")
    port = port or os.environ.get("WEB_PORT", "18080")
    env_dir = env_dir or os.environ.get("ENV_DIR", "env/test")
    env_path = Path(env_dir)
    if not env_path.is_absolute():
        env_path = REPO_ROOT / env_path
    base = os.environ.get("STACK_URL") if project == os.environ.get("COMPOSE_PROJECT_NAME") else None
    return StackSettings(project, env_path, (base or f"http://127.0.0.1:{port}").rstrip("/"))


def env_secret(env: dict[str, str], name: str, env_dir: Path | None = None) -> str | None:
    """NAME, or the content of the file NAME_FILE names (the image's secret convention; on the
    host that path is relative to the repository), or ${ENV_DIR}/secrets/<name> (gen-env.sh)."""
    if env.get(name):
        return env[name]
    candidates = []
    if env.get(name + "_FILE"):
        path = Path(env[name + "_FILE"])
        candidates += [path, REPO_ROOT / path]
    if env_dir is not None:
        candidates.append(env_dir / "secrets" / name.lower())
    for path in candidates:
        if path.is_file():
            return path.read_text().strip()
    return None


def admin_credentials(settings: StackSettings) -> tuple[str, str]:
    """The portal admin of the stack: PORTAL_SUPERUSER_NAME and _PASSWORD from the environment
    when both are set, otherwise from its generated web.env (never committed)."""
    if os.environ.get("PORTAL_SUPERUSER_NAME") and os.environ.get("PORTAL_SUPERUSER_PASSWORD"):
        return os.environ["PORTAL_SUPERUSER_NAME"], os.environ["PORTAL_SUPERUSER_PASSWORD"]
    env = read_env_file(settings.env_dir / "web.env")
    user = os.environ.get("PORTAL_SUPERUSER_NAME") or env.get("PORTAL_SUPERUSER_NAME") or "admin"
    password = os.environ.get("PORTAL_SUPERUSER_PASSWORD") or env_secret(env, "PORTAL_SUPERUSER_PASSWORD", settings.env_dir)
    if not password:
        raise RuntimeError(
            f"no PORTAL_SUPERUSER_PASSWORD in {settings.env_dir}/web.env: "
            "bring the stack up with scripts/up.sh (it generates the env files) or export it"
        )
    return user, password


# --------------------------------------------------------------------------- docker


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], check=check, capture_output=True, text=True, timeout=timeout
    )


def container_id(project: str, service: str, *, running_only: bool = False) -> str:
    args = [
        "ps", "-q", "--no-trunc",
        "--filter", f"label=com.docker.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    ]
    if not running_only:
        args.insert(1, "-a")
    ids = docker(*args).stdout.split()
    if not ids:
        raise RuntimeError(f"no container for service {service!r} of compose project {project!r}: is the stack up?")
    return ids[0]


def container_state(cid: str) -> dict[str, Any]:
    out = docker("inspect", "-f", "{{json .State}}", cid, check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def health(cid: str) -> str:
    state = container_state(cid)
    if not state.get("Running"):
        return "stopped"
    return (state.get("Health") or {}).get("Status", "running")


def wait_healthy(cid: str, timeout: float = 120, poll: float = 0.5) -> float:
    """Seconds until `cid` reports healthy (or merely running when it has no healthcheck)."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if health(cid) in ("healthy", "running"):
            return time.monotonic() - start
        time.sleep(poll)
    raise TimeoutError(f"container {cid[:12]} not healthy after {timeout:.0f}s (state: {health(cid)})")


def host_pid(cid: str) -> int:
    return int(container_state(cid).get("Pid") or 0)


def container_processes(cid: str) -> list[tuple[int, str]]:
    """(host pid, command line) of every process in the container, via `docker top`."""
    out = docker("top", cid, "-eo", "pid,args").stdout.splitlines()
    procs = []
    for line in out[1:]:
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            procs.append((int(pid), args.strip()))
    return procs


def daphne_workers(cid: str) -> dict[int, int]:
    """Worker number (1-based, as in X-Asgi-Worker) -> host pid of that daphne process.

    The number is read from the worker's own unix socket path (…<N>.sock) or failing that
    from a `--name`/process-name ending in N; only real daphne processes count (not the
    `sh -c` wrappers supervisord might leave).
    """
    workers: dict[int, int] = {}
    for pid, args in container_processes(cid):
        if "daphne" not in args or args.startswith(("sh ", "/bin/sh ", "bash ")):
            continue
        m = re.search(r"(\d+)\.sock\b", args) or re.search(r"(?:worker|daphne)[-_]?(\d+)\b", args)
        if m:
            n = int(m.group(1))
            # supervisord's process_num may be 0-based; X-Asgi-Worker is 1-based.
            workers[n] = pid
    if workers and min(workers) == 0:
        workers = {n + 1: pid for n, pid in workers.items()}
    return workers


def rss_kib(pid: int) -> int:
    """Resident set size of a host pid, from /proc (the container's processes are host pids)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- HTTP


class Portal:
    """A logged-in browser-like HTTP session on the portal (cookies, CSRF)."""

    def __init__(self, base_url: str, timeout: float = 15):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        # Only ever 127.0.0.1: never route through a proxy from the environment.
        self.http.trust_env = False

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        return self.http.get(self.url(path), **kw)

    def post(self, path: str, data=None, files=None, *, csrf: bool = True, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        data = dict(data or {})
        headers = dict(kw.pop("headers", {}) or {})
        if csrf:
            data.setdefault("csrfmiddlewaretoken", self.csrf_token())
        headers.setdefault("Referer", self.url(path))
        return self.http.post(self.url(path), data=data, files=files, headers=headers, **kw)

    def csrf_token(self) -> str:
        token = self.http.cookies.get("csrftoken")
        if not token:
            self.get(LOGIN_PATH)
            token = self.http.cookies.get("csrftoken")
        if not token:
            raise RuntimeError(f"the portal at {self.base_url} set no csrftoken cookie")
        return token

    def login(self, username: str, password: str) -> "Portal":
        self.get(LOGIN_PATH)
        resp = self.post(
            LOGIN_PATH,
            {"username": username, "password": password, "login-submit": "login-submit"},
        )
        if resp.status_code != 302 or "sessionid" not in self.http.cookies:
            raise RuntimeError(
                f"login as {username!r} failed at {self.base_url}: HTTP {resp.status_code} "
                "(check the credentials in the stack's web.env)"
            )
        return self

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    # ---- the app

    def add_dam(self, name: str, **overrides) -> requests.Response:
        return self.post(ADD_PATH, dam_form(name, **overrides))

    def dams_since(self, after: int = 0) -> list[dict]:
        resp = self.get(CATCHUP_PATH, params={"since": after})
        resp.raise_for_status()
        return extract_dams(resp.json())

    def last_dam_id(self) -> int:
        resp = self.get(CATCHUP_PATH, params={"since": 0})
        resp.raise_for_status()
        return int(resp.json().get("last_id") or 0)

    def all_dams(self) -> list[dict]:
        return self.dams_since(0)

    def dam_names(self) -> set[str]:
        return {d.get("name") for d in self.all_dams()}


def add_succeeded(resp: requests.Response) -> bool:
    """The tutorial's contract: a successful add redirects (to home); a refusal re-renders."""
    return resp.status_code in (301, 302, 303)


def dam_form(name: str, *, lon: float = -111.9, lat: float = 40.7, **overrides) -> dict[str, str]:
    """A valid Add Dam form post (the tutorial's field names), with overrides by field name."""
    form = {
        "name": name,
        "owner": "Reclamation",
        "river": "Bench River",
        "date-built": "2001-02-03",
        "geometry": json.dumps({"type": "Point", "coordinates": [lon, lat]}),
        "add-button": "add-button",
    }
    for key, value in overrides.items():
        form[key.replace("_", "-") if key == "date_built" else key] = value
    return form


def extract_dams(payload: Any) -> list[dict]:
    """Dams out of a catch-up answer: a list, or {"dams": [...]} / {"results": [...]}."""
    if isinstance(payload, list):
        return [d for d in payload if isinstance(d, dict)]
    if isinstance(payload, dict):
        for key in ("dams", "results", "items"):
            if isinstance(payload.get(key), list):
                return [d for d in payload[key] if isinstance(d, dict)]
    return []


def dam_from_event(event: Any) -> dict | None:
    """The dam carried by a new-dam WebSocket event, or None for any other event.

    Tolerant of the envelope ({"type": "dam_added", "dam": {...}}, {"message": ..., "dam": ...}
    or the dam's fields at top level); delete events are not adds.
    """
    if not isinstance(event, dict):
        return None
    kind = str(event.get("type") or event.get("event") or event.get("action") or "").lower()
    if "delet" in kind or "remov" in kind:
        return None
    dam = event.get("dam")
    if isinstance(dam, dict) and "id" in dam:
        return dam
    if "id" in event and "name" in event:
        return event
    return None


# --------------------------------------------------------------------------- WebSocket


def ws_headers(portal: Portal) -> dict[str, str]:
    return {"Cookie": portal.cookie_header}


def ws_origin(portal: Portal) -> str:
    return portal.base_url


@dataclass
class Seen:
    at: float  # time.monotonic() of arrival
    how: str  # "live" or "catch-up"


@dataclass
class NotificationClient:
    """Behaves like the app's JS client (public/js/dam_inventory.js): after a drop it reconnects
    with exponential backoff (1 s doubling to 30 s, half of it jitter), and on EVERY open asks the
    catch-up endpoint for the dams after the last id it saw, so no dam is missed.

    `connections` counts successful handshakes (1 = never dropped); `workers` lists the
    X-Asgi-Worker of each of them; `closes` the close codes the server sent.
    """

    portal: Portal
    label: str = "client"
    last_id: int = 0  # like the page: the last dam id known when the client starts
    backoff_min: float = 1.0
    backoff_max: float = 30.0
    seen: dict[int, Seen] = field(default_factory=dict)
    connections: int = 0
    workers: list[str] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._changed = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._ws = None
        self._stop = False
        self._attempts = 0

    @property
    def worker(self) -> str | None:
        return self.workers[-1] if self.workers else None

    async def start(self, timeout: float = 15) -> "NotificationClient":
        self._task = asyncio.create_task(self._run(), name=self.label)
        await asyncio.wait_for(self._connected.wait(), timeout)
        return self

    async def stop(self):
        self._stop = True
        if self._ws is not None:
            await self._ws.close()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def _note(self, dam: dict, how: str):
        try:
            dam_id = int(dam["id"])
        except (KeyError, TypeError, ValueError):
            return
        if dam_id not in self.seen:
            self.seen[dam_id] = Seen(time.monotonic(), how)
        self.last_id = max(self.last_id, dam_id)
        self._changed.set()

    async def _catch_up(self, ws):
        """Like the JS: a failed catch-up is retried with backoff while this socket stays open."""
        failures = 0
        while self._ws is ws and not self._stop:
            try:
                dams = await asyncio.to_thread(self.portal.dams_since, self.last_id)
            except Exception as exc:
                self.errors.append(f"catch-up: {type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(min(self.backoff_max, self.backoff_min * 2 ** failures))
                failures += 1
                continue
            for dam in dams:
                self._note(dam, "catch-up")
            return

    def _backoff(self) -> float:
        base = min(self.backoff_max, self.backoff_min * 2 ** self._attempts)
        self._attempts += 1
        return base / 2 + random.random() * base / 2

    async def _run(self):
        import websockets
        from websockets.asyncio.client import connect

        while not self._stop:
            try:
                async with connect(
                    self.portal.base_url.replace("http", "ws", 1) + WS_PATH,
                    additional_headers=ws_headers(self.portal),
                    origin=ws_origin(self.portal),
                    proxy=None,
                    compression=None,
                    open_timeout=10,
                    # Like a browser: no client pings; a dead peer shows up as a close.
                    ping_interval=None,
                ) as ws:
                    self._ws = ws
                    self._attempts = 0
                    self.connections += 1
                    self.workers.append(ws.response.headers.get(WORKER_HEADER, "?"))
                    self._connected.set()
                    catch_up = asyncio.create_task(self._catch_up(ws))
                    try:
                        async for raw in ws:
                            try:
                                dam = dam_from_event(json.loads(raw))
                            except ValueError:
                                continue
                            if dam:
                                self._note(dam, "live")
                    finally:
                        self._ws = None
                        catch_up.cancel()
                    self.closes.append(ws.close_code)
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed as exc:
                # No close frame from the server = 1006 (abnormal closure), as a browser reports it.
                self.closes.append(exc.rcvd.code if exc.rcvd else 1006)
            except Exception as exc:  # refused, reset, 502 during a restart: retry like the JS
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            finally:
                self._ws = None
            if self._stop:
                return
            if self.closes and self.closes[-1] == 4401:  # logged out: the JS client stops too
                self.errors.append("closed 4401 (not logged in): stopped")
                return
            await asyncio.sleep(self._backoff())

    async def wait_for(self, dam_ids: Iterable[int], timeout: float) -> bool:
        """True once every id in dam_ids was seen (live or by catch-up) within timeout."""
        want = set(dam_ids)
        deadline = time.monotonic() + timeout
        while not want <= self.seen.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                # A client that is connected but got nothing may have missed an event while
                # its socket looked healthy: the JS client only catches up on reconnect, so
                # we do too; just keep waiting.
                pass
        return True


async def open_clients_on_every_worker(
    portal: Portal, workers: int, per_worker: int = 1, max_attempts: int = 60
) -> list[NotificationClient]:
    """Open clients until each of `workers` workers holds at least `per_worker` of them.

    nginx balances round-robin, so this normally takes workers*per_worker connections; extra
    clients that land on an already-full worker are kept too (they are clients like any other).
    """
    clients: list[NotificationClient] = []
    counts: dict[str, int] = {}
    last_id = await asyncio.to_thread(portal.last_dam_id)
    for attempt in range(max_attempts):
        client = await NotificationClient(portal, label=f"c{attempt}", last_id=last_id).start()
        clients.append(client)
        counts[client.worker] = counts.get(client.worker, 0) + 1
        if len(counts) >= workers and all(v >= per_worker for v in counts.values()):
            return clients
    for c in clients:
        await c.stop()
    raise RuntimeError(f"after {max_attempts} connections the clients landed only on workers {counts}")


def unique_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**9}"


def add_dam_checked(portal: Portal, name: str, **overrides) -> int:
    """Adds a dam and returns its id (found through the catch-up endpoint)."""
    before = max((int(d["id"]) for d in portal.all_dams()), default=0)
    resp = portal.add_dam(name, **overrides)
    if not add_succeeded(resp):
        raise RuntimeError(f"add of {name!r} refused: HTTP {resp.status_code}: {visible_text(resp.text)[:300]}")
    for dam in portal.dams_since(before):
        if dam.get("name") == name:
            return int(dam["id"])
    raise RuntimeError(f"dam {name!r} was accepted but the catch-up endpoint does not list it")


def visible_text(html: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    text = re.sub(r"(?s)<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.5, what: str = "condition") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception:
            pass
        time.sleep(poll)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
