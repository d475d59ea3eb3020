"""The official image's other switches, on the test stack (its web.env sets them:
tests/conftest.py TEST_WEB_SETTINGS): OTHER_SETTINGS reaches Django's settings; the sign-in
provider of ADD_BACKENDS / OAUTH_OPTIONS shows on the login page, and a whole OpenID Connect
sign-in against a real provider (django-oauth-toolkit, images/idp) makes a portal user; and the
portal's mail goes out through EMAIL_HOST: a password reset sent to a real SMTP server
(aiosmtpd, images/smtp-sink) arrives, and its link sets a new password that logs in. The
site settings (SITE_TITLE, PRIMARY_COLOR) are checked in the browser suite."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from stackctl import docker, images
from stackctl.envfiles import random_secret
from stackctl.portal import LOGIN_PATH, Portal
from stackctl.settings import TEST_STACK
from tests.conftest import IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_HOST, SMTP_SINK, TEST_WEB_SETTINGS
from tests.notifications import wait_until

RESET_PATH = "/accounts/password/reset/"
# An upper bound for the mail to reach the sink, not a speed target.
MAIL_DEADLINE = 30


def test_other_settings_reach_djangos_settings(stack):
    value = stack.portal_python("from django.conf import settings\n"
                                "result = settings.DAM_INVENTORY_OTHER_SETTINGS_PROOF")
    assert value == [42, "proven"], value


def test_the_sign_in_provider_shows_on_the_login_page(stack):
    page = Portal.of(TEST_STACK).get(LOGIN_PATH)
    assert page.status_code == 200
    assert re.search(r'href="/oauth2/login/github/[^"]*"', page.text), "no GitHub sign-in button on the login page"
    oauth = stack.portal_python("from django.conf import settings\n"
                                "result = [settings.SOCIAL_AUTH_GITHUB_KEY, settings.AUTHENTICATION_BACKENDS[0]]")
    assert oauth == ["test-client-id", "social_core.backends.github.GithubOAuth2"]


@pytest.fixture
def identity_provider(stack):
    """The provider on the stack's network as IDP_HOST, published on a 127.0.0.1 port; the
    portal's two callback addresses registered; one user. Yields (port, username, password)."""
    name = f"{TEST_STACK.project}-idp"
    username, password = "river-engineer", random_secret()
    callbacks = " ".join(f"{TEST_STACK.scheme}://{host}:{TEST_STACK.port}/oauth2/complete/oidc/"
                         for host in ("127.0.0.1", "localhost"))
    env = {"IDP_USERNAME": username, "IDP_PASSWORD": password, "IDP_EMAIL": "river.engineer@dams.test",
           "IDP_CLIENT_ID": IDP_CLIENT_ID, "IDP_CLIENT_SECRET": IDP_CLIENT_SECRET, "IDP_REDIRECT_URIS": callbacks}
    docker.docker("rm", "-f", name, check=False)
    port = stack.start_beside(name, images.build_idp(), alias=IDP_HOST.split(":")[0], publish=9000,
                              args=tuple(a for k, v in env.items() for a in ("-e", f"{k}={v}")))
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/login/", timeout=5).ok, 60,
               what="the identity provider to answer")
    yield port, username, password
    docker.docker("rm", "-f", name, check=False)


class Browser:
    """What a user's browser does in the sign-in: the portal over HTTPS, the provider at
    http://IDP_HOST, reached through its published port with IDP_HOST as the Host header."""

    def __init__(self, portal: Portal, idp_port: int):
        self.portal, self.idp = portal, requests.Session()
        self.idp_base = f"http://127.0.0.1:{idp_port}"

    def provider(self, method: str, url: str, **kw) -> requests.Response:
        parts = urlsplit(url)
        assert parts.netloc in ("", IDP_HOST), f"sent to {url}, not to the provider"
        return self.idp.request(method, self.idp_base + parts.path + (f"?{parts.query}" if parts.query else ""),
                                headers={"Host": IDP_HOST}, allow_redirects=False, timeout=15, **kw)


def test_an_openid_connect_sign_in_makes_a_portal_user(stack, identity_provider):
    port, username, password = identity_provider
    login_page = Portal.of(TEST_STACK).get(LOGIN_PATH)
    assert 'href="/oauth2/login/oidc/' in login_page.text, "no OpenID Connect button on the login page"

    browser = Browser(Portal.of(TEST_STACK), port)
    start = browser.portal.get("/oauth2/login/oidc/", allow_redirects=False)
    assert start.status_code == 302, f"the portal did not send the user to the provider: HTTP {start.status_code}"
    authorize = start.headers["Location"]
    assert authorize.startswith(f"http://{IDP_HOST}/o/authorize/"), authorize
    assert parse_qs(urlsplit(authorize).query)["client_id"] == [IDP_CLIENT_ID]

    to_login = browser.provider("GET", authorize)
    assert to_login.status_code == 302 and "/login/" in to_login.headers["Location"], to_login.status_code
    form = browser.provider("GET", to_login.headers["Location"])
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    nxt = re.search(r'name="next" value="([^"]+)"', form.text).group(1).replace("&amp;", "&")
    signed_in = browser.provider("POST", "/login/", data={"csrfmiddlewaretoken": token, "next": nxt,
                                                          "username": username, "password": password})
    assert signed_in.status_code == 302, f"the provider refused the sign-in: HTTP {signed_in.status_code}"
    back = browser.provider("GET", signed_in.headers["Location"])
    callback = back.headers.get("Location", "")
    assert back.status_code == 302 and "/oauth2/complete/oidc/?" in callback and "code=" in callback, callback

    # The portal exchanges the code with the provider, checks the signed ID token, signs in.
    done = browser.portal.http.get(callback, allow_redirects=True, timeout=30)
    assert done.status_code == 200 and LOGIN_PATH not in done.url, f"not signed in: {done.status_code} {done.url}"
    assert browser.portal.get("/apps/", allow_redirects=False).status_code == 200, "the app library needs a login"
    user = stack.portal_python(
        "from social_django.models import UserSocialAuth\n"
        f"link = UserSocialAuth.objects.get(provider='oidc', user__username={username!r})\n"
        "result = [link.user.email, link.user.is_active]")
    assert user == ["river.engineer@dams.test", True], user


@pytest.fixture
def smtp_sink(stack):
    name = f"{TEST_STACK.project}-smtp-sink"
    docker.docker("rm", "-f", name, check=False)
    stack.start_beside(name, images.build_smtp_sink(), alias=SMTP_SINK)
    # Django's password reset swallows a refused connection: the sink must listen first.
    connect = [stack.web_python_path(), "-c", f"import socket; socket.create_connection(({SMTP_SINK!r}, 1025), 2)"]
    wait_until(lambda: stack.exec("web", connect, timeout=30) is not None, 30,  # raises until it connects
               what=f"{SMTP_SINK} to accept connections from web")
    yield name
    docker.docker("rm", "-f", name, check=False)


def sink_log(sink: str) -> str:
    log = docker.docker("logs", sink, check=False)
    return log.stdout + log.stderr


def wait_for_mail(sink: str, to: str) -> str:
    wait_until(lambda: f"To: {to}" in sink_log(sink), MAIL_DEADLINE, what=f"a mail to {to} in {sink}'s log")
    return sink_log(sink)


def test_password_reset_mail_arrives_and_its_link_sets_a_new_password(stack, smtp_sink):
    user, email = "reset-test-user", "reset-test-user@dam-inventory.test"
    stack.ensure_user(user, random_secret())
    stack.portal_python("from django.contrib.auth.models import User\n"
                        f"User.objects.filter(username={user!r}).update(email={email!r})\n")

    portal = Portal.of(TEST_STACK)
    portal.get(RESET_PATH)  # the form's CSRF cookie
    sent = portal.post(RESET_PATH, {"email": email})
    assert sent.status_code == 302 and "done" in sent.headers["Location"], (sent.status_code, sent.text[:500])

    mail = wait_for_mail(smtp_sink, email)
    senders = [line for line in mail.splitlines() if line.startswith("From: ")]
    assert any(TEST_WEB_SETTINGS["DEFAULT_FROM_EMAIL"] in line for line in senders), mail[-2000:]
    links = re.findall(r"https://\S+/accounts/password/reset/\S+/", mail)
    assert links and links[0].startswith(TEST_STACK.base_url), f"no reset link to this portal:\n{mail[-2000:]}"

    # the link leads to the form (Django moves the token into the session on the way)
    form = portal.get(links[0].removeprefix(TEST_STACK.base_url), allow_redirects=True)
    assert form.status_code == 200 and "new_password1" in form.text, form.text[:500]
    new_password = random_secret()
    done = portal.post(form.url.removeprefix(TEST_STACK.base_url),
                       {"new_password1": new_password, "new_password2": new_password})
    assert done.status_code == 302 and "done" in done.headers["Location"], (done.status_code, done.text[:500])

    logged_in = Portal.of(TEST_STACK).login(user, new_password)  # raises when refused
    assert logged_in.get("/apps/").status_code == 200
