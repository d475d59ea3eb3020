"""Backup and restore round trip, as an operator runs it:
dams added and a file in the app's workspace -> `make backup` -> a damaged copy of the archive
is refused by `make restore` before anything changes -> `make clean CONFIRM=1` -> `make up` ->
(the dams and the file are gone) -> `make restore FILE=...` -> the same dams, with the same
fields and places, and the same file.

It re-creates the test stack, so tests/conftest.py orders it last. Every make call names
the test stack and a throw-away backup folder explicitly, whatever the caller's environment
names, and the test refuses to run against a project that is not a test project."""

import io
import os
import subprocess
import tarfile

import pytest

from stackctl.docker import run
from stackctl.portal import unique_name

WORKSPACE_FILE = "/var/lib/tethys_persist/workspaces/backup-round-trip/notes.txt"

KEYS = ("id", "name", "owner", "river", "date_built", "lon", "lat")


def dams_by_name(portal):
    return {d["name"]: {k: d.get(k) for k in KEYS} for d in portal.dams_since(0)}


@pytest.mark.slow
def test_backup_clean_up_restore_gives_back_the_same_dams(stack, admin_credentials, tmp_path):
    assert stack.stack.project.endswith("-test"), f"refusing to wipe {stack.stack.project!r}: not a test project"
    env = {**os.environ, **stack.stack.compose_variables(), "BACKUP_DIR": str(tmp_path)}

    def make(*args, timeout):
        return run(["make", "--no-print-directory", *args], timeout=timeout, env=env)

    portal = stack.portal().login(*admin_credentials)
    names = [unique_name("Backup dam"), unique_name("Backup dam")]
    portal.add_dam_checked(names[0], owner="Other", river="Bear", lon=-112.1, lat=41.5)
    portal.add_dam_checked(names[1], owner="Army Corp", river="Jordan", date_built="1950-06-30")
    before = dams_by_name(portal)
    assert set(names) <= set(before)

    note = unique_name("kept in the workspace")
    stack.exec("web", ["sh", "-c", f'mkdir -p "$(dirname {WORKSPACE_FILE})" && cat > {WORKSPACE_FILE}'], input=note)

    make("backup", timeout=300)
    written = sorted(tmp_path.iterdir())
    assert len(written) == 1 and written[0].suffix == ".tar", f"make backup should write one archive, wrote {written}"
    with tarfile.open(written[0]) as tar:
        assert {"MANIFEST", "SHA256SUMS", "persist.tar", "roles.sql"} <= set(tar.getnames()), tar.getnames()

    damaged = damaged_copy(written[0], tmp_path / "damaged" / written[0].name)
    refused = subprocess.run(["make", "--no-print-directory", "restore", f"FILE={damaged}"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0, "a damaged archive was restored"
    assert "does not match its checksum" in refused.stdout + refused.stderr, refused.stdout[-2000:]
    assert dams_by_name(portal) == before, "the refused restore changed the data"

    make("clean", "CONFIRM=1", timeout=300)
    make("up", timeout=900)
    stack.wait_healthy("web", timeout=120)
    emptied = dams_by_name(stack.portal().login(*admin_credentials))
    assert not set(names) & set(emptied), "the dams survived `make clean`: the test proves nothing"
    gone = stack.exec("web", ["sh", "-c", f"cat {WORKSPACE_FILE} 2>/dev/null || echo gone"])
    assert note not in gone, "the workspace file survived `make clean`: the test proves nothing"

    make("restore", f"FILE={written[0]}", timeout=600)
    stack.wait_healthy("web", timeout=300)
    after = dams_by_name(stack.portal().login(*admin_credentials))
    assert after == before, (
        "restored dams differ:\n"
        f"missing: {sorted(set(before) - set(after))}\nextra: {sorted(set(after) - set(before))}\n"
        f"changed: {[n for n in set(before) & set(after) if before[n] != after[n]]}"
    )
    assert stack.exec("web", ["cat", WORKSPACE_FILE]) == note, "the workspace file was not restored"


def damaged_copy(archive, target):
    """The archive with one byte of its portal database dump changed (sizes unchanged)."""
    target.parent.mkdir(parents=True)
    with tarfile.open(archive) as src, tarfile.open(target, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith(".dump") and "tethys_platform" in member.name:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
            dst.addfile(member, io.BytesIO(data))
    return target
