"""Fixtures of the app's unit tests. Collecting this directory prepares, once per run:
a project-local PostgreSQL + PostGIS cluster (stackctl.localpg), a throw-away TETHYS_HOME whose
portal_config.yml points Django's default database at it, and Django itself (pytest-django
then creates the portal's test database).

How Tethys settings resolve here: once, in `django_db_setup`, the steps the web image's Salt
states run (images/web/portal_setup.py) register the app in the test database (TethysApp row,
custom setting, permissions), create a persistent store service pointing at the local cluster,
link it to `primary_db`, and create the store database through Tethys, which enables PostGIS
and runs the app's initializer. Those rows are committed
outside the per-test transactions, so every test sees them.
"""

import os
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from sqlalchemy import text

from tests.unit.factories import make_user

PS_SERVICE = "unit_ps"
UNIT_CLUSTER = "pg-unit"
UNIT_DATABASE = "tethys_unit"
# Host names the test client and the JS client tests use.
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", "portal.example.org"]


def _bootstrap_django() -> None:
    """The local cluster, TETHYS_HOME and django.setup(), before any test module imports
    Tethys. Tethys registers the apps' URLs when Django starts, which needs the configured
    database to exist (empty is enough), or the app's URLs are silently missing."""
    import atexit
    import shutil
    import tempfile

    import django
    import yaml

    from stackctl.envfiles import random_secret
    from stackctl.localpg import ensure_cluster, ensure_database

    os.environ.update(ensure_cluster(UNIT_CLUSTER))
    ensure_database(dict(os.environ), UNIT_DATABASE)
    home = tempfile.mkdtemp(prefix="dam-unit-tethys.")
    atexit.register(shutil.rmtree, home, True)
    config = {"settings": {
        "SECRET_KEY": random_secret(),
        "DEBUG": False,
        "ALLOWED_HOSTS": ALLOWED_HOSTS,
        "DATABASES": {"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": UNIT_DATABASE, "USER": os.environ["PGUSER"],
            "PASSWORD": os.environ["PGPASSWORD"], "HOST": os.environ["PGHOST"], "PORT": int(os.environ["PGPORT"]),
        }},
    }}
    Path(home, "portal_config.yml").write_text(yaml.safe_dump(config))
    os.environ["TETHYS_HOME"] = home
    os.environ["DJANGO_SETTINGS_MODULE"] = "tethys_portal.settings"
    django.setup()


# Done while pytest collects this directory, before the test modules import Tethys. If it
# fails, the suite's modules are not collected (the run then fails: a suite ran no test)
# and the reason is printed at the end, while the other suites still run.
try:
    _bootstrap_django()
    BOOTSTRAP_ERROR = None
except Exception as exc:  # noqa: BLE001 - any cause must be reported, not crash collection
    BOOTSTRAP_ERROR = f"{type(exc).__name__}: {exc}"
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter):
    if BOOTSTRAP_ERROR:
        terminalreporter.write_line(
            f"unit suite not run: its PostgreSQL + PostGIS or Django could not be prepared: {BOOTSTRAP_ERROR}",
            red=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The app's store through the web image's own setup steps (images/web/portal_setup.py):
    a service on the local cluster, the link (which registers the app first), and the store
    database made anew (refresh), so no run sees rows of an earlier one."""
    from stackctl.dev import portal_setup_module

    setup = portal_setup_module()
    with django_db_blocker.unblock():
        setup.apply("persistent_store_service", name=PS_SERVICE, host=os.environ["PGHOST"],
                    port=int(os.environ["PGPORT"]), username=os.environ["PGUSER"], password=os.environ["PGPASSWORD"])
        setup.apply("persistent_store_link", app="dam_inventory", setting="primary_db", service=PS_SERVICE)
        setup.apply("persistent_store_synced", app="dam_inventory", setting="primary_db", refresh=True)


@pytest.fixture
def store_engine(db):
    """The app's own engine on the real PostGIS store (through the app's accessor)."""
    from tethysapp.dam_inventory import controllers

    return controllers._sessionmaker().kw["bind"]


@pytest.fixture(autouse=True)
def clean_store(request):
    """Empties the store's tables after a test that used it (tests commit for real)."""
    yield
    if "store_engine" in request.fixturenames or "db" in request.fixturenames:
        from tethysapp.dam_inventory import controllers

        for engine_maker in list(controllers._engines.values()):
            with engine_maker.kw["bind"].begin() as conn:
                conn.execute(
                    text(
                        "TRUNCATE hydrograph_points, hydrographs, dams, dam_deletions, dam_events "
                        "RESTART IDENTITY CASCADE"
                    )
                )


@pytest.fixture
def session(store_engine):
    from sqlalchemy.orm import Session

    s = Session(bind=store_engine)
    yield s
    s.close()


@pytest.fixture
def editor(db, django_user_model):
    """Member of the app's `admin` permission group: add_dams and delete_dams."""
    return make_user(django_user_model, "editor", "dam_inventory:admin")


@pytest.fixture
def viewer(db, django_user_model):
    """Logged in, no app permission."""
    return make_user(django_user_model, "viewer")


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


@pytest.fixture
def set_max_dams(db):
    from tethys_apps.models import TethysApp

    from tethysapp.dam_inventory.app import App

    def _clear():
        setting = TethysApp.objects.get(package="dam_inventory").custom_settings.get(name="max_dams")
        setting.value = ""
        setting.save()

    def _set(value):
        if value in (None, ""):
            _clear()  # "unset": what an admin gets by emptying the field
        else:
            App.set_custom_setting("max_dams", value)

    yield _set
    _clear()


class GroupListener:
    """A real channel on the configured (in-memory) layer, added to the notifications group."""

    def __init__(self):
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)("notifications", self.channel)

    def pending(self):
        # Messages already delivered to this channel (InMemoryChannelLayer keeps one queue per
        # channel); read without waiting, so an absent message is a definite "none".
        queue = self.layer.channels.get(self.channel)
        out = []
        while queue is not None and not queue.empty():
            _expiry, message = queue.get_nowait()
            out.append(message)
        return out

    def close(self):
        async_to_sync(self.layer.group_discard)("notifications", self.channel)


@pytest.fixture
def listener():
    lst = GroupListener()
    yield lst
    lst.close()
