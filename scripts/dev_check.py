"""Smoke check of a running dev portal (called by `scripts/dev.sh check`).

Logs in, loads the app page, opens the notifications WebSocket with the session cookie, adds a
dam through the tutorial's form and waits for its notification; also checks that an anonymous
socket is closed with 4401 and a foreign Origin is refused. Exit status 0 only if all hold.

Usage: python3 scripts/dev_check.py BASE_URL USER PASSWORD
"""

import asyncio
import json
import re
import sys
from urllib.parse import urlsplit

import requests
import websockets

WAIT = 20  # seconds for any single step before the check fails (a hang is a failure)


def fail(msg):
    print(f"[dev-check] FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print(f"[dev-check] ok: {msg}", file=sys.stderr)


def login(base, user, password):
    s = requests.Session()
    s.get(f"{base}/accounts/login/", timeout=WAIT).raise_for_status()
    r = s.post(
        f"{base}/accounts/login/",
        data={"username": user, "password": password, "login-submit": "login",
              "csrfmiddlewaretoken": s.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=WAIT,
    )
    if "sessionid" not in s.cookies:
        fail(f"login as {user} failed (HTTP {r.status_code})")
    ok(f"logged in as {user}")
    return s


async def sockets(base, s, ws_path):
    ws_url = "ws://" + urlsplit(base).netloc + ws_path
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())

    async with websockets.connect(ws_url, origin=base, additional_headers={"Cookie": cookie},
                                  open_timeout=WAIT) as ws:
        await ws.send("ping")
        if await asyncio.wait_for(ws.recv(), WAIT) != "pong":
            fail("no pong on the notifications socket")
        ok(f"WebSocket connected: {ws_url}")
        page = s.get(f"{base}/apps/dam-inventory/dams/add/", timeout=WAIT)
        r = s.post(
            f"{base}/apps/dam-inventory/dams/add/",
            data={"name": "Dev check dam", "owner": "Other", "river": "Check River",
                  "date-built": "2000-01-01", "longitude": "-100", "latitude": "40",
                  "add-button": "add", "csrfmiddlewaretoken": s.cookies["csrftoken"]},
            headers={"Referer": page.url}, allow_redirects=False, timeout=WAIT,
        )
        if r.status_code != 302:
            fail(f"add dam answered {r.status_code}")
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if message.get("event") != "dam_added" or message["dam"]["name"] != "Dev check dam":
            fail(f"unexpected notification {message}")
        ok(f"notification received for dam id {message['dam']['id']}")
        r = s.post(f"{base}/apps/dam-inventory/dams/{message['dam']['id']}/delete/",
                   data={"csrfmiddlewaretoken": s.cookies["csrftoken"]},
                   headers={"Referer": base}, allow_redirects=False, timeout=WAIT)
        deleted = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if r.status_code != 302 or deleted.get("event") != "dam_deleted":
            fail(f"delete answered {r.status_code}, notification {deleted}")
        ok("deletion notified")

    async with websockets.connect(ws_url, origin=base, open_timeout=WAIT) as anon:
        try:
            await asyncio.wait_for(anon.recv(), WAIT)
            fail("anonymous socket got a message")
        except websockets.ConnectionClosed as e:
            if e.rcvd is None or e.rcvd.code != 4401:
                fail(f"anonymous socket closed with {e.rcvd}")
    ok("anonymous socket closed with 4401")

    try:
        async with websockets.connect(ws_url, origin="http://evil.example.com",
                                      additional_headers={"Cookie": cookie}, open_timeout=WAIT):
            fail("a foreign Origin was accepted")
    except websockets.InvalidStatus as e:
        ok(f"foreign Origin refused (HTTP {e.response.status_code})")


def main():
    base, user, password = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    s = login(base, user, password)
    r = s.get(f"{base}/apps/dam-inventory/", timeout=WAIT)
    m = re.search(r'data-ws-path="([^"]+)"', r.text)
    if r.status_code != 200 or not m:
        fail(f"app page answered {r.status_code} without the client's data-ws-path")
    ok(f"app page served ({len(r.content)} bytes)")
    js = s.get(f"{base}/static/dam_inventory/js/dam_inventory.js", timeout=WAIT)
    if js.status_code != 200 or "WebSocket" not in js.text:
        fail(f"JS client not served (HTTP {js.status_code})")
    ok("JS client served")
    asyncio.run(sockets(base, s, m.group(1)))
    print("[dev-check] all checks passed", file=sys.stderr)


if __name__ == "__main__":
    main()
