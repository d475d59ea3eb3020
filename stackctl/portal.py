"""The one HTTP client of the portal, as a browser uses it: Django's login form, the CSRF
cookie, the app's Add Dam form and its catch-up endpoint. The tests, the benchmarks and
`make dev`'s check all log in and add dams through it. It asserts nothing: it returns what
the portal answered, or raises PortalError when a step a caller relies on did not happen."""

from __future__ import annotations

import json
import os
import re
import ssl
import time
from pathlib import Path
from typing import Any

import requests

from stackctl.envfiles import read_env_file, resolve
from stackctl.settings import Stack

LOGIN_PATH = "/accounts/login/"
APP_PATH = "/apps/dam-inventory/"
ADD_PATH = APP_PATH + "dams/add/"
WS_PATH = APP_PATH + "dams/notifications/ws/"
# GET ?since=<id> -> {"dams": [...], "deleted": [...], "last_id": N}: dams with id > since.
CATCHUP_PATH = APP_PATH + "dams/since/"
# GET ?after=<seq> -> {"events": [...in order], "last_seq": N, "more": bool}: the outbox.
EVENTS_PATH = APP_PATH + "dams/events/"
HYDROGRAPH_ASSIGN_PATH = APP_PATH + "hydrographs/assign/"
WORKER_HEADER = "X-Asgi-Worker"
# The web container (its host name) that answered: several of them under Swarm.
REPLICA_HEADER = "X-Web-Replica"
REQUEST_TIMEOUT = 15.0


class PortalError(RuntimeError):
    """A step of the portal's flow did not happen (login refused, no CSRF cookie...)."""


def dam_json_path(dam_id: int) -> str:
    return f"{APP_PATH}dams/{dam_id}/json/"


def admin_credentials(stack: Stack) -> tuple[str, str]:
    """The stack's portal admin: PORTAL_SUPERUSER_NAME/_PASSWORD from the environment when
    both are set, otherwise from the stack's generated web.env and secret file."""
    name, password = os.environ.get("PORTAL_SUPERUSER_NAME"), os.environ.get("PORTAL_SUPERUSER_PASSWORD")
    if name and password:
        return name, password
    web = read_env_file(stack.env_file("web"))
    password = resolve(web, "PORTAL_SUPERUSER_PASSWORD")
    if not password:
        raise PortalError(f"no PORTAL_SUPERUSER_PASSWORD for {stack.env_file('web')}: bring the stack "
                          "up with `make up` (it writes the env files) or export it")
    return web.get("PORTAL_SUPERUSER_NAME") or "admin", password


class Portal:
    """A browser-like HTTP session on the portal (cookies, CSRF)."""

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT, ca_file: Path | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.ca_file = ca_file
        self.http = requests.Session()
        # The stack is on this machine: never route through a proxy from the environment.
        self.http.trust_env = False
        # HTTPS is verified: against CA_FILE (the stack's local CA) or the system's store.
        self.http.verify = str(ca_file) if ca_file else True

    @classmethod
    def of(cls, stack: Stack, **kw) -> "Portal":
        """A client of STACK's portal, trusting its certificate as a browser told to would."""
        return cls(stack.base_url, ca_file=stack.ca_file, **kw)

    def ws_options(self) -> dict:
        """Keyword arguments for websockets' connect(): the TLS context for wss: URLs."""
        if not self.base_url.startswith("https:"):
            return {}
        return {"ssl": ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)}

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + WS_PATH

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        return self.http.get(self.url(path), **kw)

    def post(self, path: str, data=None, files=None, *, csrf: bool = True, **kw) -> requests.Response:
        """A form post as the page would send it: CSRF token, Referer and Origin of the portal."""
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        data = dict(data or {})
        headers = dict(kw.pop("headers", None) or {})
        if csrf:
            data.setdefault("csrfmiddlewaretoken", self.csrf_token())
        headers.setdefault("Referer", self.url(path))
        headers.setdefault("Origin", self.base_url)
        return self.http.post(self.url(path), data=data, files=files, headers=headers, **kw)

    def csrf_token(self) -> str:
        token = self.http.cookies.get("csrftoken")
        if not token:
            self.get(LOGIN_PATH)
            token = self.http.cookies.get("csrftoken")
        if not token:
            raise PortalError(f"the portal at {self.base_url} set no csrftoken cookie")
        return token

    def login(self, username: str, password: str) -> "Portal":
        self.get(LOGIN_PATH)
        resp = self.post(LOGIN_PATH, {"username": username, "password": password, "login-submit": "login-submit"})
        if resp.status_code != 302 or "sessionid" not in self.http.cookies:
            raise PortalError(f"login as {username!r} failed at {self.base_url}: HTTP {resp.status_code} "
                              "(check the credentials in the stack's web.env)")
        return self

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    # ---- the app
    def add_dam(self, name: str, **fields) -> requests.Response:
        return self.post(ADD_PATH, dam_form(name, **fields))

    def catch_up(self, since: int = 0) -> dict:
        resp = self.get(CATCHUP_PATH, params={"since": since})
        resp.raise_for_status()
        return resp.json()

    def events_after(self, after: int) -> dict:
        resp = self.get(EVENTS_PATH, params={"after": after})
        resp.raise_for_status()
        return resp.json()

    def last_event_seq(self) -> int:
        """The outbox's last seq (as a page rendered now would know it)."""
        seq = 0
        while True:
            page = self.events_after(seq)
            seq = int(page["last_seq"])
            if not page["more"]:
                return seq

    def dams_since(self, since: int = 0) -> list[dict]:
        return extract_dams(self.catch_up(since))

    def last_dam_id(self) -> int:
        return int(self.catch_up(0).get("last_id") or 0)

    def dam_names(self) -> set[str]:
        return {d.get("name") for d in self.dams_since(0)}

    def assign_hydrograph(self, dam_id: int, csv: bytes) -> requests.Response:
        return self.post(HYDROGRAPH_ASSIGN_PATH, {"dam-select": str(dam_id)},
                         files={"hydrograph-file": ("h.csv", csv, "text/csv")})

    def hydrograph(self, dam_id: int) -> list[list[float]]:
        """The dam's hydrograph as [[time, flow], ...] (its JSON view)."""
        resp = self.get(dam_json_path(dam_id))
        resp.raise_for_status()
        return [[float(t), float(f)] for t, f in resp.json()["hydrograph"]]

    def add_dam_checked(self, name: str, **fields) -> int:
        """Adds a dam and returns its id (as the catch-up endpoint lists it)."""
        before = self.last_dam_id()
        resp = self.add_dam(name, **fields)
        if not add_succeeded(resp):
            raise PortalError(f"add of {name!r} refused: HTTP {resp.status_code}: {visible_text(resp.text)[:300]}")
        for dam in self.dams_since(before):
            if dam.get("name") == name:
                return int(dam["id"])
        raise PortalError(f"dam {name!r} was accepted but the catch-up endpoint does not list it")


def add_succeeded(resp: requests.Response) -> bool:
    """A successful add redirects (to home); a refused one re-renders the form."""
    return resp.status_code in (301, 302, 303)


def dam_form(name: str, *, lon: float = -111.9, lat: float = 40.7, **fields) -> dict[str, str]:
    """A valid Add Dam form (the tutorial's field names); keyword arguments replace fields
    (date_built for the `date-built` field)."""
    form = {
        "name": name,
        "owner": "Reclamation",
        "river": "Test River",
        "date-built": "2001-02-03",
        "geometry": json.dumps({"type": "Point", "coordinates": [lon, lat]}),
        "add-button": "add-button",
    }
    for key, value in fields.items():
        form["date-built" if key == "date_built" else key] = value
    return form


def extract_dams(payload: Any) -> list[dict]:
    """The dams of a catch-up answer ({"dams": [...]}) or of a bare list."""
    if isinstance(payload, dict):
        payload = payload.get("dams")
    return [d for d in payload or [] if isinstance(d, dict)]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**9}"


def visible_text(html: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    text = re.sub(r"(?s)<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", text).strip()
