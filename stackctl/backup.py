"""`make backup` and `make restore`: the stack's databases to one archive and back.

An archive (`backups/<project>-<UTC time>.tar`) holds a MANIFEST, the role definitions without
passwords (roles.sql) and one `pg_dump --format=custom` per application database: every
non-template database but `postgres`, i.e. the portal's and the app's persistent store.
pg_dump and pg_restore run inside the db container, so the host needs no PostgreSQL client.
"""

from __future__ import annotations

import datetime
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
        """Like shell(), with a file as input or output: a dump never has to fit in memory."""
        proc = subprocess.run(["docker", "exec", "-i", self.cid, "sh", "-c", script, "sh", *args],
                              stdin=stdin or subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise StackError(f"{what} failed: {proc.stderr.decode(errors='replace')[-1500:]}")

    def dump(self, name: str, target: Path) -> None:
        with target.open("wb") as out:
            self.stream('pg_dump -U "$POSTGRES_USER" --format=custom --dbname="$1"', name, stdout=out,
                        what=f"pg_dump of {name}")

    def psql(self, sql: str, check: bool = True):
        return self.shell('psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "$1"', sql,
                          input=b"", check=check)


def backup(compose: Compose, backup_dir: Path) -> Path:
    db = Database(compose)
    names = db.query(LIST_DATABASES)
    if not names:
        raise StackError("no application database found in db: nothing to back up")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup_dir.mkdir(parents=True, exist_ok=True)
    backup_dir.chmod(0o700)
    archive = backup_dir / f"{compose.stack.project}-{stamp}.tar"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Role definitions without passwords: the passwords stay those of the env files.
        roles = db.shell('pg_dumpall -U "$POSTGRES_USER" --roles-only --no-role-passwords', input=b"")
        (work / "roles.sql").write_bytes(roles.stdout)
        for name in names:
            say(f"dumping {name}")
            db.dump(name, work / f"{name}.dump")
        server = db.query("SHOW server_version")
        (work / "MANIFEST").write_text(
            f"project={compose.stack.project}\ncreated={stamp}\nserver={' '.join(server)}\n"
            f"databases={' '.join(names)}\n")
        partial = archive.with_name(archive.name + ".partial")
        try:
            with tarfile.open(partial, "w") as tar:
                for f in sorted(work.iterdir()):
                    tar.add(f, arcname=f.name)
            partial.chmod(0o600)
            partial.replace(archive)
        finally:
            partial.unlink(missing_ok=True)
    say(f"wrote {archive} ({archive.stat().st_size / 1e6:.1f} MB: {' '.join(names)})")
    say(f"restore it with: make restore FILE={_shown(archive)}")
    return archive


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
    return manifest, names


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
