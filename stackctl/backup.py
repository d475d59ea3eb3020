"""`make backup` and `make restore`: the stack's data to one archive and back.

The archive is written by the backup image's own code (images/backup/stack_backup.py, whose
docstring gives its layout), run once in a one-off container of the `backup` service: the
same writer as the scheduled backups, as the read-only role tethys_backup, with backup.env's
retention and off-site copy. web is paused meanwhile, so the databases and the files are of
one moment.

A restore is an operator's act and runs from the host: it checks every checksum before it
changes anything (a damaged archive is refused), replaces each database with pg_restore inside
the db container as its admin, and each archived volume from a throw-away container.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import tarfile
import tempfile
from pathlib import Path

from stackctl import docker, images
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.health import wait_healthy
from stackctl.settings import ROOT


def _stream(argv: list[str], *, stdin=None, stdout=None, what: str) -> None:
    """Runs ARGV with files as its input or output (an archive never has to fit in memory);
    fails with WHAT and the command's last error lines."""
    proc = subprocess.run(argv, stdin=stdin or subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise StackError(f"{what} failed: {proc.stderr.decode(errors='replace')[-1500:]}")


class Database:
    """psql, pg_dump and pg_restore in the running db container, as its superuser."""

    def __init__(self, compose: Compose):
        if compose.state("db") != "healthy":
            raise StackError(f"the db service of {compose.stack.project!r} is not running and healthy: "
                             "start the stack with `make up` first")
        self.cid = compose.require_container("db")

    def shell(self, script: str, *args: str, input: bytes | None = None, check: bool = True):
        """Runs `script` in the container's sh, where $POSTGRES_USER and $1.. expand."""
        return docker.docker("exec", "-i", self.cid, "sh", "-c", script, "sh", *args,
                             input=input, check=check, timeout=3600)

    def query(self, sql: str) -> list[str]:
        out = self.shell('psql -X -U "$POSTGRES_USER" -d postgres -At -c "$1"', sql, input=b"").stdout
        return out.decode().split()

    def stream(self, script: str, *args: str, stdin=None, stdout=None, what: str) -> None:
        """Like shell(), with a file as input or output."""
        _stream(["docker", "exec", "-i", self.cid, "sh", "-c", script, "sh", *args],
                stdin=stdin, stdout=stdout, what=what)

    def psql(self, sql: str, check: bool = True):
        return self.shell('psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "$1"', sql,
                          input=b"", check=check)


def _archive_format():
    """images/backup/stack_backup.py, the one writer of archives: its layout and retention."""
    spec = importlib.util.spec_from_file_location("stack_backup", ROOT / "images" / "backup" / "stack_backup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


archive_format = _archive_format()


class Volume:
    """A named volume of the stack, replaced from an archive by a throw-away container of the
    backup image: root with only the capabilities that restoring files with their owners takes."""

    RESTORE_CAPABILITIES = ("CHOWN", "FOWNER", "DAC_OVERRIDE")

    def __init__(self, compose: Compose, name: str):
        self.name = f"{compose.stack.project}_{name}"
        if docker.docker("volume", "inspect", self.name, check=False).returncode != 0:
            # as compose would have made it, so compose keeps managing it
            docker.docker("volume", "create", "--label", f"com.docker.compose.project={compose.stack.project}",
                          "--label", f"com.docker.compose.volume={name}", self.name)
        self.image = images.compose_variables()["BACKUP_IMAGE"]

    def load(self, source: Path) -> None:
        caps = [a for cap in self.RESTORE_CAPABILITIES for a in ("--cap-add", cap)]
        with source.open("rb") as archive:
            _stream(["docker", "run", "--rm", "-i", "--network", "none", "--user", "0", "--cap-drop", "ALL", *caps,
                     "--entrypoint", "sh", "-v", f"{self.name}:/data", self.image, "-c",
                     "find /data -mindepth 1 -delete && tar -C /data --same-owner -xpf -"],
                    stdin=archive, what=f"restoring volume {self.name}")


@contextlib.contextmanager
def paused(compose: Compose):
    """web paused (its connections held, nothing written) while the snapshot is taken."""
    web = compose.container_id("web")
    running = bool(web) and compose.state("web") in ("healthy", "running", "starting", "unhealthy")
    if running:
        docker.docker("pause", web)
    try:
        yield
    finally:
        if running:
            docker.docker("unpause", web, check=False)


def backup(compose: Compose, keep_daily: str | None = None, keep_weekly: str | None = None) -> Path:
    """One archive now, by the backup service's own code (`stack-backup now` in a one-off
    container), web paused so that the databases and the files are of one moment; KEEP_DAILY
    and KEEP_WEEKLY, when given, override backup.env's retention for this run."""
    Database(compose)  # fails early, with advice, unless db is up and healthy
    images.build_backup()  # a stack started before the backup image existed
    directory = compose.stack.backup_dir
    before = {path for _, path in archive_format.archives(directory, compose.stack.project)}
    overrides = [a for name, value in (("KEEP_DAILY", keep_daily), ("KEEP_WEEKLY", keep_weekly)) if value is not None
                 for a in ("-e", f"{name}={value}")]
    runner = Compose(compose.stack, profiles=("backup",))
    say(f"backing up {compose.stack.project!r} into {_shown(directory)} (web paused meanwhile)")
    with paused(compose):
        proc = runner("run", "--rm", "-T", "--no-deps", *overrides, "backup", "now", capture=False, check=False,
                      timeout=3600)
    if proc.returncode != 0:
        raise StackError(f"the backup failed (exit {proc.returncode}, see above); nothing was replaced")
    written = [path for _, path in archive_format.archives(directory, compose.stack.project) if path not in before]
    if not written:
        raise StackError(f"the backup reported success but wrote no archive into {directory}")
    say(f"restore it with: make restore FILE={_shown(written[0])}")
    return written[0]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _read_archive(path: Path, work: Path) -> tuple[dict[str, str], list[str]]:
    if not path.is_file():
        raise StackError(f"{path}: no such file (ls backups/)")
    try:
        with tarfile.open(path) as tar:
            tar.extractall(work, filter="data")
    except tarfile.TarError as exc:
        raise StackError(f"{path} is not a readable tar archive: {exc}") from exc
    if not (work / "MANIFEST").is_file() or not (work / "roles.sql").is_file():
        raise StackError(f"{path} was not written by `make backup` (no MANIFEST or roles.sql)")
    manifest = archive_format.read_manifest(work / "MANIFEST")
    names = manifest.get("databases", "").split()
    if not names:
        raise StackError(f"{path} names no database")
    for name in names:
        dump = work / f"{name}.dump"
        if not dump.is_file() or dump.stat().st_size == 0:
            raise StackError(f"{path} lacks {name}.dump")
    _verify(path, work)
    return manifest, names


def _verify(path: Path, work: Path) -> None:
    """Every file against SHA256SUMS, before anything is changed (archives made before
    checksums existed are said to be unchecked)."""
    sums = work / archive_format.CHECKSUMS
    if not sums.is_file():
        say(f"{path} has no {sums.name} (made by an older version): restoring it unchecked")
        return
    listed = archive_format.read_checksums(sums)
    for name, digest in listed.items():
        member = work / name
        if not member.is_file() or archive_format.sha256(member) != digest:
            raise StackError(f"{path} is damaged: {name} does not match its checksum in {sums.name}. "
                             "Nothing was changed; restore another archive (ls backups/)")
    say(f"every file of the archive matches its checksum ({len(listed)} files)")


def restore(compose: Compose, archive: Path, timeout: float = 300) -> None:
    """Stops web, creates the archive's missing roles (no passwords: existing roles keep
    theirs), replaces each database of the archive (DROP ... WITH (FORCE), then pg_restore
    --create), runs setup once (role passwords and attributes, migrations), starts web again
    and waits for it. Databases not in the archive are left alone."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest, names = _read_archive(archive, work)
        db = Database(compose)
        say(f"restoring {manifest.get('created', '?')} from {archive} into {compose.stack.project!r}: {' '.join(names)}")
        web_was_up = compose.state("web") not in ("missing", "exited", "created")
        if web_was_up:
            say("stopping web while the databases are replaced")
            compose("stop", "web", capture=False)
        _create_missing_roles(db, (work / "roles.sql").read_text())
        for name in names:
            say(f"replacing database {name}")
            db.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            with (work / f"{name}.dump").open("rb") as dump:
                db.stream('pg_restore -U "$POSTGRES_USER" --create --exit-on-error --dbname=postgres', stdin=dump,
                          what=f"pg_restore of {name} (the database may be missing now: fix the cause and "
                               "run the restore again)")
        for volume, member in _volumes(manifest):
            say(f"replacing the {volume} volume")
            Volume(compose, volume).load(work / member)
    if not web_was_up:
        say("web was not running before the restore: leaving it stopped (make up starts it)")
        return
    # The archive's role attributes and schema may be older than this stack's: setup re-asserts
    # the roles (passwords of the env files, no privileges) and migrates before web serves.
    say("running setup (roles, migrations) on the restored databases")
    setup = compose("run", "--rm", "--no-deps", "-T", "setup", capture=False, check=False, timeout=timeout)
    if setup.returncode != 0:
        raise StackError(f"setup failed on the restored databases (exit {setup.returncode}, see above); web is "
                         "stopped: fix the cause and run `make up`")
    say("starting web")
    compose("up", "-d", "--no-deps", "web", capture=False)
    wait_healthy(compose, ["web"], timeout)
    say("restore done")


def _volumes(manifest: dict[str, str]) -> list[tuple[str, str]]:
    """[(volume, archive member)] of an archive (before `volumes=`: `persist=` alone)."""
    if "volumes" in manifest:
        return [tuple(entry.split(":", 1)) for entry in manifest["volumes"].split()]
    return [("tethys-persist", manifest["persist"])] if manifest.get("persist") else []


def _create_missing_roles(db: Database, roles_sql: str) -> None:
    say("creating missing roles")
    for statement in roles_sql.splitlines():
        # "already exists" is expected and harmless: existing roles keep attributes and passwords.
        if statement.startswith("CREATE ROLE "):
            proc = db.psql(statement, check=False)
            if proc.returncode != 0 and b"already exists" not in proc.stderr:
                raise StackError(f"{statement} failed: {proc.stderr.decode().strip()}")
        # Attributes as dumped (LOGIN, CREATEDB...), never passwords.
        elif statement.startswith("ALTER ROLE ") and "PASSWORD" not in statement:
            db.psql(statement, check=False)
