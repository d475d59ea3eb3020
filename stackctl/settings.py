"""Which stack a command acts on, and the pinned versions every image choice starts from.

A stack is a compose project with its own env files, secrets and published ports, so the
test stack runs beside the operator's: both are `Stack` values, read from the environment
(COMPOSE_PROJECT_NAME, ENV_DIR, WEB_BIND, WEB_PORT, WEB_HTTP_PORT) or given by the caller.
The edge publishes the portal on WEB_PORT (HTTPS, or plain HTTP with TLS_MODE=off in
edge.env) and, in the TLS modes, redirects plain HTTP on WEB_HTTP_PORT to it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build"
VERSIONS_FILE = ROOT / "images" / "versions.env"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLES_DIR = ROOT / "env"

DEFAULT_PROJECT = "dam-inventory"
DEFAULT_ENV_DIR = "env"
DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 8443
DEFAULT_HTTP_PORT = 8080


def versions() -> dict[str, str]:
    """The pins of images/versions.env."""
    from stackctl.envfiles import read_env_file

    return read_env_file(VERSIONS_FILE)


def source_commit() -> str:
    """The checkout's commit, which published figures name ("unknown" outside a git checkout)."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  check=True).stdout.strip()

        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass(frozen=True)
class Stack:
    project: str = DEFAULT_PROJECT
    env_dir: Path = ROOT / DEFAULT_ENV_DIR
    bind: str = DEFAULT_BIND
    port: int = DEFAULT_PORT
    http_port: int = DEFAULT_HTTP_PORT

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "Stack":
        environ = os.environ if environ is None else environ
        env_dir = Path(environ.get("ENV_DIR") or DEFAULT_ENV_DIR)
        return cls(
            project=environ.get("COMPOSE_PROJECT_NAME") or DEFAULT_PROJECT,
            env_dir=env_dir if env_dir.is_absolute() else ROOT / env_dir,
            bind=environ.get("WEB_BIND") or DEFAULT_BIND,
            port=int(environ.get("WEB_PORT") or DEFAULT_PORT),
            http_port=int(environ.get("WEB_HTTP_PORT") or DEFAULT_HTTP_PORT),
        )

    @property
    def env_dir_ref(self) -> str:
        """ENV_DIR as written in env files and handed to compose: relative to the checkout
        when inside it, so it reads the same on every clone."""
        try:
            return str(self.env_dir.relative_to(ROOT))
        except ValueError:
            return str(self.env_dir)

    @property
    def host(self) -> str:
        return "localhost" if self.bind == "0.0.0.0" else self.bind

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def edge_setting(self, name: str, default: str = "") -> str:
        from stackctl.envfiles import read_env_file

        return read_env_file(self.env_file("edge")).get(name) or default

    @property
    def scheme(self) -> str:
        return "http" if self.edge_setting("TLS_MODE", "local") == "off" else "https"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host_port}"

    @property
    def ca_file(self) -> Path | None:
        """The certificate a client trusts the edge by: the local CA's in TLS_MODE=local,
        else None (the system's store)."""
        return self.secrets_dir / "local_ca.crt" if self.edge_setting("TLS_MODE", "local") == "local" else None

    def env_file(self, service: str) -> Path:
        return self.env_dir / f"{service}.env"

    @property
    def secrets_dir(self) -> Path:
        return self.env_dir / "secrets"

    @property
    def backup_dir(self) -> Path:
        """Where archives go (BACKUP_DIR, else backups/ of the checkout), created mode 700 on
        first use, owned by whoever runs stackctl."""
        path = Path(os.environ.get("BACKUP_DIR") or ROOT / "backups").resolve()
        if not path.is_dir():
            path.mkdir(mode=0o700, parents=True)
        return path

    @property
    def backup_scheduled(self) -> bool:
        """backup.env sets BACKUP_SCHEDULE: the backup service runs (compose profile "backup")."""
        from stackctl.envfiles import read_env_file

        return bool(read_env_file(self.env_file("backup")).get("BACKUP_SCHEDULE"))

    def compose_variables(self) -> dict[str, str]:
        """What docker-compose.yml interpolates for this stack."""
        backup_dir = self.backup_dir
        owner = backup_dir.stat()
        return {
            # The backup service writes into the folder as its owner.
            "BACKUP_DIR": str(backup_dir),
            "BACKUP_USER": f"{owner.st_uid}:{owner.st_gid}",
            "COMPOSE_PROJECT_NAME": self.project,
            "ENV_DIR": self.env_dir_ref,
            "WEB_BIND": self.bind,
            "WEB_PORT": str(self.port),
            "WEB_HTTP_PORT": str(self.http_port),
            # The edge's certificate (Docker secrets): the local one unless edge.env names others.
            "TLS_CERTIFICATE_FILE": self.edge_setting("TLS_CERTIFICATE_FILE", f"{self.env_dir_ref}/secrets/tls_certificate"),
            "TLS_KEY_FILE": self.edge_setting("TLS_KEY_FILE", f"{self.env_dir_ref}/secrets/tls_key"),
            # Where the redirect sends plain-HTTP clients: the published port unless the
            # operator's NAT or load balancer shows another.
            "PUBLIC_HTTPS_PORT": self.edge_setting("PUBLIC_HTTPS_PORT", str(self.port)),
            # web follows the edge: secure cookies and Django's HSTS setting.
            "TLS_MODE": self.edge_setting("TLS_MODE", "local"),
            "HSTS_SECONDS": self.edge_setting("HSTS_SECONDS", "63072000"),
        }


# The stack `make test` brings up beside the operator's: its own project, env files and
# port, and three workers, so a notification is proven to cross worker processes.
# TEST_PROJECT, TEST_ENV_DIR, TEST_WEB_PORT and TEST_WEB_HTTP_PORT move it, e.g. for two
# test runs at once.
TEST_STACK = Stack(
    project=os.environ.get("TEST_PROJECT") or "dam-inventory-test",
    env_dir=ROOT / (os.environ.get("TEST_ENV_DIR") or "env/test"),
    port=int(os.environ.get("TEST_WEB_PORT") or 18443),
    http_port=int(os.environ.get("TEST_WEB_HTTP_PORT") or 18080),
)
TEST_ASGI_PROCESSES = 3
