"""A project-local PostgreSQL + PostGIS cluster (the majors of images/versions.env) from Debian packages, for the unit tests
and `make dev` on a machine without Docker.

Each cluster has a name: its data lives in .local/NAME/data, so the unit tests (pg-unit) never
touch the data of `make dev` (pg). The server listens on a free 127.0.0.1 port (the same port
again while it stays free) and on a socket inside its data directory, so it never clashes with
a system cluster. PostgreSQL refuses to run as root, so the server runs as the `postgres`
system user; its superuser password is random, generated once into .local/NAME/password.

    python -m stackctl.localpg start|stop|status|env [NAME]
      start   installs the packages if missing (as root), creates the cluster once, starts it
              and prints `env` output
      env     prints shell assignments of PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from stackctl import docker, hosttools
from stackctl.console import StackError, say
from stackctl.envfiles import ensure_secret_file
from stackctl.settings import ROOT, versions

PG_VERSION = versions()["POSTGRES_MAJOR"]
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
POSTGIS_CONTROL = Path(f"/usr/share/postgresql/{PG_VERSION}/extension/postgis.control")
LOCAL_DIR = ROOT / ".local"


class Cluster:
    def __init__(self, name: str, base_dir: Path = LOCAL_DIR):
        self.name = name
        self.base = base_dir / name
        self.data = self.base / "data"
        self.password_file = self.base / "password"
        self.port_file = self.base / "port"
        self.log_file = self.base / "server.log"

    # --- running as the postgres user ---------------------------------------------------------

    def _as_postgres(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        user = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        elif user != "postgres":
            raise StackError("run as root (the server is started as the postgres user) or as postgres")
        return docker.run(argv, check=check, timeout=600)

    def _chown_postgres(self, path: Path) -> None:
        if os.getuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    # --- steps --------------------------------------------------------------------------------

    @staticmethod
    def ensure_packages() -> None:
        if not ((PG_BIN / "initdb").exists() and POSTGIS_CONTROL.exists()):
            hosttools.ensure_debian_packages(hosttools.postgres_packages())

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        say(f"creating cluster in {self.data}")
        self.base.mkdir(parents=True, exist_ok=True)
        self._chown_postgres(self.base)
        self.base.chmod(0o700)
        ensure_secret_file(self.password_file)
        self._chown_postgres(self.password_file)
        # Local socket: peer (only the postgres OS user); TCP on loopback: password.
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                           f"--pwfile={self.password_file}", "--auth-local=peer",
                           "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"])

    def is_running(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        return self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"],
                                 check=False).returncode == 0

    @staticmethod
    def _port_is_free(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    @staticmethod
    def _free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def start(self) -> None:
        self.ensure_packages()
        self.init()
        if self.is_running():
            return
        port = int(self.port_file.read_text().strip() or 0) if self.port_file.exists() else 0
        if not port or not self._port_is_free(port):
            port = self._free_port()
        self.port_file.write_text(f"{port}\n")
        say(f"starting PostgreSQL {PG_VERSION} on 127.0.0.1:{port} (log: {self.log_file})")
        self.log_file.touch()
        self._chown_postgres(self.log_file)
        # fsync=off: a throw-away dev/test cluster, where speed matters more than crash safety.
        started = self._as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", "60",
             "-o", f"-p {port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
            check=False)
        if started.returncode != 0:
            raise StackError(f"PostgreSQL did not start; see {self.log_file}")

    def stop(self) -> None:
        if self.is_running():
            say(f"stopping the cluster in {self.data}")
            self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def env(self) -> dict[str, str]:
        try:
            port = self.port_file.read_text().strip()
            password = self.password_file.read_text().strip()
        except OSError:
            port = password = ""
        if not port or not password:
            raise StackError(f"cluster {self.base} not created yet: run python -m stackctl.localpg start {self.name}")
        return {"PGHOST": "127.0.0.1", "PGPORT": port, "PGUSER": "postgres", "PGPASSWORD": password,
                "PGDATABASE": "postgres"}


def ensure_cluster(name: str) -> dict[str, str]:
    """Starts the cluster NAME (installing and creating it when needed) and returns the libpq
    environment that reaches it as its superuser."""
    cluster = Cluster(name)
    cluster.start()
    return cluster.env()


def stop_cluster(name: str) -> None:
    Cluster(name).stop()


def ensure_database(pg_env: dict[str, str], dbname: str) -> bool:
    """Creates the database DBNAME in the cluster of PG_ENV when missing; True if it did."""
    import psycopg

    params = {"host": pg_env["PGHOST"], "port": pg_env["PGPORT"], "user": pg_env["PGUSER"],
              "password": pg_env["PGPASSWORD"], "dbname": pg_env.get("PGDATABASE", "postgres")}
    with psycopg.connect(**params, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return False
        from psycopg import sql

        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return True


def main(argv: list[str]) -> int:
    usage = "usage: python -m stackctl.localpg start|stop|status|env [NAME]"
    if not argv or argv[0] not in ("start", "stop", "status", "env"):
        say(usage)
        return 2
    cluster = Cluster(argv[1] if len(argv) > 1 else "pg")
    try:
        if argv[0] == "start":
            cluster.start()
        elif argv[0] == "stop":
            cluster.stop()
            return 0
        elif argv[0] == "status":
            running = cluster.is_running()
            print(f"running on port {cluster.port_file.read_text().strip()}" if running else "stopped")
            return 0 if running else 3
        print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in cluster.env().items()))
        return 0
    except StackError as exc:
        say(f"ERROR: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
