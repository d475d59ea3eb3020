"""Sign-in through the edge as an attacker would try it: password guessing locks the account
(django-axes, as Tethys configures it), and an X-Forwarded-For a client forges does not become
the address Django records (X-Forwarded-Proto: tests/e2e/test_edge.py)."""

import pytest

from stackctl.envfiles import random_secret
from stackctl.portal import LOGIN_PATH, visible_text

FORGED_ADDRESS = "203.0.113.77"  # TEST-NET-3: never a real client of the test stack


@pytest.fixture
def fresh_user(stack):
    name, password = f"guess-target-{random_secret()[:8].lower()}", random_secret()
    stack.ensure_user(name, password)
    return name, password


def failure_limit(stack) -> int:
    return stack.portal_python("from django.conf import settings\nresult = settings.AXES_FAILURE_LIMIT")


def login_post(portal, username, password, **headers):
    portal.csrf_token()
    return portal.post(LOGIN_PATH, {"username": username, "password": password, "login-submit": "login-submit"},
                       headers=headers)


def test_repeated_wrong_passwords_lock_the_account_with_a_clear_page(stack, fresh_user):
    name, password = fresh_user
    stack.portal().login(name, password)  # control: the right password works before the guesses
    limit = failure_limit(stack)
    assert limit > 0
    guesser = stack.portal()
    for _ in range(limit):
        login_post(guesser, name, "not-" + password)
    locked = stack.portal()
    resp = login_post(locked, name, password)
    assert resp.status_code == 429, f"the right password after {limit} failures got HTTP {resp.status_code}"
    assert "sessionid" not in locked.http.cookies, "a locked account was logged in"
    text = visible_text(resp.text)
    assert "exceeded the amount of allowed login attempts" in text, f"no clear lockout message: {text[:300]}"


def test_a_forged_x_forwarded_for_is_not_the_address_django_sees(stack, fresh_user):
    name, _ = fresh_user
    login_post(stack.portal(), name, "wrong", **{"X-Forwarded-For": FORGED_ADDRESS})
    seen = stack.portal_python(
        "from axes.models import AccessAttempt\n"
        f"result = list(AccessAttempt.objects.filter(username={name!r}).values_list('ip_address', flat=True))\n")
    assert seen, "the failed login was not recorded: the check below would prove nothing"
    assert FORGED_ADDRESS not in seen, f"Django took the client's own X-Forwarded-For: {seen}"
