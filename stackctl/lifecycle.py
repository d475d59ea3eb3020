"""A stack's life: `make up` (images, env files, start, wait for health), the welcome it
prints, and `make clean`."""

from __future__ import annotations

import os
import sys

from stackctl import envfiles, images
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.health import wait_healthy
from stackctl.settings import Stack

UP_TIMEOUT = float(os.environ.get("UP_TIMEOUT", "300"))


# Services that run once and exit (0 = done): setup makes the roles and databases and
# migrates before web starts (docker-compose.yml).
ONE_SHOT = ("setup",)


def services(compose: Compose) -> list[str]:
    return [*ONE_SHOT, "db", "redis", *(["geoserver"] if images.geoserver_included() else []), "edge", "web",
            *(["backup"] if compose.stack.backup_scheduled else [])]


def up(stack: Stack, overrides: dict[str, str] | None = None) -> Compose:
    """Builds what is missing, writes the env files on the first run, starts the stack and
    waits until setup has exited 0 and every other service is healthy."""
    images.prepare()
    envfiles.write_env_files(stack, overrides)
    compose = Compose(stack)
    compose.announce()
    say("starting the stack")
    # compose itself waits for setup before starting web, and fails when setup fails: then
    # the wait below names setup and shows its log instead of compose's bare exit code.
    started = compose("up", "-d", "--remove-orphans", capture=False, check=False)
    if started.returncode != 0:
        wait_healthy(compose, ONE_SHOT, UP_TIMEOUT, one_shot=ONE_SHOT, quiet=True)
        raise StackError(f"compose up failed (exit {started.returncode}, see above); setup completed, "
                         "so the cause is another service: make ps, make logs")
    wait_healthy(compose, services(compose), UP_TIMEOUT, one_shot=ONE_SHOT)
    reload_edge_certificate(compose)
    return compose


def reload_edge_certificate(compose: Compose) -> None:
    """TLS_MODE local or files: the certificate files may have been renewed (local) or replaced
    (files) while the edge ran; a reload loads them and keeps open connections."""
    if compose.stack.edge_setting("TLS_MODE", "local") in ("local", "files"):
        compose.exec("edge", ["edge-entrypoint", "use-certificate", "/run/secrets/tls_certificate", "/run/secrets/tls_key"])


def welcome(stack: Stack) -> None:
    web = envfiles.read_env_file(stack.env_file("web"))
    secret = web.get("PORTAL_SUPERUSER_PASSWORD_FILE") or f"{stack.env_dir_ref}/secrets/portal_superuser_password"
    geoserver = ("GeoServer runs inside the stack (internal network only)." if images.geoserver_included()
                 else "GeoServer is NOT part of this stack (no registry to pull it from).")
    mode = stack.edge_setting("TLS_MODE", "local")
    trust = {
        "local": f"HTTPS by the stack's own CA: trust {stack.ca_file} (curl --cacert; README, 'HTTPS')",
        "files": "HTTPS with the certificate edge.env names",
        "acme": f"HTTPS by {stack.edge_setting('ACME_DIRECTORY_URL')} (the local certificate until it is issued)",
        "off": "plain HTTP (TLS_MODE=off): your own TLS proxy goes in front",
    }.get(mode, mode)
    print(f"""
  Dam inventory is up:  {stack.base_url}/apps/dam-inventory/
  {trust}
  Admin login: user '{web.get('PORTAL_SUPERUSER_NAME') or 'admin'}', password in the file {secret}
      cat {secret}
  {geoserver}
  Stop: make down (keeps data)   Logs: make logs   State: make ps
""", file=sys.stderr)


def clean(compose: Compose, confirm: bool) -> int:
    if not confirm:
        say(f"this would delete the stack {compose.stack.project!r} and ALL its data volumes:")
        for volume in compose.volumes():
            say(f"    {volume}")
        say("nothing deleted. To really do it: make clean CONFIRM=1   (make backup first?)")
        return 2
    say(f"removing the stack {compose.stack.project!r} and its volumes")
    # Every profile, so a GeoServer or backup container and their volumes go too.
    Compose(compose.stack, profiles=("geoserver", "backup"))("down", "--volumes", "--remove-orphans", capture=False)
    say(f"done; the env files in {compose.stack.env_dir_ref} are kept (delete them too for new secrets)")
    return 0
