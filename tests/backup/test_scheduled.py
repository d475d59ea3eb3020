"""Scheduled backups: the test stack's `backup` service on its nightly schedule, and the same
service run every minute into a folder that already holds older archives, with a retention and
a restic repository as the off-site copy. What it wrote is checked by this test's own code
(tarfile, hashlib), and what restic holds is read back with restic itself."""

import datetime
import hashlib
import subprocess
import tarfile

import pytest

from stackctl.compose import Compose
from stackctl.docker import docker
from tests.notifications import wait_until

NIGHTLY = "30 2 * * *"
STAMP = "%Y%m%dT%H%M%SZ"
RESTIC_PATH = "/backups/restic"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A backup folder of the test's own: compose mounts BACKUP_DIR into the service."""
    path = tmp_path / "archives"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("BACKUP_DIR", str(path))
    return path


@pytest.fixture
def backup_service(stack, folder):
    """compose for the test stack with the backup service's profile on, into FOLDER."""
    return Compose(stack.stack, profiles=("backup",))


def test_the_service_is_healthy_on_its_nightly_schedule(stack):
    assert stack.env_file("backup").get("BACKUP_SCHEDULE") == NIGHTLY
    assert stack.health("backup") == "healthy"
    logs = stack.compose("logs", "--no-color", "backup").stdout
    assert f"scheduled {NIGHTLY!r} (UTC)" in logs, logs[-2000:]


def test_a_run_every_minute_writes_a_checked_archive_keeps_what_the_retention_says_and_copies_it_offsite(
        stack, folder, backup_service):
    project = stack.stack.project
    now = datetime.datetime.now(datetime.timezone.utc)
    yesterday, older = now - datetime.timedelta(days=1), now - datetime.timedelta(days=3)
    old = {when.replace(hour=hour, minute=0, second=0).strftime(STAMP) for when in (yesterday, older) for hour in (1, 5)}
    for stamp in old:
        (folder / f"{project}-{stamp}.tar").write_bytes(b"an older archive")

    started = backup_service(
        "run", "-d", "-e", "BACKUP_SCHEDULE=* * * * *", "-e", "KEEP_DAILY=2", "-e", "KEEP_WEEKLY=0",
        "-e", f"RESTIC_REPOSITORY={RESTIC_PATH}", "backup").stdout.split()[-1]
    health = {}

    def run_finished() -> bool:
        proc = docker("exec", started, "stack-backup", "health", check=False)
        health.update(code=proc.returncode, status=proc.stdout.strip())
        return proc.returncode != 0 or proc.stdout.startswith("ok")

    try:
        # the next full minute, then the run itself (dumps, archive, restic), on a busy CI machine
        wait_until(run_finished, timeout=240, what="a scheduled run to finish")
    finally:
        logs = docker("logs", started, check=False).stdout
        docker("rm", "-f", started, check=False)
    assert health["code"] == 0, f"the scheduled run failed: {health['status']}\n{logs[-2000:]}"
    new = health["status"].split()[1]

    # KEEP_DAILY=2, KEEP_WEEKLY=0: the newest of today (the new one) and of yesterday (05:00).
    expected = {new, f"{project}-{yesterday.replace(hour=5, minute=0, second=0).strftime(STAMP)}.tar"}
    left = {p.name for p in folder.iterdir() if p.name.endswith(".tar")}
    assert left == expected, f"kept {sorted(left)}, the retention keeps {sorted(expected)}\n{logs[-2000:]}"

    members = _verified_members(folder / new)
    assert {"tethys_platform.dump", "dam_inventory_primary_db.dump", "persist.tar", "roles.sql"} <= members, members

    snapshots = _restic(backup_service, "snapshots", "--json").stdout
    assert f"/backups/{new}".encode() in snapshots, snapshots[-1000:]
    copy = _restic(backup_service, "dump", "latest", f"/backups/{new}").stdout
    assert copy == (folder / new).read_bytes(), "restic's copy differs from the archive"


@pytest.mark.parametrize("variable, value", [("BACKUP_SCHEDULE", "61 * * * *"), ("BACKUP_SCHEDULE", "nightly"),
                                             ("KEEP_DAILY", "seven")])
def test_a_bad_setting_stops_the_service_naming_it(backup_service, variable, value):
    proc = backup_service("run", "--rm", "-T", "-e", f"{variable}={value}", "backup", check=False, timeout=120)
    assert proc.returncode != 0, f"{variable}={value!r} was accepted"
    assert variable in proc.stdout + proc.stderr, proc.stdout[-1000:] + proc.stderr[-1000:]


def _verified_members(archive) -> set[str]:
    """The archive's members, each checked against its SHA256SUMS line."""
    with tarfile.open(archive) as tar:
        data = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    listed = dict(reversed(line.split("  ", 1)) for line in data["SHA256SUMS"].decode().splitlines())
    assert set(listed) == set(data) - {"SHA256SUMS"}, f"SHA256SUMS lists {sorted(listed)} of {sorted(data)}"
    for name, digest in listed.items():
        assert hashlib.sha256(data[name]).hexdigest() == digest, f"{name} does not match its checksum"
    return set(data)


def _restic(compose: Compose, *args: str) -> subprocess.CompletedProcess:
    argv = compose.argv("run", "--rm", "-T", "--entrypoint", "restic", "-e", f"RESTIC_REPOSITORY={RESTIC_PATH}",
                        "backup", "--no-cache", *args)
    proc = subprocess.run(argv, env=compose.environment(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc
