"""The edge as clients meet it: HTTPS trusted through the stack's local CA (curl and Python's
ssl, each with its own TLS stack), plain HTTP redirected, HSTS, secure cookies, a login and an
Add Dam over HTTPS, and the forwarded headers: set by the edge from the connection, believed
by web from the edge alone."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from stackctl import docker, hosttools, tls
from stackctl.portal import APP_PATH, LOGIN_PATH, Portal, unique_name
from stackctl.settings import TEST_STACK
from tests.notifications import wait_until

HOST = TEST_STACK.host
HTTPS_URL = f"https://{HOST}:{TEST_STACK.port}"
HTTP_URL = f"http://{HOST}:{TEST_STACK.http_port}"
# Warnings of `check --deploy` the README justifies (section "HTTPS"): the edge redirects plain
# HTTP, not Django (W008); preload and includeSubDomains are the operator's commitments (W005,
# W021); lockout per account, not per address, as Tethys configures django-axes (axes.W006).
JUSTIFIED_DEPLOY_WARNINGS = {"security.W005", "security.W008", "security.W021", "axes.W006"}


def handshake(minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> tuple[str, dict]:
    context = ssl.create_default_context(cafile=str(TEST_STACK.ca_file))
    context.minimum_version, context.maximum_version = minimum, maximum
    with socket.create_connection((HOST, TEST_STACK.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            return tls.version(), tls.getpeercert()


def test_curl_trusts_the_edge_through_the_local_ca_alone():
    code = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(TEST_STACK.ca_file),
                           HTTPS_URL + LOGIN_PATH], capture_output=True, text=True, timeout=30)
    assert code.returncode == 0 and code.stdout == "200", code.stderr + code.stdout
    # control: without the CA the same request is refused (curl's exit 60: peer certificate)
    refused = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--capath", "/nonexistent", "--cacert", "/dev/null",
                              HTTPS_URL + LOGIN_PATH], capture_output=True, text=True, timeout=30)
    assert refused.returncode in (60, 77), refused.stderr


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_served_with_a_certificate_for_the_host(version):
    negotiated, cert = handshake(version, version)
    assert negotiated == version.name.replace("_", "."), negotiated
    names = {value for kind, value in cert["subjectAltName"]}
    assert HOST in names, names


def test_plain_http_is_redirected_to_the_same_https_url():
    resp = requests.get(HTTP_URL + APP_PATH + "?page=2", allow_redirects=False, timeout=10)
    assert resp.status_code == 301
    assert resp.headers["Location"] == HTTPS_URL + APP_PATH + "?page=2"


def test_plain_http_serves_nothing_but_the_redirect():
    # a form posted over plain HTTP is never passed on: it is redirected like everything else
    resp = requests.post(HTTP_URL + LOGIN_PATH, data={"username": "x"}, allow_redirects=False, timeout=10)
    assert resp.status_code == 301 and "X-Asgi-Worker" not in resp.headers


@pytest.mark.parametrize("path", [LOGIN_PATH, APP_PATH, "/static/tethys_portal/css/tethys_main.css", "/no-such-page/"])
def test_every_https_response_carries_one_hsts_header(stack, path):
    resp = stack.portal().get(path)
    seconds = stack.env_file("edge").get("HSTS_SECONDS") or "63072000"
    assert resp.raw.headers.getlist("Strict-Transport-Security") == [f"max-age={seconds}"], resp.headers


def test_session_and_csrf_cookies_are_secure(stack, admin_credentials):
    portal = stack.portal()
    login_page = portal.get(LOGIN_PATH)
    csrf = [c for c in login_page.raw.headers.getlist("Set-Cookie") if c.startswith("csrftoken=")]
    assert csrf and all("; secure" in c.lower() for c in csrf), csrf
    portal.login(*admin_credentials)
    assert all(c.secure for c in portal.http.cookies if c.name in ("sessionid", "csrftoken")), list(portal.http.cookies)
    assert "sessionid" in portal.http.cookies


def test_login_and_add_dam_over_https_with_csrf(stack, admin_credentials):
    portal = stack.portal().login(*admin_credentials)
    assert portal.base_url.startswith("https://")
    dam_id = portal.add_dam_checked(unique_name("HTTPS dam"))
    assert dam_id > 0


def test_a_client_cannot_tell_web_it_came_over_plain_http(stack, admin_credentials):
    # The edge replaces X-Forwarded-Proto: were the client's "http" believed, Django would
    # refuse the login's https Origin as a cross-site post (CSRF 403).
    portal = stack.portal()
    portal.csrf_token()
    resp = portal.post(LOGIN_PATH, {"username": admin_credentials[0], "password": admin_credentials[1],
                                    "login-submit": "login-submit"}, headers={"X-Forwarded-Proto": "http"})
    assert resp.status_code == 302, f"HTTP {resp.status_code}: the forged scheme reached Django"


PROBE = """
import json, sys, urllib.request
request = urllib.request.Request(sys.argv[1] + "/accounts/login/", headers={
    "Host": "localhost", "X-Forwarded-Proto": "https", "User-Agent": "forwarded-header-probe"})
response = urllib.request.urlopen(request, timeout=10)
print(json.dumps({"hsts": response.headers.get("Strict-Transport-Security")}))
"""


def django_believed_https(stack, network: str) -> bool:
    """Sends "X-Forwarded-Proto: https" over plain HTTP straight to web from a throwaway
    container on NETWORK. Django adds HSTS only to requests it believes came over HTTPS."""
    name = f"{TEST_STACK.project}-xfp-probe-{uuid.uuid4().hex[:8]}"
    image = stack.inspect("web")["Image"]
    try:
        out = docker.run(["docker", "run", "--rm", "--name", name, "--network", network, "--user", "65534:65534",
                          "--entrypoint", "/opt/tethys-venv/bin/python", image, "-c", PROBE, "http://web:8080"],
                         timeout=120).stdout
    finally:
        docker.run(["docker", "rm", "-f", name], check=False)
    return bool(json.loads(out.strip().splitlines()[-1])["hsts"])


def test_forwarded_proto_over_plain_http_is_believed_from_the_edge_network_alone(stack):
    assert not django_believed_https(stack, f"{TEST_STACK.project}_internal"), \
        "a peer on the internal network made Django believe a plain request was HTTPS"
    # control: the same request from the edge's network is believed, so the probe can tell
    assert django_believed_https(stack, f"{TEST_STACK.project}_front")


def test_the_edge_keeps_websockets_longer_than_web_does(stack):
    conf = stack.exec("edge", ["cat", "/run/edge/portal.conf"])
    ws_block = conf.split("location ~ /ws/?$ {", 1)[1].split("}", 1)[0]
    edge_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", ws_block).group(1))
    web_timeout = int(stack.env("web").get("TETHYS_WEBSOCKET_TIMEOUT") or 86400)
    assert edge_timeout > web_timeout, (edge_timeout, web_timeout)


def test_django_deploy_check_leaves_only_justified_warnings(stack):
    where = "import os, tethys_portal; print(os.path.join(os.path.dirname(tethys_portal.__file__), 'manage.py'))"
    manage = stack.exec("web", [stack.web_python_path(), "-c", where]).strip()
    proc = docker.docker("exec", stack.container_id("web"), stack.web_python_path(), manage, "check", "--deploy",
                         check=False, timeout=180)
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output
    found = set(re.findall(r"\(([a-z_]+\.[WE]\d+)\)", output))
    assert found <= JUSTIFIED_DEPLOY_WARNINGS, f"unjustified: {sorted(found - JUSTIFIED_DEPLOY_WARNINGS)}\n{output}"


def test_portal_client_refuses_a_certificate_it_was_not_told_to_trust():
    with pytest.raises(requests.exceptions.SSLError):
        Portal(HTTPS_URL).get(LOGIN_PATH)


def test_the_local_ca_revocation_list_is_served_where_the_certificate_says(tmp_path):
    url = tls.crl_url(TEST_STACK.secrets_dir / tls.SERVER_CERT)
    assert url and url.startswith(f"http://{TEST_STACK.host if TEST_STACK.host != '127.0.0.1' else 'localhost'}"), url
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/pkix-crl", resp.headers
    crl = tmp_path / "local_ca.crl"
    crl.write_bytes(resp.content)
    checked = subprocess.run(["openssl", "verify", "-crl_check", "-CRLfile", str(crl), "-CAfile", str(TEST_STACK.ca_file),
                              str(TEST_STACK.secrets_dir / tls.SERVER_CERT)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


TESTSSL = Path("/usr/bin/testssl")
FAILING_SEVERITIES = {"HIGH", "CRITICAL"}


def test_testssl_rates_nothing_high_or_critical(tmp_path):
    """testssl.sh (Debian's package): protocols, ciphers, forward secrecy, server defaults,
    headers and the known vulnerabilities, against the edge with the local CA trusted."""
    if not TESTSSL.exists():
        hosttools.ensure_debian_packages(["testssl.sh"])
    report = tmp_path / "testssl.json"
    proc = subprocess.run([str(TESTSSL), "--quiet", "--color", "0", "--warnings", "off", "--add-ca", str(TEST_STACK.ca_file),
                           "--jsonfile", str(report), f"{HOST}:{TEST_STACK.port}"],
                          capture_output=True, text=True, timeout=900)
    assert report.exists(), f"testssl wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
    findings = json.loads(report.read_text())
    counts = Counter(f["severity"] for f in findings)
    print(f"testssl.sh against {HOST}:{TEST_STACK.port}: {len(findings)} findings by severity: {dict(sorted(counts.items()))}")
    for finding in findings:
        if finding["severity"] not in ("OK", "INFO"):
            print(f"  {finding['severity']:8} {finding['id']}: {finding['finding']}")
    failing = [f"{f['id']}: {f['finding']}" for f in findings if f["severity"] in FAILING_SEVERITIES]
    assert not failing, "testssl.sh rates these HIGH or CRITICAL:\n" + "\n".join(failing)
    assert counts["OK"] > 10, f"testssl.sh checked too little: {dict(counts)}"


def test_the_edge_serves_the_current_certificate_file():
    # `make up` reissues the local certificate when due and reloads the edge: what is served
    # must be what the secrets directory holds now, not what the edge started with.
    served = ssl.get_server_certificate((HOST, TEST_STACK.port), timeout=10)
    on_disk = (TEST_STACK.secrets_dir / tls.SERVER_CERT).read_text()
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(on_disk)


CLAIMED_CLIENT = "203.0.113.9"  # TEST-NET-3: never a real client of the test stack


def _address_web_believed(stack, trusted_proxies: str) -> str:
    """Starts an edge with TLS_MODE=off and TRUSTED_PROXIES, sends it a request claiming to
    be forwarded for CLAIMED_CLIENT, and returns the client address web's nginx logged."""
    name = f"{TEST_STACK.project}-plain-edge-{uuid.uuid4().hex[:8]}"
    probe = uuid.uuid4().hex
    try:
        port = stack.start_beside(name, stack.inspect("edge")["Config"]["Image"], alias=name, publish=8443, args=(
            "--init", "--cap-drop", "ALL", "-e", "TLS_MODE=off", "-e", f"TRUSTED_PROXIES={trusted_proxies}"))
        deadline = time.monotonic() + 60
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}{LOGIN_PATH}?probe={probe}", timeout=10, headers={
                    "X-Forwarded-For": CLAIMED_CLIENT, "X-Forwarded-Proto": "https", "Host": "localhost"})
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the plain-HTTP edge did not start"
                time.sleep(0.5)
        assert resp.status_code == 200, resp.status_code
    finally:
        docker.docker("rm", "-f", name, check=False)

    def logged() -> list[str]:
        log = docker.docker("logs", "--since", "2m", stack.container_id("web")).stdout
        return [line for line in log.splitlines() if probe in line]

    # the access log reaches the container's output through supervisord: a moment later
    wait_until(logged, 10, what="web's nginx to log the probe's request")
    return logged()[-1].split()[0]


def test_plain_http_mode_believes_forwarded_headers_from_trusted_proxies_alone(stack):
    # The host's connections to a published port reach the edge from the public network's gateway.
    gateway = docker.inspect(f"{TEST_STACK.project}_public")[0]["IPAM"]["Config"][0]["Gateway"]
    assert _address_web_believed(stack, gateway) == CLAIMED_CLIENT
    assert _address_web_believed(stack, "192.0.2.1") == gateway, "an untrusted peer's X-Forwarded-For reached web"
