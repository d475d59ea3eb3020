"""ACME for real: a second edge container of the stack's edge image, in TLS_MODE=acme, gets its
certificate from pebble (Let's Encrypt's ACME test server, Debian's package) over the test
stack's `front` network: pebble checks the HTTP-01 challenge against the edge's own plain
listener, the edge serves what it was issued, and a forced renewal swaps the certificate with
a reload while a WebSocket opened before it stays open and still receives notifications."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
import uuid

import pytest
import requests
from websockets.asyncio.client import connect

from stackctl import docker, images, tls
from stackctl.portal import WS_PATH, unique_name
from tests.notifications import dam_from_event, ws_headers

PORTAL_NAME = "acme-portal.test"
ISSUE_TIMEOUT = 120  # upper bound for pebble's validation and certbot on a slow CI machine


def _served_certificate(port: int) -> tuple[str, str]:
    """(issuer, serial) of the certificate the edge serves for PORTAL_NAME right now."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    out = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-serial", "-nameopt", "oneline"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines())
    return fields["issuer"], fields["serial"]


def _wait_for_certificate(port: int, logs, unlike: str | None = None) -> tuple[str, str]:
    deadline = time.monotonic() + ISSUE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            issuer, serial = _served_certificate(port)
        except OSError:  # the edge is still starting (ssl errors are OSErrors too)
            issuer, serial = "", ""
        if "Pebble" in issuer and serial != unlike:
            return issuer, serial
        time.sleep(1)
    pytest.fail(f"no new certificate from pebble within {ISSUE_TIMEOUT} s; edge log:\n{logs()[-3000:]}")


@pytest.fixture(scope="module")
def acme_edge(stack, tmp_path_factory):
    """pebble and an ACME-mode edge on the test stack's front network; yields what the tests
    need to reach them and to trust pebble's roots."""
    project = stack.stack.project
    work = tmp_path_factory.mktemp("pebble")
    work.chmod(0o755)
    tls.make_ca(work / "ca.crt", work / "ca.key", "pebble HTTPS test CA")
    tls.issue(work / "ca.crt", work / "ca.key", work / "cert.pem", work / "key.pem", ["pebble", "localhost", "127.0.0.1"])
    (work / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/etc/pebble/cert.pem", "privateKey": "/etc/pebble/key.pem",
        # where pebble validates challenges: the edge's plain listener inside the network
        "httpPort": 8080, "tlsPort": 8443, "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    (work / "pebble.json").chmod(0o644)
    suffix = uuid.uuid4().hex[:8]
    pebble, edge = f"{project}-pebble-{suffix}", f"{project}-acme-edge-{suffix}"
    secrets = stack.stack.secrets_dir
    try:
        mgmt_port = stack.start_beside(pebble, images.build_pebble(), alias="pebble", publish=15000, args=(
            "-e", "PEBBLE_VA_NOSLEEP=1", "-e", "PEBBLE_WFE_NONCEREJECT=0", "-v", f"{work}:/etc/pebble:ro"))
        edge_port = stack.start_beside(edge, images.compose_variables()["EDGE_IMAGE"], alias=PORTAL_NAME, publish=8443, args=(
            "--init", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-e", "TLS_MODE=acme", "-e", f"SERVER_NAMES={PORTAL_NAME}",
            "-e", "ACME_DIRECTORY_URL=https://pebble:14000/dir", "-e", "ACME_CA_FILE=/acme/ca.crt",
            "-e", "ACME_RETRY_SECONDS=2",
            "-e", "TLS_CERTIFICATE_FILE=/local/tls_certificate", "-e", "TLS_KEY_FILE=/local/tls_key",
            "-v", f"{work / 'ca.crt'}:/acme/ca.crt:ro",
            "-v", f"{secrets / tls.SERVER_CERT}:/local/tls_certificate:ro",
            "-v", f"{secrets / tls.SERVER_KEY}:/local/tls_key:ro"))
        mgmt = f"https://127.0.0.1:{mgmt_port}"
        yield {
            "edge": edge, "port": edge_port,
            "root": lambda: requests.get(f"{mgmt}/roots/0", verify=str(work / "ca.crt"), timeout=10).text,
            "logs": lambda: docker.docker("logs", edge, check=False).stderr,
        }
    finally:
        for name in (edge, pebble):
            docker.docker("rm", "-f", name, check=False)


def _trusting(root_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=root_pem)


def test_acme_certificate_is_issued_and_served_for_the_name(acme_edge):
    _wait_for_certificate(acme_edge["port"], acme_edge["logs"])
    # verified against pebble's root for the portal's name: the chain and the name are right
    with socket.create_connection(("127.0.0.1", acme_edge["port"]), timeout=10) as raw:
        with _trusting(acme_edge["root"]()).wrap_socket(raw, server_hostname=PORTAL_NAME) as conn:
            names = {value for _, value in conn.getpeercert()["subjectAltName"]}
    assert names == {PORTAL_NAME}


async def _receive_dam(ws, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            raw = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            return False
        dam = dam_from_event(json.loads(raw)) if raw.startswith("{") else None
        if dam and dam.get("name") == name:
            return True
    return False


def test_renewal_swaps_the_certificate_and_keeps_an_open_websocket(acme_edge, admin_portal):
    _, first_serial = _wait_for_certificate(acme_edge["port"], acme_edge["logs"])
    origin = f"https://127.0.0.1:{acme_edge['port']}"

    async def scenario():
        async with connect(origin.replace("https", "wss") + WS_PATH, ssl=_trusting(acme_edge["root"]()),
                           server_hostname=PORTAL_NAME, origin=origin, additional_headers=ws_headers(admin_portal),
                           proxy=None, open_timeout=10, ping_interval=None) as ws:
            renewed = await asyncio.to_thread(
                docker.docker, "exec", acme_edge["edge"], "edge-acme", "renew", "--force-renewal", "--no-random-sleep-on-renew",
                timeout=ISSUE_TIMEOUT)
            _, second_serial = await asyncio.to_thread(
                _wait_for_certificate, acme_edge["port"], acme_edge["logs"], first_serial)
            name = unique_name("After renewal")
            await asyncio.to_thread(admin_portal.add_dam_checked, name)
            return renewed.stderr + renewed.stdout, second_serial, await _receive_dam(ws, name, 10)

    log, second_serial, delivered = asyncio.run(scenario())
    assert second_serial != first_serial, log
    assert delivered, "the WebSocket opened before the renewal got no notification after it"
