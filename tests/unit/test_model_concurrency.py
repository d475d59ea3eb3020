"""max_dams under concurrency, on the real PostgreSQL: an add waits for an add in flight, so two
adds at count max-1 cannot both pass the check."""

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tethysapp.dam_inventory import model

POLL_LIMIT = 200  # x 50 ms: bound on waiting for the second add to block on the lock


def _dam_kwargs(name):
    return dict(name=name, owner="Other", river="R", date_built=dt.date(2000, 1, 1), lon=1.0, lat=2.0)


def test_second_add_waits_for_the_first_and_then_sees_the_inventory_full(store_engine):
    first = Session(bind=store_engine)
    # An add in flight: holds the add lock and has inserted, not yet committed.
    first.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": model.ADD_LOCK_KEY})
    first.execute(text(
        "INSERT INTO dams (name, owner, river, date_built, geom) "
        "VALUES ('First', 'Other', 'R', '2000-01-01', ST_SetSRID(ST_MakePoint(0, 0), 4326))"))

    outcome = {}

    def second_add():
        s = Session(bind=store_engine)
        try:
            model.add_dam(s, max_dams=1, **_dam_kwargs("Second"))
            outcome["result"] = "added"
        except model.InventoryFull:
            outcome["result"] = "full"
        finally:
            s.close()

    t = threading.Thread(target=second_add)
    t.start()
    try:
        _wait_then_commit(store_engine, first)
    finally:
        first.close()  # rolls back if the assertion failed, so nothing stays locked
        t.join(timeout=30)
    assert not t.is_alive()
    assert outcome["result"] == "full"
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dams")).scalar() == 1


def _wait_then_commit(store_engine, first):
    # Wait (bounded) until the second add is blocked on the advisory lock: proves it waits.
    with store_engine.connect() as conn:
        for _ in range(POLL_LIMIT):
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar()
            if waiting:
                break
            time.sleep(0.05)
    assert waiting == 1, "the second add did not wait for the add in flight"
    first.commit()


def test_add_returns_the_payload_it_notifies(store_engine, django_capture_on_commit_callbacks):
    s = Session(bind=store_engine)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        payload = model.add_dam(s, **_dam_kwargs("P"))
    s.close()
    assert callbacks[0].args[0]["dam"] == payload
    assert payload["lon"] == 1.0 and payload["lat"] == 2.0 and payload["date_built"] == "2000-01-01"


def test_replace_hydrograph_for_a_missing_dam_changes_nothing(store_engine):
    s = Session(bind=store_engine)
    with pytest.raises(LookupError):
        model.replace_hydrograph(s, 123456, [(0.0, 1.0)])
    s.close()
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hydrographs")).scalar() == 0
