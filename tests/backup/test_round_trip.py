"""Backup and restore round trip, as an operator runs it:
dams added, one with an uploaded hydrograph, a file in the app's workspace and one in
GeoServer's data volume -> `make backup` -> a damaged copy of the archive is refused by
`make restore` before anything changes -> `make clean CONFIRM=1` -> `make up` -> (all of it
gone) -> `make restore FILE=...` -> the same dams, with the same fields, places and
hydrograph, and the same files.

GeoServer itself cannot run here (no registry): its data volume is proven with a plain file,
which is what the archive carries whatever GeoServer wrote.

It re-creates the test stack, so tests/conftest.py orders it last. Every make call names
the test stack and a throw-away backup folder explicitly, whatever the caller's environment
names, and the test refuses to run against a project that is not a test project."""

import io
import os
import subprocess
import tarfile

import pytest

from stackctl import images
from stackctl.docker import run
from stackctl.portal import add_succeeded, unique_name

WORKSPACE_FILE = "/var/lib/tethys_persist/workspaces/backup-round-trip/notes.txt"
GEOSERVER_FILE = "workspaces/backup-round-trip/layer.xml"
HYDROGRAPH_CSV = b"time,flow\n0,3.5\n6,120\n12,48.25\n"
HYDROGRAPH = [[0.0, 3.5], [6.0, 120.0], [12.0, 48.25]]

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
    with_hydrograph = portal.add_dam_checked(names[0], owner="Other", river="Bear", lon=-112.1, lat=41.5)
    portal.add_dam_checked(names[1], owner="Army Corp", river="Jordan", date_built="1950-06-30")
    assert add_succeeded(portal.assign_hydrograph(with_hydrograph, HYDROGRAPH_CSV))
    assert portal.hydrograph(with_hydrograph) == HYDROGRAPH
    before = dams_by_name(portal)
    assert set(names) <= set(before)

    note = unique_name("kept in the workspace")
    stack.exec("web", ["sh", "-c", f'mkdir -p "$(dirname {WORKSPACE_FILE})" && cat > {WORKSPACE_FILE}'], input=note)
    layer = unique_name("<layer>kept in GeoServer's data</layer>")
    geoserver_volume(stack, f'mkdir -p "$(dirname {GEOSERVER_FILE})" && cat > {GEOSERVER_FILE}', input=layer)

    make("backup", timeout=300)
    written = sorted(tmp_path.iterdir())
    assert len(written) == 1 and written[0].suffix == ".tar", f"make backup should write one archive, wrote {written}"
    with tarfile.open(written[0]) as tar:
        assert {"MANIFEST", "SHA256SUMS", "persist.tar", "geoserver.tar", "roles.sql"} <= set(tar.getnames()), \
            tar.getnames()

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
    assert layer not in geoserver_volume(stack, f"cat {GEOSERVER_FILE} 2>/dev/null || echo gone")

    make("restore", f"FILE={written[0]}", timeout=600)
    stack.wait_healthy("web", timeout=300)
    after = dams_by_name(stack.portal().login(*admin_credentials))
    assert after == before, (
        "restored dams differ:\n"
        f"missing: {sorted(set(before) - set(after))}\nextra: {sorted(set(after) - set(before))}\n"
        f"changed: {[n for n in set(before) & set(after) if before[n] != after[n]]}"
    )
    assert stack.exec("web", ["cat", WORKSPACE_FILE]) == note, "the workspace file was not restored"
    assert geoserver_volume(stack, f"cat {GEOSERVER_FILE}") == layer, "GeoServer's data volume was not restored"
    restored_id = next(d["id"] for d in stack.portal().login(*admin_credentials).dams_since(0) if d["name"] == names[0])
    assert stack.portal().login(*admin_credentials).hydrograph(restored_id) == HYDROGRAPH, "the hydrograph differs"


def geoserver_volume(stack, script, input=None):
    """SCRIPT run in GeoServer's data volume of the test stack (a throw-away container)."""
    volume = f"{stack.stack.project}_geoserver-data"
    return run(["docker", "run", "--rm", "-i", "--network", "none", "--user", "0", "-v", f"{volume}:/data", "-w", "/data",
                "--entrypoint", "sh", images.compose_variables()["BACKUP_IMAGE"], "-c", script], input=input).stdout


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
