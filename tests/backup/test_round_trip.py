"""Backup and restore round trip, as an operator runs it:
dams added -> `make backup` -> `make clean CONFIRM=1` -> `make up` -> (the dams are gone) ->
`make restore FILE=...` -> the same dams, with the same fields and places.

It re-creates the test stack, so tests/conftest.py orders it last. Every make call names
the test stack explicitly, whatever stack the caller's environment names."""

import os
import shutil

import pytest

from stackctl.docker import run
from stackctl.portal import unique_name
from stackctl.settings import ROOT, TEST_STACK

KEYS = ("id", "name", "owner", "river", "date_built", "lon", "lat")


def make(*args, timeout):
    env = dict(os.environ, **TEST_STACK.compose_variables())
    return run(["make", "--no-print-directory", *args], timeout=timeout, env=env)


def dams_by_name(portal):
    return {d["name"]: {k: d.get(k) for k in KEYS} for d in portal.dams_since(0)}


def backup_entries():
    folder = ROOT / "backups"
    return set(folder.iterdir()) if folder.is_dir() else set()


@pytest.mark.slow
def test_backup_clean_up_restore_gives_back_the_same_dams(stack, admin_credentials):
    portal = stack.portal().login(*admin_credentials)
    names = [unique_name("Backup dam"), unique_name("Backup dam")]
    portal.add_dam_checked(names[0], owner="Other", river="Bear", lon=-112.1, lat=41.5)
    portal.add_dam_checked(names[1], owner="Army Corp", river="Jordan", date_built="1950-06-30")
    before = dams_by_name(portal)
    assert set(names) <= set(before)

    existing = backup_entries()
    make("backup", timeout=300)
    new = sorted(backup_entries() - existing)
    assert len(new) == 1, f"make backup should write one new entry under backups/, wrote {new}"
    dump = new[0]
    try:
        make("clean", "CONFIRM=1", timeout=300)
        make("up", timeout=900)
        stack.wait_healthy("web", timeout=120)
        emptied = dams_by_name(stack.portal().login(*admin_credentials))
        assert not set(names) & set(emptied), "the dams survived `make clean`: the test proves nothing"

        make("restore", f"FILE={dump.relative_to(ROOT)}", timeout=600)
        stack.wait_healthy("web", timeout=300)
        after = dams_by_name(stack.portal().login(*admin_credentials))
        assert after == before, (
            "restored dams differ:\n"
            f"missing: {sorted(set(before) - set(after))}\nextra: {sorted(set(after) - set(before))}\n"
            f"changed: {[n for n in set(before) & set(after) if before[n] != after[n]]}"
        )
    finally:
        if dump.is_file():
            dump.unlink()
        elif dump.is_dir():
            shutil.rmtree(dump)
