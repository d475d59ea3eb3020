#!/opt/tethys-venv/bin/python
"""The portal's setup steps, each able to say what it would change (inspect) and to do it (apply).

One implementation for every way the portal is set up: the web image's Salt states (the
`tethys_portal` state module runs this file in the portal's venv), `python -m stackctl dev`
and the unit tests' database fixture (both import it and call `inspect` / `apply`).

A step is a function `step(apply, **params) -> Outcome`. With apply=False it only looks and
returns the changes it would make; with apply=True it makes them and returns what it changed.
An empty `changes` means the portal is already as asked. A step that cannot do its work raises
StepError with what to set or fix.

Command line (the Salt states' side; the step list comes as JSON on stdin, secrets only from
the environment, so neither `ps` nor Salt's output ever shows one):

    portal_setup.py inspect --json          < {"steps": [{"id": ..., "step": ..., "params": {...}}]}
    portal_setup.py apply STEP_ID --json    < the same document

`inspect` looks at every listed step in one process (one Django start). `apply` applies the
step STEP_ID, then inspects the other steps afresh (they may depend on it), so the caller
never needs a second process to learn what is left to do. Output: {"results": {ID:
{"changes": {...}, "comment": "..."} or {"error": "..."}}}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field


class StepError(Exception):
    """A step cannot do its work; the message says what to set or fix."""


@dataclass
class Outcome:
    changes: dict = field(default_factory=dict)
    comment: str = ""

    def as_dict(self) -> dict:
        return {"changes": self.changes, "comment": self.comment}


def _would(apply: bool, done: str, planned: str) -> str:
    return done if apply else planned


# --- database server: plain connections, no Django ------------------------------------------


def _connect(host, port, user, password, dbname):
    import psycopg

    try:
        return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname,
                               connect_timeout=5, autocommit=True), ""
    except psycopg.OperationalError as exc:
        return None, str(exc).strip()


def _server_answers(message: str) -> bool:
    """An authentication or missing-database error proves the server is up and taking logins."""
    return any(s in message for s in ("password authentication failed", "does not exist",
                                      "no password supplied"))


def wait_db(apply, *, host, port, username, dbname, password="", timeout=90) -> Outcome:
    """Waits until the database server answers (inspecting waits too: it changes nothing)."""
    deadline = time.monotonic() + float(timeout)
    next_note = 0.0
    while True:
        conn, message = _connect(host, port, username, password, dbname)
        if conn is not None or _server_answers(message):
            if conn is not None:
                conn.close()
            return Outcome({}, f"database server {host}:{port} answers")
        now = time.monotonic()
        if now >= deadline:
            raise StepError(f"database server {host}:{port} did not answer within {timeout} s (last error: "
                            f"{message}); check the db service and TETHYS_DB_HOST/TETHYS_DB_PORT")
        if now >= next_note:
            first_line = message.splitlines()[0] if message else "..."
            print(f"waiting for the database server ({first_line})", file=sys.stderr)
            next_note = now + 10
        time.sleep(1)


# Neither role the portal serves requests with may create roles or databases or bypass
# permissions: the cluster's admin (setup only) creates what they need and hands it over.
ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
PRIVILEGES = ("rolsuper", "rolcreatedb", "rolcreaterole")


def _privileged(conn, roles) -> dict[str, list[str]]:
    """{role: [its privileges among SUPERUSER, CREATEDB, CREATEROLE]} for the roles that have any
    (pg_roles is readable by every role)."""
    rows = conn.execute("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                        "WHERE rolname = ANY(%s)", (list(roles),)).fetchall()
    found = {}
    for name, *flags in rows:
        held = [attr.removeprefix("rol").upper() for attr, flag in zip(PRIVILEGES, flags) if flag]
        if held:
            found[name] = held
    return found


def _admin(host, port, admin_user, admin_password, why):
    conn, message = _connect(host, port, admin_user, admin_password, "postgres")
    if conn is None:
        raise StepError(f"{why}, and connecting as {admin_user} to fix it failed: {message} "
                        "(the setup service needs POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE)")
    return conn


def db_roles(apply, *, host, port, name, username, password, superuser, superuser_password,
             admin_user, admin_password="") -> Outcome:
    """The portal's role and database, and the store role that owns the apps' persistent store
    databases (TETHYS_DB_SUPERUSER, despite the name no PostgreSQL superuser), with a database
    of its own name: Tethys's store code connects as that role without naming a database.
    Both roles are LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE. Created, or reset as the
    server's admin, only when a login fails or a role holds a privilege it must not have."""
    if not password or not superuser_password:
        raise StepError("TETHYS_DB_PASSWORD and TETHYS_DB_SUPERUSER_PASS (or their _FILE) must be set")
    portal, _ = _connect(host, port, username, password, name)
    superconn, _ = _connect(host, port, superuser, superuser_password, superuser)
    privileged = {}
    if portal is not None:
        privileged = _privileged(portal, (username, superuser))
    for conn in (portal, superconn):
        if conn is not None:
            conn.close()
    if portal is not None and superconn is not None and not privileged:
        return Outcome({}, f"roles {username}, {superuser} (unprivileged) and their databases in place")

    admin = _admin(host, port, admin_user, admin_password,
                   "the portal's roles or databases are missing, their passwords differ or they are privileged")
    from psycopg import sql

    changes: dict = {}
    with admin:
        for role, role_password in ((superuser, superuser_password), (username, password)):
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            dropped = privileged.get(role)
            changes.setdefault("roles", {})[role] = (
                "created" if not exists
                else f"password reset, {', '.join(dropped)} revoked" if dropped else "password and attributes reset")
            if apply:
                # DDL takes no bound parameters: the password goes in as a quoted literal
                admin.execute(sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(role), sql.SQL(ROLE_ATTRIBUTES), sql.Literal(role_password)))
        for database, owner in ((name, username), (superuser, superuser)):
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                changes.setdefault("databases", {})[database] = f"created, owned by {owner}"
                if apply:
                    admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                        sql.Identifier(database), sql.Identifier(owner)))
    return Outcome(changes, _would(apply, "roles and databases set up", "roles and databases would be set up"))


def store_database(apply, *, host, port, name, owner, password, admin_user, admin_password="",
                   extensions=("postgis", "postgis_raster")) -> Outcome:
    """An app's persistent store database NAME, owned by the store role OWNER, with EXTENSIONS
    (those the server offers) loaded: made by the server's admin, since the store role may
    create neither databases nor (untrusted) extensions. Tethys's own store sync then finds
    both in place. Looks as OWNER first: the admin is needed only to change something."""
    missing = []
    conn, _ = _connect(host, port, owner, password, name)
    if conn is not None:
        with conn:
            row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                               ).fetchone()
            have = {r[0] for r in conn.execute("SELECT extname FROM pg_extension").fetchall()}
            offered = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}
        missing = [ext for ext in extensions if ext in offered and ext not in have]
        if row and row[0] == owner and not missing:
            return Outcome({}, f"database {name} owned by {owner}, extensions {', '.join(sorted(have))}")

    admin = _admin(host, port, admin_user, admin_password, f"the store database {name} is not ready for {owner}")
    from psycopg import sql

    changes: dict = {}
    with admin:
        row = admin.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if row is None:
            changes["database"] = {"old": None, "new": f"{name} owned by {owner}"}
            if apply:
                admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                    sql.Identifier(name), sql.Identifier(owner)))
        elif row[0] != owner:
            changes["owner"] = {"old": row[0], "new": owner}
            if apply:
                admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name),
                                                                              sql.Identifier(owner)))
    if row is None and not apply:
        changes["extensions"] = {"old": [], "new": list(extensions)}
    else:
        database, message = _connect(host, port, admin_user, admin_password, name)
        if database is None:
            raise StepError(f"connecting as {admin_user} to {name} failed: {message}")
        with database:
            have = {r[0] for r in database.execute("SELECT extname FROM pg_extension").fetchall()}
            offered = {r[0] for r in database.execute("SELECT name FROM pg_available_extensions").fetchall()}
            for ext in extensions:
                if ext in offered and ext not in have:
                    changes.setdefault("extensions", {"old": sorted(have), "new": sorted(have)})["new"].append(ext)
                    if apply:
                        database.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
    if not changes:
        return Outcome({}, f"database {name} owned by {owner} with its extensions")
    return Outcome(changes, _would(apply, f"store database {name} set up for {owner}",
                                   f"store database {name} would be set up for {owner}"))


# --- portal objects: Django ----------------------------------------------------------------


def django_setup() -> None:
    """Starts Django once per process (a no-op where it already runs, as in the unit tests)."""
    from django.apps import apps

    if apps.ready:
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tethys_portal.settings")
    import django

    # tethys_apps' ready() harvests every app (about a second) unless sys.argv[1] is "migrate".
    # The steps do not need it: _app() harvests when the app is not registered yet.
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], "migrate"]
    try:
        django.setup()
    finally:
        sys.argv = saved_argv


def _app(package, apply):
    """The app's row; registered (harvested) first when applying and it is missing. None when
    inspecting an app not registered yet."""
    from tethys_apps.models import TethysApp

    app = TethysApp.objects.filter(package=package).first()
    if app is None and apply:
        from tethys_apps.harvester import SingletonHarvester

        SingletonHarvester().harvest()
        app = TethysApp.objects.filter(package=package).first()
        if app is None:
            raise StepError(f"app '{package}' is not installed (no tethysapp.{package} importable)")
    return app


def migrate(apply) -> Outcome:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return Outcome({}, "portal database migrated")
    labels = sorted({migration.app_label for migration, _backwards in plan})
    changes = {"migrations": f"{len(plan)} to apply ({', '.join(labels)})"}
    if apply:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
    return Outcome(changes, _would(apply, "portal database migrated", "portal database would be migrated"))


def portal_admin(apply, *, name, email="", password="") -> Outcome:
    """Created once; a password changed later in the portal is the admin's own."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if user_model.objects.filter(username=name).exists():
        return Outcome({}, f"portal admin {name} exists")
    if not password:
        raise StepError("PORTAL_SUPERUSER_PASSWORD (or PORTAL_SUPERUSER_PASSWORD_FILE) must be set to create "
                        f"the portal admin {name}")
    if apply:
        user_model.objects.create_superuser(name, email, password)
    return Outcome({"portal_admin": {"old": None, "new": name}},
                   _would(apply, f"created portal admin {name}", f"portal admin {name} would be created"))


def _differences(current, wanted: dict, secret=("password",)) -> dict:
    """Per differing field {"old": ..., "new": ...}; secrets only say that they change."""
    diff = {}
    for key, value in wanted.items():
        old = getattr(current, key)
        if old != value:
            diff[key] = "changed" if key in secret else {"old": old, "new": value}
    return diff


def persistent_store_service(apply, *, name, host, port, username, password) -> Outcome:
    """A PostgreSQL persistent store service: the role it logs in as creates the app's store
    database and its PostGIS extension."""
    from tethys_services.models import PostgresPersistentStoreService

    wanted = {"host": host, "port": int(port), "username": username, "password": password}
    if not password:
        raise StepError(f"persistent store service {name} needs a password (TETHYS_DB_SUPERUSER_PASS or its _FILE)")
    service = PostgresPersistentStoreService.objects.filter(name=name).first()
    if service is None:
        if apply:
            PostgresPersistentStoreService.objects.create(name=name, **wanted)
        return Outcome({name: {"old": None, "new": f"{username}@{host}:{port}"}},
                       _would(apply, f"created persistent store service {name}",
                              f"persistent store service {name} would be created"))
    diff = _differences(service, wanted)
    if not diff:
        return Outcome({}, f"persistent store service {name} up to date")
    if apply:
        for key in diff:
            setattr(service, key, wanted[key])
        service.save()
    return Outcome(diff, _would(apply, f"updated persistent store service {name}",
                                f"persistent store service {name} would be updated"))


# Kinds of app setting the steps look up, and the app's related manager of each.
SETTING_KINDS = {
    "persistent store database": "persistent_store_database_settings",
    "custom": "custom_settings",
    "spatial dataset service": "spatial_dataset_service_settings",
}


def _declared_setting(app, apply, kind, name):
    """The app's setting NAME of KIND (the app registered first when applying); None when
    inspecting an app not registered yet. An app that declares no such setting is an error."""
    app_row = _app(app, apply)
    if app_row is None:
        return None
    found = getattr(app_row, SETTING_KINDS[kind]).filter(name=name).first()
    if found is None:
        raise StepError(f"app '{app}' declares no {kind} setting '{name}'")
    return found


def persistent_store_link(apply, *, app, setting, service) -> Outcome:
    from tethys_services.models import PostgresPersistentStoreService

    target = f"{app}:{setting}"
    ps = _declared_setting(app, apply, "persistent store database", setting)
    linked = ps.persistent_store_service if ps is not None else None
    current = linked.name if linked is not None else None
    if current == service:
        return Outcome({}, f"{target} linked to {service}")
    changes = {target: {"old": current, "new": service}}
    if apply:
        found = PostgresPersistentStoreService.objects.filter(name=service).first()
        if found is None:
            raise StepError(f"no persistent store service {service} to link {target} to")
        ps.persistent_store_service = found
        ps.save()
    return Outcome(changes, _would(apply, f"linked {target} to {service}", f"{target} would be linked to {service}"))


def persistent_store_synced(apply, *, app, setting, refresh=False) -> Outcome:
    """The app's store database exists and its initializer ran (refresh: dropped and made anew)."""
    target = f"{app}:{setting}"
    ps = _declared_setting(app, apply, "persistent store database", setting)
    ready = (ps is not None and ps.persistent_store_service is not None and ps.initialized
             and ps.persistent_store_database_exists())
    if ready and not refresh:
        return Outcome({}, f"database of {target} exists and is initialized")
    changes = {target: {"old": "initialized" if ready else "missing or not initialized",
                        "new": "recreated and initialized" if ready else "created and initialized"}}
    if apply:
        if ps.persistent_store_service is None:
            raise StepError(f"{target} is linked to no persistent store service")
        ps.create_persistent_store_database(refresh=refresh)
    return Outcome(changes, _would(apply, f"database of {target} created and initialized",
                                   f"database of {target} would be created and initialized"))


def app_setting(apply, *, app, name, value) -> Outcome:
    """A custom setting of the app, set to VALUE (a string, as the portal's admin form keeps it)."""
    value = str(value)
    custom = _declared_setting(app, apply, "custom", name)
    current = None if custom is None or custom.value in (None, "") else str(custom.value)
    if current == value:
        return Outcome({}, f"{app}:{name} is {value}")
    changes = {f"{app}:{name}": {"old": current, "new": value}}
    if apply:
        custom.value = value
        custom.clean()
        custom.save()
    return Outcome(changes, _would(apply, f"set {app}:{name} to {value}", f"{app}:{name} would be set to {value}"))


# The official image's site and branding variables, applied as its `tethys site` does: each one
# that is set (not empty) becomes the content of the site setting Tethys names after it
# (SITE_TITLE -> "Site Title", HOME_PAGE_CSS -> "Home Page CSS").
SITE_VARIABLES = (
    "SITE_TITLE", "FAVICON", "BRAND_TEXT", "BRAND_IMAGE", "BRAND_IMAGE_HEIGHT", "BRAND_IMAGE_WIDTH",
    "BRAND_IMAGE_PADDING", "APPS_LIBRARY_TITLE", "PRIMARY_COLOR", "SECONDARY_COLOR", "PRIMARY_TEXT_COLOR",
    "PRIMARY_TEXT_HOVER_COLOR", "SECONDARY_TEXT_COLOR", "SECONDARY_TEXT_HOVER_COLOR", "BACKGROUND_COLOR",
    "FOOTER_COPYRIGHT", "HERO_TEXT", "BLURB_TEXT", "FEATURE_1_HEADING", "FEATURE_1_BODY", "FEATURE_1_IMAGE",
    "FEATURE_2_HEADING", "FEATURE_2_BODY", "FEATURE_2_IMAGE", "FEATURE_3_HEADING", "FEATURE_3_BODY",
    "FEATURE_3_IMAGE", "PORTAL_BASE_CSS", "HOME_PAGE_CSS",
    "APPS_LIBRARY_CSS", "ACCOUNTS_BASE_CSS", "LOGIN_CSS", "REGISTER_CSS", "USER_BASE_CSS",
    "HOME_PAGE_TEMPLATE", "APPS_LIBRARY_TEMPLATE", "LOGIN_PAGE_TEMPLATE", "REGISTER_PAGE_TEMPLATE",
    "USER_PAGE_TEMPLATE", "USER_SETTINGS_PAGE_TEMPLATE",
)
# Also in the official image's list, but Tethys 4.6 has no such site setting (its `tethys site`
# accepts them and changes nothing): said in the step's comment when set, never applied.
SITE_VARIABLES_WITHOUT_SETTING = ("CALL_TO_ACTION", "CALL_TO_ACTION_BUTTON")


def site_settings(apply) -> Outcome:
    """The portal's site settings (title, colours, logo, texts...) from SITE_VARIABLES in the
    environment; a variable left empty keeps the portal's current value."""
    from django.utils import timezone
    from tethys_cli.site_commands import uncodify  # Tethys' own name mapping
    from tethys_config.models import Setting

    changes = {}
    for variable in SITE_VARIABLES:
        content = os.environ.get(variable, "").replace("\\n", "\n")
        if not content:
            continue
        row = Setting.objects.filter(name=uncodify(variable)).first()
        if row is None:
            raise StepError(f"{variable}: this portal has no site setting {uncodify(variable)!r}")
        if row.content != content:
            changes[variable] = {"old": row.content, "new": content}
            if apply:
                Setting.objects.filter(pk=row.pk).update(content=content, date_modified=timezone.now())
    ignored = [v for v in SITE_VARIABLES_WITHOUT_SETTING if os.environ.get(v)]
    note = f" ({', '.join(ignored)} ignored: this Tethys has no such site setting)" if ignored else ""
    if not changes:
        return Outcome({}, "the site settings are as configured" + note)
    names = ", ".join(changes)
    return Outcome(changes, _would(apply, f"site settings set: {names}", f"site settings would be set: {names}") + note)


def backends_importable(apply, *, variable, backends) -> Outcome:
    """Every authentication backend named by VARIABLE (ADD_BACKENDS) can be imported: a typo
    must stop the start, not break every login with a 500. Changes nothing."""
    import importlib

    for path in backends:
        module, _, name = str(path).rpartition(".")
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise StepError(f"{variable}: cannot import the backend {path!r} ({type(exc).__name__}: {exc})") from None
    return Outcome({}, f"{variable}: {len(backends)} backend(s) importable")


def spatial_dataset_service(apply, *, name, endpoint, public_endpoint, username, password="",
                            app="", setting="") -> Outcome:
    """GeoServer registered as a spatial dataset service, optionally linked to an app setting."""
    from tethys_services.models import SpatialDatasetService

    if not endpoint or not password:
        raise StepError("GEOSERVER_URL and GEOSERVER_PASSWORD (or its _FILE) must both be set to register GeoServer")
    wanted = {"engine": SpatialDatasetService.GEOSERVER, "endpoint": endpoint,
              "public_endpoint": public_endpoint or endpoint, "username": username, "password": password}
    service = SpatialDatasetService.objects.filter(name=name).first()
    if service is None:
        changes = {name: {"old": None, "new": endpoint}}
        if apply:
            service = SpatialDatasetService.objects.create(name=name, **wanted)
    else:
        changes = _differences(service, wanted)
        if changes and apply:
            for key in changes:
                setattr(service, key, wanted[key])
            service.save()
    if app and setting:
        sds = _declared_setting(app, apply, "spatial dataset service", setting)
        if sds is None or service is None or sds.spatial_dataset_service_id != service.pk:
            current = sds.spatial_dataset_service.name if sds is not None and sds.spatial_dataset_service else None
            changes[f"{app}:{setting}"] = {"old": current, "new": name}
            if apply:
                sds.spatial_dataset_service = service
                sds.save()
    if not changes:
        return Outcome({}, f"spatial dataset service {name} up to date")
    return Outcome(changes, _would(apply, f"spatial dataset service {name} set up",
                                   f"spatial dataset service {name} would be set up"))


# The role backups are made as: it may read every table (PostgreSQL's pg_read_all_data) and
# change nothing, so the backup service never holds the server admin's password.
BACKUP_GRANT = "pg_read_all_data"


def backup_role(apply, *, host, port, username, password, admin_user, admin_password="") -> Outcome:
    """The backup role USERNAME: LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE, a member of
    pg_read_all_data. Created, or reset as the server's admin, only when its login fails, it
    holds a privilege it must not have, or it lacks the grant."""
    if not password:
        raise StepError("BACKUP_DB_PASSWORD (or BACKUP_DB_PASSWORD_FILE) must be set")
    conn, _ = _connect(host, port, username, password, "postgres")
    if conn is not None:
        with conn:
            privileged = _privileged(conn, (username,))
            granted = conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (BACKUP_GRANT,)).fetchone()[0]
        if not privileged and granted:
            return Outcome({}, f"role {username} (reads every table, changes nothing) in place")
    admin = _admin(host, port, admin_user, admin_password, f"the backup role {username} is missing or differs")
    from psycopg import sql

    with admin:
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,)).fetchone()
        changes = {"roles": {username: ("password, attributes and grant reset" if exists
                                        else f"created, member of {BACKUP_GRANT}")}}
        if apply:
            admin.execute(sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
                sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(username), sql.SQL(ROLE_ATTRIBUTES),
                sql.Literal(password)))
            admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(BACKUP_GRANT), sql.Identifier(username)))
    return Outcome(changes, _would(apply, "backup role set up", "backup role would be set up"))


# --- the step table -------------------------------------------------------------------------

# name -> (function, needs Django, {parameter: environment variable} for its secrets)
STEPS = {
    "wait_db": (wait_db, False, {"password": "TETHYS_DB_PASSWORD"}),
    "db_roles": (db_roles, False, {"password": "TETHYS_DB_PASSWORD", "superuser_password": "TETHYS_DB_SUPERUSER_PASS",
                                   "admin_password": "POSTGRES_PASSWORD"}),
    "backup_role": (backup_role, False, {"password": "BACKUP_DB_PASSWORD", "admin_password": "POSTGRES_PASSWORD"}),
    "store_database": (store_database, False, {"password": "TETHYS_DB_SUPERUSER_PASS",
                                               "admin_password": "POSTGRES_PASSWORD"}),
    "migrate": (migrate, True, {}),
    "portal_admin": (portal_admin, True, {"password": "PORTAL_SUPERUSER_PASSWORD"}),
    "persistent_store_service": (persistent_store_service, True, {"password": "TETHYS_DB_SUPERUSER_PASS"}),
    "persistent_store_link": (persistent_store_link, True, {}),
    "persistent_store_synced": (persistent_store_synced, True, {}),
    "app_setting": (app_setting, True, {}),
    "site_settings": (site_settings, True, {}),
    "backends_importable": (backends_importable, True, {}),
    "spatial_dataset_service": (spatial_dataset_service, True, {"password": "GEOSERVER_PASSWORD"}),
}


def _run(step: str, apply: bool, params: dict) -> Outcome:
    try:
        func, needs_django, _secrets = STEPS[step]
    except KeyError:
        raise StepError(f"unknown step {step!r} (known: {', '.join(STEPS)})") from None
    if needs_django:
        django_setup()
    return func(apply, **params)


def inspect(step: str, **params) -> Outcome:
    """What STEP would change; changes nothing."""
    return _run(step, False, params)


def apply(step: str, **params) -> Outcome:
    """Makes STEP's changes (none when already in place) and returns them."""
    return _run(step, True, params)


# --- command line ---------------------------------------------------------------------------


def _with_secrets(step: str, params: dict) -> dict:
    """Secrets come from the environment only (resolved from NAME_FILE by the entrypoint)."""
    secrets = STEPS[step][2] if step in STEPS else {}
    return {**params, **{param: os.environ.get(var, "") for param, var in secrets.items()}}


def _result(step: str, do_apply: bool, params: dict) -> dict:
    try:
        return _run(step, do_apply, _with_secrets(step, params)).as_dict()
    except StepError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported as the step's failure, with its type
        # The whole traceback goes to the container's log; the state's comment gets its gist.
        traceback.print_exc(file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"error": f"{type(exc).__name__}: {first}"}


def _unreachable(result: dict) -> bool:
    """The portal database refused or did not answer (not yet set up, or down)."""
    return result.get("error", "").startswith(("OperationalError", "PoolTimeout"))


def _portal_db_refusal() -> dict | None:
    """One plain login with Django's settings: a refused one fails at once, where Django's
    connection pool would wait for its timeout first (a first start, before the roles exist)."""
    django_setup()
    from django.conf import settings

    db = settings.DATABASES["default"]
    conn, message = _connect(db.get("HOST"), db.get("PORT"), db.get("USER"), db.get("PASSWORD"), db.get("NAME"))
    if conn is None:
        return {"error": f"OperationalError: the portal database refused a login: {message.splitlines()[0]}"}
    conn.close()
    return None


# Key of the PostgreSQL advisory lock every apply of a portal step holds (session level, on
# the portal database): several containers starting at once apply one at a time, each
# re-checking under the lock, so none acts on what another is changing.
APPLY_LOCK_KEY = 0x7E7E_DA11


@contextlib.contextmanager
def portal_apply_lock():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [APPLY_LOCK_KEY])
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [APPLY_LOCK_KEY])
        except Exception:  # noqa: BLE001 - the lock ends with the session (this short process) anyway
            traceback.print_exc(file=sys.stderr)


def _locked_result(step: str, params: dict) -> dict:
    """Applies a portal (Django) step under the apply lock."""
    try:
        with portal_apply_lock():
            return _result(step, True, params)
    except Exception as exc:  # noqa: BLE001 - taking the lock failed: the step's failure
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(exc).__name__}: could not take the portal's apply lock: {exc}"}


def run_document(command: str, document: dict, apply_id: str = "") -> dict:
    """`inspect`: every step of DOCUMENT. `apply`: the step APPLY_ID, then every other step
    inspected afresh."""
    steps = document.get("steps") or []
    ids = [entry["id"] for entry in steps]
    if command == "apply" and apply_id not in ids:
        raise StepError(f"step id {apply_id!r} is not in the step list ({', '.join(ids)})")
    if command == "apply":
        steps = [steps[ids.index(apply_id)]] + [entry for entry in steps if entry["id"] != apply_id]
    results = {}
    unreachable = None
    checked = False
    for entry in steps:
        do_apply = command == "apply" and entry["id"] == apply_id
        needs_django = STEPS.get(entry["step"], (None, False))[1]
        if needs_django and not checked:
            checked = True
            unreachable = _portal_db_refusal()
        if needs_django and unreachable is not None and not do_apply:
            # each further try would wait for the connection pool's timeout again
            results[entry["id"]] = unreachable
            continue
        if do_apply and needs_django:
            results[entry["id"]] = _locked_result(entry["step"], entry.get("params") or {})
        else:
            results[entry["id"]] = _result(entry["step"], do_apply, entry.get("params") or {})
        if needs_django and _unreachable(results[entry["id"]]):
            unreachable = results[entry["id"]]
    return {"results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("inspect", "apply"))
    parser.add_argument("step_id", nargs="?", default="", help="apply: the id of the step to apply")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (otherwise one line per step)")
    args = parser.parse_args(argv)
    if args.command == "apply" and not args.step_id:
        parser.error("apply needs the id of the step to apply")
    # Libraries print progress (the app harvester does, on stdout): only the result goes to the
    # real stdout, everything else to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        document = run_document(args.command, json.load(sys.stdin), args.step_id)
    except (StepError, ValueError, KeyError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(document, out)
        out.write("\n")
    else:
        for step_id, result in document["results"].items():
            detail = result.get("error") or f"{result['comment']} {json.dumps(result['changes'])}"
            out.write(f"{step_id}: {detail}\n")
    out.flush()
    return 1 if any("error" in r for r in document["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
