"""`make backup` and `make restore`: the stack's data to one archive and back.

An archive (`backups/<project>-<UTC time>.tar`) holds a MANIFEST, the role definitions without
passwords (roles.sql), one `pg_dump --format=custom` per application database (every
non-template database but `postgres`: the portal's and the app's persistent store), the
`tethys-persist` volume (app workspaces and uploads, persist.tar) and SHA256SUMS of them all.
web is paused while they are taken, so the databases and the files are of one moment.
pg_dump and pg_restore run inside the db container, the volume is read and written by a
throw-away container of the web image, so the host needs no PostgreSQL client.

A restore checks every checksum before it changes anything: a damaged archive is refused.
`make backup KEEP_DAILY=7 KEEP_WEEKLY=4` also prunes the folder's older archives of the stack.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import subprocess
import tarfile
import tempfile
from pathlib import Path

from stackctl import docker
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.health import wait_healthy
from stackctl.settings import ROOT

LIST_DATABASES = ("SELECT datname FROM pg_database WHERE NOT datistemplate "
                  "AND datname <> 'postgres' ORDER BY 1")


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

    def dump(self, name: str, target: Path) -> None:
        with target.open("wb") as out:
            self.stream('pg_dump -U "$POSTGRES_USER" --format=custom --dbname="$1"', name, stdout=out,
                        what=f"pg_dump of {name}")

    def psql(self, sql: str, check: bool = True):
        return self.shell('psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "$1"', sql,
                          input=b"", check=check)


PERSIST_MOUNT = "/var/lib/tethys_persist"
PERSIST_ARCHIVE = "persist.tar"
CHECKSUMS = "SHA256SUMS"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


class PersistVolume:
    """The tethys-persist volume of web, read and written by a throw-away container of web's
    image as web's own user (the files are its)."""

    def __init__(self, compose: Compose):
        self.web = compose.require_container("web")
        info = docker.inspect(self.web)[0]
        self.image, self.user = info["Config"]["Image"], info["Config"]["User"] or "0"
        found = [m["Name"] for m in info["Mounts"] if m["Destination"] == PERSIST_MOUNT and m["Type"] == "volume"]
        if not found:
            raise StackError(f"web has no volume at {PERSIST_MOUNT}: is this the stack's web container?")
        self.volume = found[0]

    def _run(self, script: str, mode: str, **files):
        _stream(["docker", "run", "--rm", "-i", "--network", "none", "--user", self.user, "--entrypoint", "sh",
                 "-v", f"{self.volume}:/data:{mode}", self.image, "-c", script],
                what=f"{script.split()[0]} on volume {self.volume}", **files)

    def save(self, target: Path) -> None:
        with target.open("wb") as out:
            self._run("tar -C /data -cf - .", "ro", stdout=out)

    def load(self, source: Path) -> None:
        with source.open("rb") as archive:
            self._run("find /data -mindepth 1 -delete && tar -C /data -xf -", "rw", stdin=archive)


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(compose: Compose, backup_dir: Path, keep_daily: int = 0, keep_weekly: int = 0) -> Path:
    db = Database(compose)
    persist = PersistVolume(compose)
    names = db.query(LIST_DATABASES)
    if not names:
        raise StackError("no application database found in db: nothing to back up")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(STAMP_FORMAT)
    backup_dir.mkdir(parents=True, exist_ok=True)
    backup_dir.chmod(0o700)
    archive = backup_dir / f"{compose.stack.project}-{stamp}.tar"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with paused(compose):
            # Role definitions without passwords: the passwords stay those of the env files.
            roles = db.shell('pg_dumpall -U "$POSTGRES_USER" --roles-only --no-role-passwords', input=b"")
            (work / "roles.sql").write_bytes(roles.stdout)
            for name in names:
                say(f"dumping {name}")
                db.dump(name, work / f"{name}.dump")
            say(f"archiving the {PERSIST_MOUNT} volume (workspaces, uploads)")
            persist.save(work / PERSIST_ARCHIVE)
        server = db.query("SHOW server_version")
        (work / "MANIFEST").write_text(
            f"project={compose.stack.project}\ncreated={stamp}\nserver={' '.join(server)}\n"
            f"databases={' '.join(names)}\npersist={PERSIST_ARCHIVE}\n")
        (work / CHECKSUMS).write_text("".join(f"{_sha256(f)}  {f.name}\n" for f in sorted(work.iterdir())))
        partial = archive.with_name(archive.name + ".partial")
        try:
            with tarfile.open(partial, "w") as tar:
                for f in sorted(work.iterdir()):
                    tar.add(f, arcname=f.name)
            partial.chmod(0o600)
            partial.replace(archive)
        finally:
            partial.unlink(missing_ok=True)
    say(f"wrote {archive} ({archive.stat().st_size / 1e6:.1f} MB: {' '.join(names)}, {PERSIST_ARCHIVE})")
    say(f"restore it with: make restore FILE={_shown(archive)}")
    if keep_daily or keep_weekly:
        for old in prune(backup_dir, compose.stack.project, keep_daily, keep_weekly):
            say(f"pruned {old.name} (keeping {keep_daily} daily, {keep_weekly} weekly)")
    return archive


def archives(backup_dir: Path, project: str) -> list[tuple[datetime.datetime, Path]]:
    """The stack's archives in BACKUP_DIR with their time (from the name), newest first."""
    found = []
    for path in backup_dir.glob(f"{project}-*.tar"):
        try:
            when = datetime.datetime.strptime(path.stem[len(project) + 1:], STAMP_FORMAT)
        except ValueError:
            continue  # not one of ours
        found.append((when, path))
    return sorted(found, reverse=True)


def to_keep(times: list[datetime.datetime], keep_daily: int, keep_weekly: int) -> set[datetime.datetime]:
    """The newest archive of each of the last KEEP_DAILY days that have one, and of each of the
    last KEEP_WEEKLY ISO weeks that have one (TIMES newest first)."""
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


def prune(backup_dir: Path, project: str, keep_daily: int, keep_weekly: int) -> list[Path]:
    """Deletes the stack's archives that the retention does not keep; the removed ones. No
    retention (both 0) keeps everything."""
    if not (keep_daily or keep_weekly):
        return []
    found = archives(backup_dir, project)
    kept = to_keep([when for when, _ in found], keep_daily, keep_weekly)
    removed = [path for when, path in found if when not in kept]
    for path in removed:
        path.unlink()
    return removed


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
    manifest = dict(line.split("=", 1) for line in (work / "MANIFEST").read_text().splitlines() if "=" in line)
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
    sums = work / CHECKSUMS
    if not sums.is_file():
        say(f"{path} has no {CHECKSUMS} (made by an older version): restoring it unchecked")
        return
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name, digest in listed.items():
        member = work / name
        if not member.is_file() or _sha256(member) != digest:
            raise StackError(f"{path} is damaged: {name} does not match its checksum in {CHECKSUMS}. "
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
        if manifest.get("persist"):
            say(f"replacing the {PERSIST_MOUNT} volume")
            PersistVolume(compose).load(work / manifest["persist"])
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
