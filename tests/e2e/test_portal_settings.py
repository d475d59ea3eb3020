"""The official image's other switches, on the test stack (its web.env sets them:
tests/conftest.py TEST_WEB_SETTINGS): OTHER_SETTINGS reaches Django's settings; the sign-in
provider of ADD_BACKENDS / OAUTH_OPTIONS shows on the login page (the OAuth exchange itself
needs an identity provider, which no Debian or PyPI package on this machine provides); and the
portal's mail goes out through EMAIL_HOST: a password reset sent to a real SMTP server
(aiosmtpd, images/smtp-sink) arrives, and its link sets a new password that logs in. The
site settings (SITE_TITLE, PRIMARY_COLOR) are checked in the browser suite."""

from __future__ import annotations

import re

import pytest

from stackctl import docker, images
from stackctl.envfiles import random_secret
from stackctl.portal import LOGIN_PATH, Portal
from stackctl.settings import TEST_STACK
from tests.conftest import SMTP_SINK, TEST_WEB_SETTINGS
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
def smtp_sink(stack):
    name = f"{TEST_STACK.project}-smtp-sink"
    docker.docker("rm", "-f", name, check=False)
    stack.start_beside(name, images.build_smtp_sink(), alias=SMTP_SINK)
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
