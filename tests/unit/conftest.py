"""Fixtures for the app's tests. scripts/unit.sh provides: a local PostgreSQL + PostGIS (PG*
env), a TETHYS_HOME whose portal_config.yml points Django's default database at it, and the
app's source on PYTHONPATH.

How Tethys settings resolve here: pytest-django creates the portal's test database; once, in
`django_db_setup`, the app is synced into it (TethysApp row, custom setting, permissions), a
PersistentStoreService pointing at the local cluster is created and linked to `primary_db`
exactly as `tethys link` does, and the store database is (re)created through Tethys, which
enables PostGIS and runs the app's initializer. Those rows are committed outside the per-test
transactions, so every test sees them.
"""

import os

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from sqlalchemy import text

PS_SERVICE = "unit_ps"


def _require_pg():
    missing = [k for k in ("PGHOST", "PGPORT", "PGPASSWORD") if not os.environ.get(k)]
    if missing:
        pytest.exit(f"run the unit tests with scripts/unit.sh (missing env: {', '.join(missing)})", 2)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    _require_pg()
    from tethys_apps.models import TethysApp
    from tethys_apps.utilities import link_service_to_app_setting
    from tethys_services.models import PostgresPersistentStoreService as PersistentStoreService

    from tethysapp.dam_inventory.app import App

    with django_db_blocker.unblock():
        app = App()
        app.sync_with_tethys_db()
        app.register_app_permissions()
        PersistentStoreService.objects.create(
            name=PS_SERVICE,
            host=os.environ["PGHOST"],
            port=int(os.environ["PGPORT"]),
            username="postgres",
            password=os.environ["PGPASSWORD"],
        )
        assert link_service_to_app_setting(
            "persistent", PS_SERVICE, "dam_inventory", "ps_database", "primary_db"
        )
        db_app = TethysApp.objects.get(package="dam_inventory")
        setting = db_app.persistent_store_database_settings.get(name="primary_db")
        setting.create_persistent_store_database(refresh=True)


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
                        "TRUNCATE hydrograph_points, hydrographs, dams, dam_deletions "
                        "RESTART IDENTITY CASCADE"
                    )
                )


@pytest.fixture
def session(store_engine):
    from sqlalchemy.orm import Session

    s = Session(bind=store_engine)
    yield s
    s.close()


def _user(django_user_model, username, *groups, superuser=False):
    from django.contrib.auth.models import Group

    if superuser:
        user = django_user_model.objects.create_superuser(username, f"{username}@example.org", "pw")
    else:
        user = django_user_model.objects.create_user(username, f"{username}@example.org", "pw")
    for g in groups:
        user.groups.add(Group.objects.get(name=g))
    return user


@pytest.fixture
def editor(db, django_user_model):
    """Member of the app's `admin` permission group: add_dams and delete_dams."""
    return _user(django_user_model, "editor", "dam_inventory:admin")


@pytest.fixture
def viewer(db, django_user_model):
    """Logged in, no app permission."""
    return _user(django_user_model, "viewer")


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


@pytest.fixture
def set_max_dams(db):
    from tethysapp.dam_inventory.app import App

    from tethys_apps.models import TethysApp

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


def dam_form(**overrides):
    data = {
        "name": "Hoover",
        "owner": "Reclamation",
        "river": "Colorado",
        "date-built": "1936-03-01",
        "geometry": '{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[-114.737,36.016]}]}',
        "add-button": "add",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
