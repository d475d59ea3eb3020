"""The stack's env files and secrets: the one parser of env files, the one secret generator,
and the writer of `${ENV_DIR}/<service>.env` from `env/<service>.env.example`.

Every secret lives in its own file, `${ENV_DIR}/secrets/<name in lower case>`, which compose
hands to the containers as a Docker secret; the env files name it as NAME_FILE. Nothing here
overwrites an existing file: an operator's edits, and the secrets the data volumes were
initialised with, must survive every `make up`.
"""

from __future__ import annotations

import os
import re
import secrets
import string
from pathlib import Path

from stackctl import tls
from stackctl.console import StackError, say
from stackctl.settings import ENV_EXAMPLES_DIR, ROOT, Stack

# Every secret of the stack; docker-compose.yml declares one Docker secret per name.
SECRET_NAMES = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "GEOSERVER_PASSWORD",
    "SECRET_KEY",
    "TETHYS_DB_PASSWORD",
    "TETHYS_DB_SUPERUSER_PASS",
    "PORTAL_SUPERUSER_PASSWORD",
    "BACKUP_DB_PASSWORD",
    "RESTIC_PASSWORD",
)
SECRET_LENGTH = 40
# Django's deploy check wants a key of 50 characters or more (security.W009).
SECRET_KEY_LENGTH = 64
# Letters and digits only: safe in env files, YAML, URLs and a Redis config line, and never
# read as a number or a boolean. 40 of them carry about 238 bits.
SECRET_ALPHABET = string.ascii_letters + string.digits
KEY_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads them: comments and blank lines skipped, an optional
    `export `, matching quotes around a value removed; the last assignment wins."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        line = line.removeprefix("export ")
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def random_secret(length: int = SECRET_LENGTH) -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(length))


def ensure_secret_file(path: Path, value: str | None = None, mode: int = 0o600, length: int = SECRET_LENGTH) -> str:
    """The secret kept in PATH, written once (VALUE, else a random one) if missing or empty."""
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, (value or random_secret(length)) + "\n", mode)
    return path.read_text().strip()


def example_value(service: str, name: str) -> str:
    """NAME as env/<service>.env.example sets it (empty when it does not)."""
    return read_env_file(ENV_EXAMPLES_DIR / f"{service}.env.example").get(name, "")


def resolve(values: dict[str, str], name: str) -> str | None:
    """NAME's value, or the content of the file NAME_FILE names (a host path, relative to
    the checkout when not absolute)."""
    if values.get(name):
        return values[name]
    ref = values.get(name + "_FILE")
    if ref:
        path = Path(ref) if Path(ref).is_absolute() else ROOT / ref
        if path.is_file():
            return path.read_text().strip()
    return None


def stack_value(stack: Stack, service: str, name: str) -> str | None:
    """NAME as the stack's <service>.env sets it, secrets read from their files."""
    return resolve(read_env_file(stack.env_file(service)), name)


def set_value(path: Path, key: str, value: str) -> None:
    """Sets KEY in an existing env file, in place (appended when absent)."""
    lines = path.read_text().splitlines()
    out, found = [], False
    for line in lines:
        if line.startswith(key + "="):
            line, found = f"{key}={value}", True
        out.append(line)
    if not found:
        out.append(f"{key}={value}")
    write_private(path, "\n".join(out) + "\n")


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Replaces PATH with TEXT at once; the file has MODE from its creation, so a secret is
    never readable by others, not even while it is written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as out:
        out.write(text)
    tmp.chmod(mode)  # whatever the umask took away
    tmp.replace(path)


class EnvWriter:
    """Writes one stack's env files and secrets (see the module docstring)."""

    def __init__(self, stack: Stack, overrides: dict[str, str] | None = None):
        self.stack = stack
        # A value set here (or in the caller's environment when the file is first written)
        # wins over the example's default: ASGI_PROCESSES=4, or a secret of your choosing.
        self.overrides = dict(overrides or {})

    def secret_path(self, name: str) -> Path:
        return self.stack.secrets_dir / name.lower()

    def secret_ref(self, name: str) -> str:
        return f"{self.stack.env_dir_ref}/secrets/{name.lower()}"

    def _chosen(self, key: str) -> str | None:
        return self.overrides.get(key, os.environ.get(key))

    def ensure_secret(self, name: str, value: str | None = None) -> None:
        path = self.secret_path(name)
        if path.exists() and path.read_text().strip():
            return
        # 644 inside a 700 directory: only root on the host reaches it, and the container's
        # unprivileged user can read the bind-mounted copy.
        ensure_secret_file(path, value, mode=0o644,
                           length=SECRET_KEY_LENGTH if name == "SECRET_KEY" else SECRET_LENGTH)
        say(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    def derived(self, key: str) -> str | None:
        """Defaults that follow where the stack is published."""
        hosts = ["localhost", "127.0.0.1"]
        if self.stack.bind not in ("127.0.0.1", "0.0.0.0", "localhost"):
            hosts.append(self.stack.bind)
        if key == "ALLOWED_HOSTS":
            return ",".join(hosts)
        if key == "CSRF_TRUSTED_ORIGINS":
            scheme, port = self.stack.scheme, self.stack.port
            suffix = "" if (scheme, port) in (("https", 443), ("http", 80)) else f":{port}"
            return ",".join(f"{scheme}://{h}{suffix}" for h in hosts)
        if key in ("TLS_CERTIFICATE_FILE", "TLS_KEY_FILE"):
            return f"{self.stack.env_dir_ref}/secrets/{tls.SERVER_CERT if key == 'TLS_CERTIFICATE_FILE' else tls.SERVER_KEY}"
        return None

    def render(self, example: Path) -> str:
        out = []
        for line in example.read_text().splitlines():
            match = KEY_LINE.match(line)
            if not match:
                out.append(line)
                continue
            key, value = match.groups()
            name = key.removesuffix("_FILE")
            if key.endswith("_FILE") and name in SECRET_NAMES:
                self.ensure_secret(name, self._chosen(name))
                out.append(f"{key}={self.secret_ref(name)}")
                continue
            chosen = self._chosen(key)
            if chosen is not None:
                value = chosen
            elif (derived := self.derived(key)) is not None:
                value = derived
            out.append(f"{key}={value}")
        return "\n".join(out) + "\n"

    def migrate_inline_secrets(self, target: Path) -> None:
        """An env file from before secrets moved to files: each inline secret moves, unchanged,
        into its file, and its line becomes NAME_FILE=..."""
        values = read_env_file(target)
        for name in SECRET_NAMES:
            value = values.get(name)
            if not value:
                continue
            self.ensure_secret(name, value)
            if self.secret_path(name).read_text().strip() != value:
                raise StackError(
                    f"{target} has {name} inline and {self.secret_ref(name)} holds another value: "
                    "keep the right one and delete the other"
                )
            text = re.sub(rf"(?m)^{name}=.*$", f"{name}_FILE={self.secret_ref(name)}", target.read_text())
            write_private(target, text)
            say(f"moved the inline {name} of {target.name} into {self.secret_ref(name)}")

    @staticmethod
    def report_missing_keys(example: Path, target: Path) -> None:
        missing = sorted(set(read_env_file(example)) - set(read_env_file(target)))
        if missing:
            say(f"note: {target.name} lacks {' '.join(missing)} (new in the example; defaults apply)")

    def write(self) -> None:
        examples = sorted(ENV_EXAMPLES_DIR.glob("*.env.example"))
        if not examples:
            raise StackError(f"no env/*.env.example in {ENV_EXAMPLES_DIR}: is this a complete checkout?")
        self.stack.env_dir.mkdir(parents=True, exist_ok=True)
        self.stack.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        self.stack.secrets_dir.chmod(0o700)
        ignore = self.stack.secrets_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")  # never committed, whatever the checkout's .gitignore says
        for example in examples:
            target = self.stack.env_dir / example.name.removesuffix(".example")
            if target.exists():
                self.migrate_inline_secrets(target)
                self.report_missing_keys(example, target)
                continue
            write_private(target, self.render(example))
            say(f"wrote {target} (mode 600)")
        for name in SECRET_NAMES:  # every secret compose declares, whichever example names it
            self.ensure_secret(name, self._chosen(name))
        # The edge's local certificate: served in TLS_MODE=local, and in acme mode until the
        # first ACME certificate arrives.
        names = [n.strip() for n in self.stack.edge_setting("SERVER_NAMES", "localhost").split(",") if n.strip()]
        if self.stack.bind not in ("0.0.0.0", "localhost"):
            names.append(self.stack.bind)
        tls.ensure_local_certificates(self.stack.secrets_dir, self.stack.project, names, self.stack.http_port)


def write_env_files(stack: Stack, overrides: dict[str, str] | None = None) -> None:
    EnvWriter(stack, overrides).write()
