#!/usr/bin/env python3
"""The one writer of the stack's backup archives, and its scheduler.

    stack-backup now        write one archive, then apply the retention and the off-site copy
    stack-backup schedule   the same at every BACKUP_SCHEDULE (crontab syntax, UTC), until stopped
    stack-backup health     exits 1 while the last scheduled run failed (the image's healthcheck)

`make backup` runs `now` in a one-off container of the `backup` service (web paused around it);
the service itself runs `schedule`. Both run this file, so an archive has one layout:

    <BACKUP_PROJECT>-<UTC time>.tar
        MANIFEST        project, time, server version, databases, volumes
        roles.sql       the role definitions, without passwords
        <db>.dump       one `pg_dump --format=custom` per application database
        persist.tar     the tethys-persist volume (workspaces, uploads)
        geoserver.tar   GeoServer's data volume, when it holds anything
        SHA256SUMS      of every file above

It is written as `<name>.partial` and renamed only once complete, so a crash never leaves a
half archive under an archive's name. The databases are read as BACKUP_DB_USERNAME, a role that
can read every table and change nothing; its password reaches libpq through a password file
that lives as long as the run, never through the environment.

Retention (KEEP_DAILY, KEEP_WEEKLY) keeps the newest archive of each of the last KEEP_DAILY days
and of the last KEEP_WEEKLY ISO weeks that have one. With RESTIC_REPOSITORY set, each archive
is also sent to that restic repository (initialised on first use; its password from
RESTIC_PASSWORD_FILE), which is then pruned with the same retention.

stackctl imports this file for the archive format and the retention when it restores.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "MANIFEST"
ROLES = "roles.sql"
CHECKSUMS = "SHA256SUMS"
# Archive member -> where the service mounts the volume (read-only); compose names the volumes.
VOLUMES = {
    "persist.tar": ("tethys-persist", "/volumes/tethys-persist"),
    "geoserver.tar": ("geoserver-data", "/volumes/geoserver-data"),
}
# persist.tar is archived even when empty: a restore then empties the volume as it was.
ALWAYS_ARCHIVED = {"persist.tar"}
LIST_DATABASES = ("SELECT datname FROM pg_database WHERE NOT datistemplate "
                  "AND datname <> 'postgres' ORDER BY 1")
STATUS_FILE = Path(tempfile.gettempdir()) / "stack-backup.status"
DEFAULT_SCHEDULE = "30 2 * * *"


class BackupError(Exception):
    """A backup cannot be made; the message says what to set or fix."""


def say(message: str) -> None:
    print(f"[backup] {message}", flush=True)


# ----------------------------------------------------------------------------- settings
def setting(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def secret(name: str) -> str:
    """NAME, or the content of the file NAME_FILE names."""
    if os.environ.get(name):
        return os.environ[name]
    path = os.environ.get(name + "_FILE")
    if not path:
        raise BackupError(f"{name} is not set: set {name}_FILE to a file holding it (a Docker secret)")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise BackupError(f"{name}_FILE={path} cannot be read: {exc.strerror}") from exc


def count(name: str, default: int) -> int:
    raw = setting(name) or str(default)
    if not raw.isdigit():
        raise BackupError(f"{name}={raw!r} is not a whole number of archives (0 or more)")
    return int(raw)


def backup_dir() -> Path:
    path = Path(setting("BACKUP_DIR", "/backups"))
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise BackupError(f"BACKUP_DIR {path} is not a folder this user (uid {os.getuid()}) can write: "
                          "mount the host's backup folder there, owned by this user")
    return path


def project() -> str:
    name = setting("BACKUP_PROJECT")
    if not name or "/" in name:
        raise BackupError(f"BACKUP_PROJECT={name!r}: set it to the compose project's name")
    return name


# ----------------------------------------------------------------------------- the archive
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(path: Path) -> dict[str, str]:
    """{member: sha256} of a SHA256SUMS file."""
    listed = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    return listed


def read_manifest(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def archive_name(project_name: str, when: datetime.datetime) -> str:
    return f"{project_name}-{when.strftime(STAMP_FORMAT)}.tar"


def run(argv: list[str], what: str, stdout=subprocess.PIPE, **kwargs) -> subprocess.CompletedProcess:
    """ARGV's completed process (its output captured, or written to the file STDOUT)."""
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, **kwargs)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[-1500:]}")
    return proc


class Database:
    """libpq's tools as the backup role; its password in a password file of this run only."""

    def __init__(self, workdir: Path):
        self.user = setting("BACKUP_DB_USERNAME", "tethys_backup")
        passfile = workdir / ".pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"*:*:*:{self.user}:{secret('BACKUP_DB_PASSWORD')}\n")
        self.env = {**os.environ, "PGPASSFILE": str(passfile), "PGUSER": self.user,
                    "PGHOST": setting("PGHOST", "db"), "PGPORT": setting("PGPORT", "5432")}
        self.env.pop("BACKUP_DB_PASSWORD", None)

    def query(self, sql: str) -> list[str]:
        out = run(["psql", "-X", "-At", "-d", "postgres", "-c", sql], f"psql as {self.user}", env=self.env)
        return out.stdout.decode().split()

    def dump_roles(self, target: Path) -> None:
        with target.open("wb") as out:
            run(["pg_dumpall", "--roles-only", "--no-role-passwords", "-l", "postgres"],
                f"pg_dumpall --roles-only as {self.user}", stdout=out, env=self.env)

    def dump(self, name: str, target: Path) -> None:
        run(["pg_dump", "--format=custom", f"--file={target}", f"--dbname={name}"],
            f"pg_dump of {name} as {self.user}", env=self.env)


def archive_volume(source: str, target: Path) -> None:
    run(["tar", "-C", source, "-cf", str(target), "."], f"archiving the volume at {source}")


def write_archive(directory: Path, project_name: str) -> Path:
    """One complete archive in DIRECTORY (see the module docstring); its path."""
    now = datetime.datetime.now(datetime.timezone.utc)
    archive = directory / archive_name(project_name, now)
    partial = archive.with_name(archive.name + ".partial")
    work = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", dir=directory))
    try:
        db = Database(work)
        names = db.query(LIST_DATABASES)
        if not names:
            raise BackupError("the db server holds no application database: nothing to back up")
        members = work / "members"
        members.mkdir()
        say("role definitions (no passwords)")
        db.dump_roles(members / ROLES)
        for name in names:
            say(f"dumping database {name}")
            db.dump(name, members / f"{name}.dump")
        volumes = []
        for member, (volume, mount) in VOLUMES.items():
            if Path(mount).is_dir() and (member in ALWAYS_ARCHIVED or any(Path(mount).iterdir())):
                say(f"archiving the {volume} volume")
                archive_volume(mount, members / member)
                volumes.append(f"{volume}:{member}")
        server = " ".join(db.query("SHOW server_version"))
        (members / MANIFEST).write_text(
            f"project={project_name}\ncreated={now.strftime(STAMP_FORMAT)}\nserver={server}\n"
            f"databases={' '.join(names)}\nvolumes={' '.join(volumes)}\n")
        files = sorted(members.iterdir())
        (members / CHECKSUMS).write_text("".join(f"{sha256(f)}  {f.name}\n" for f in files))
        run(["tar", "-C", str(members), "-cf", str(partial), *[f.name for f in files], CHECKSUMS],
            "writing the archive")
        partial.chmod(0o600)
        partial.replace(archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        partial.unlink(missing_ok=True)
    say(f"wrote {archive.name} ({archive.stat().st_size / 1e6:.1f} MB: {' '.join(names)}"
        f"{', ' if volumes else ''}{', '.join(v.split(':')[1] for v in volumes)})")
    return archive


# ----------------------------------------------------------------------------- retention
def archives(directory: Path, project_name: str) -> list[tuple[datetime.datetime, Path]]:
    """The project's archives in DIRECTORY with their time (from the name), newest first."""
    found = []
    for path in directory.glob(f"{project_name}-*.tar"):
        try:
            when = datetime.datetime.strptime(path.stem[len(project_name) + 1:], STAMP_FORMAT)
        except ValueError:
            continue  # not one of ours
        found.append((when, path))
    return sorted(found, reverse=True)


def to_keep(times: list[datetime.datetime], keep_daily: int, keep_weekly: int) -> set[datetime.datetime]:
    """The newest of TIMES (newest first) in each of the last KEEP_DAILY days that have one,
    and in each of the last KEEP_WEEKLY ISO weeks that have one."""
    kept: set[datetime.datetime] = set()
    for keep, period in ((keep_daily, lambda t: t.date()), (keep_weekly, lambda t: t.isocalendar()[:2])):
        seen = []
        for when in times:
            if period(when) not in seen:
                seen.append(period(when))
                if len(seen) > keep:
                    break
                kept.add(when)
    return kept


def prune(directory: Path, project_name: str, keep_daily: int, keep_weekly: int) -> list[Path]:
    """Deletes the project's archives the retention does not keep; the deleted ones. Both 0
    keeps everything."""
    if not (keep_daily or keep_weekly):
        return []
    found = archives(directory, project_name)
    kept = to_keep([when for when, _ in found], keep_daily, keep_weekly)
    removed = [path for when, path in found if when not in kept]
    for path in removed:
        path.unlink()
        say(f"pruned {path.name} (keeping {keep_daily} daily, {keep_weekly} weekly)")
    return removed


# ----------------------------------------------------------------------------- off-site copy
class Restic:
    """The off-site copy: `restic` against RESTIC_REPOSITORY (a path or an S3-compatible URL)."""

    def __init__(self, repository: str):
        self.env = {**os.environ, "RESTIC_REPOSITORY": repository}
        if not self.env.get("RESTIC_PASSWORD_FILE"):
            raise BackupError("RESTIC_REPOSITORY is set but RESTIC_PASSWORD_FILE is not: set it to the "
                              "repository's password file (a Docker secret)")
        self.repository = repository

    def __call__(self, *args: str, what: str) -> subprocess.CompletedProcess:
        return run(["restic", "--no-cache", "--quiet", *args], f"restic {what} ({self.repository})", env=self.env)

    def ensure_initialised(self) -> None:
        probe = subprocess.run(["restic", "--no-cache", "cat", "config"], env=self.env, stdin=subprocess.DEVNULL,
                               capture_output=True)
        if probe.returncode != 0:
            say(f"initialising the restic repository {self.repository}")
            self("init", what="init")

    def copy(self, archive: Path, project_name: str, keep_daily: int, keep_weekly: int) -> None:
        self.ensure_initialised()
        say(f"copying {archive.name} to {self.repository}")
        self("backup", "--host", project_name, "--tag", project_name, str(archive), what="backup")
        if keep_daily or keep_weekly:
            self("forget", "--prune", "--host", project_name, "--tag", project_name,
                 "--keep-daily", str(keep_daily), "--keep-weekly", str(keep_weekly), what="forget --prune")


# ----------------------------------------------------------------------------- commands
def backup_now() -> Path:
    directory, project_name = backup_dir(), project()
    keep_daily, keep_weekly = count("KEEP_DAILY", 7), count("KEEP_WEEKLY", 4)
    repository = setting("RESTIC_REPOSITORY")
    restic = Restic(repository) if repository else None
    archive = write_archive(directory, project_name)
    prune(directory, project_name, keep_daily, keep_weekly)
    if restic:
        restic.copy(archive, project_name, keep_daily, keep_weekly)
    return archive


def record(status: str) -> None:
    STATUS_FILE.write_text(f"{status} {datetime.datetime.now(datetime.timezone.utc).strftime(STAMP_FORMAT)}\n")


def scheduled_run() -> None:
    """One run of the schedule; whatever stops it marks the service unhealthy until a run succeeds."""
    try:
        archive = backup_now()
    except BackupError as exc:
        say(f"FAILED: {exc}")
        record("failed")
    except Exception:
        say(f"FAILED:\n{traceback.format_exc()}")
        record("failed")
    else:
        record(f"ok {archive.name}")


def schedule() -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    expression = setting("BACKUP_SCHEDULE", DEFAULT_SCHEDULE)
    try:
        trigger = CronTrigger.from_crontab(expression, timezone=datetime.timezone.utc)
    except ValueError as exc:
        raise BackupError(f"BACKUP_SCHEDULE={expression!r} is not a crontab schedule "
                          f"(minute hour day month weekday, e.g. {DEFAULT_SCHEDULE!r}): {exc}") from exc
    # Everything a run needs is checked now, not at 2:30 in the night.
    backup_dir(), project(), count("KEEP_DAILY", 7), count("KEEP_WEEKLY", 4), secret("BACKUP_DB_PASSWORD")
    if setting("RESTIC_REPOSITORY"):
        Restic(setting("RESTIC_REPOSITORY"))
    STATUS_FILE.unlink(missing_ok=True)
    scheduler = BlockingScheduler(timezone=datetime.timezone.utc)
    scheduler.add_job(scheduled_run, trigger, max_instances=1, coalesce=True, misfire_grace_time=3600)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    upcoming = trigger.get_next_fire_time(None, datetime.datetime.now(datetime.timezone.utc))
    say(f"scheduled {expression!r} (UTC); next run {upcoming:%Y-%m-%d %H:%M:%S %Z}")
    scheduler.start()  # returns once SIGTERM shut it down


def health() -> int:
    """0 unless the last scheduled run failed (no run yet is healthy)."""
    try:
        status = STATUS_FILE.read_text()
    except FileNotFoundError:
        return 0
    print(status.strip())
    return 1 if status.startswith("failed") else 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "schedule"
    try:
        if command == "now":
            backup_now()
        elif command == "schedule":
            schedule()
        elif command == "health":
            return health()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except BackupError as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
