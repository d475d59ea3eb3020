"""The wiring every other test relies on: the app is harvested, its URLs resolve, and its
persistent store is a real PostGIS database."""

from django.urls import reverse
from sqlalchemy import text


def test_app_urls_resolve(db):
    assert reverse("dam_inventory:home") == "/apps/dam-inventory/"
    assert reverse("dam_inventory:add_dam") == "/apps/dam-inventory/dams/add/"
    assert reverse("dam_inventory:dams_since") == "/apps/dam-inventory/dams/since/"


def test_store_is_postgis_with_typed_point_column(store_engine):
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT postgis_lib_version()")).scalar().startswith("3.")
        row = conn.execute(
            text("SELECT type, srid FROM geometry_columns WHERE f_table_name = 'dams'")
        ).one()
    assert tuple(row) == ("POINT", 4326)


def test_initializer_is_idempotent(store_engine):
    from tethysapp.dam_inventory.model import init_primary_db

    init_primary_db(store_engine, True)
    init_primary_db(store_engine, False)
    with store_engine.connect() as conn:
        tables = set(conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )).scalars())
    assert {"dams", "hydrographs", "hydrograph_points", "dam_deletions"} <= tables
