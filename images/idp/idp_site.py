"""A one-file OpenID Connect provider for the test suite: Django settings, URLs and start.

`python3 idp_site.py` makes a fresh SQLite database in /tmp, one user (IDP_USERNAME,
IDP_PASSWORD, IDP_EMAIL), one confidential RS256 client (IDP_CLIENT_ID, IDP_CLIENT_SECRET,
IDP_REDIRECT_URIS, space-separated) that needs no consent screen, and a new RSA signing key,
then serves on 0.0.0.0:9000 with gunicorn. The provider's endpoints are under /o/
(discovery: /o/.well-known/openid-configuration/). Everything lives as long as the container.
"""

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DATABASE = "/tmp/idp.sqlite3"
KEY_FILE = "/tmp/idp-signing-key.pem"


def _signing_key() -> str:
    if not os.path.exists(KEY_FILE):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(KEY_FILE, "wb") as out:
            out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    with open(KEY_FILE) as f:
        return f.read()


# --- Django settings ---------------------------------------------------------------------
SECRET_KEY = os.environ.get("IDP_DJANGO_KEY", "test-identity-provider-only")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "idp_site"
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                  "oauth2_provider"]
# CommonMiddleware: a client that asks for the discovery document without its trailing slash
# (social-core does) is redirected to it.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware",
              "django.contrib.sessions.middleware.SessionMiddleware",
              "django.middleware.csrf.CsrfViewMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE}}
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "DIRS": [],
              "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth"]}}]
LOGIN_URL = "/login/"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": _signing_key(),
    "OAUTH2_VALIDATOR_CLASS": "idp_site.ClaimsValidator",
    "SCOPES": {"openid": "OpenID Connect", "profile": "your user name", "email": "your e-mail address"},
    "PKCE_REQUIRED": False,
}

# --- URLs ---------------------------------------------------------------------------------
from django.http import HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402


def login_page(request):
    """A bare login form (Django's LoginView needs a template this one-file site lacks)."""
    from django.contrib.auth import authenticate, login
    from django.middleware.csrf import get_token
    from django.shortcuts import redirect
    from django.utils.html import escape

    target = request.POST.get("next") or request.GET.get("next") or "/"
    if request.method == "POST":
        user = authenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
        if user is not None:
            login(request, user)
            return redirect(target)
    return HttpResponse(
        '<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="%s">'
        '<input type="hidden" name="next" value="%s"><input name="username"><input name="password" type="password">'
        '<button>Sign in</button></form>' % (get_token(request), escape(target)),
        status=401 if request.method == "POST" else 200)


def _urlpatterns():
    return [path("login/", login_page), path("o/", include("oauth2_provider.urls"))]


def _validator_class():
    from oauth2_provider.oauth2_validators import OAuth2Validator

    class ClaimsValidator(OAuth2Validator):
        """The ID token names the user, as the portal's sign-in expects."""

        def get_additional_claims(self, request):
            return {"preferred_username": request.user.username, "email": request.user.email}

    return ClaimsValidator


def __getattr__(name):
    """What needs Django's apps loaded: asked for only after set-up, since this one module is
    settings and URLconf at once."""
    if name == "ClaimsValidator":
        return _validator_class()
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


# --- start --------------------------------------------------------------------------------
def setup() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    from django.contrib.auth.models import User
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0, interactive=False)
    user, _ = User.objects.get_or_create(username=os.environ["IDP_USERNAME"])
    user.email = os.environ["IDP_EMAIL"]
    user.set_password(os.environ["IDP_PASSWORD"])
    user.save()
    Application.objects.update_or_create(
        client_id=os.environ["IDP_CLIENT_ID"],
        defaults=dict(name="portal", client_secret=os.environ["IDP_CLIENT_SECRET"],
                      client_type=Application.CLIENT_CONFIDENTIAL,
                      authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
                      redirect_uris=os.environ["IDP_REDIRECT_URIS"], algorithm=Application.RS256_ALGORITHM,
                      skip_authorization=True))


if __name__ == "__main__":
    setup()
    os.execvp("gunicorn", ["gunicorn", "--bind", "0.0.0.0:9000", "--workers", "2", "--access-logfile", "-",
                           "django.core.wsgi:get_wsgi_application()"])

