#!/opt/tethys-venv/bin/python
"""Idempotent setup steps of the portal, called by the Salt states at every container start.

Each step looks at the current state first and changes only what differs from the environment,
so a restart that finds everything in place does no work. Each prints, as its last line, the
`changed=yes|no comment="..."` line that Salt's `cmd.run` with `stateful: True` reads, and
exits non-zero on failure so the state (and the container start) fails with its message.

Secrets come from the environment (the entrypoint resolved NAME_FILE already), never from the
command line, so neither `ps` nor Salt's output shows them.
"""

import argparse
import json
import os
import shlex
import sys
import time


class StepError(Exception):
    """A step cannot do its work; the message says what to set or fix."""


def env(name, default=""):
    return os.environ.get(name, default)


def report(changed, comment):
    # Salt splits each name=value pair on every "=": keep them out of the comment
    comment = comment.replace("=", ":")
    print(f"changed={'yes' if changed else 'no'} comment={shlex.quote(comment)}")
    return 0


# --- database server: no Django needed, so these steps are fast ---------------------------


def db_params():
    return {
        "host": env("TETHYS_DB_HOST", "db"),
        "port": int(env("TETHYS_DB_PORT", "5432")),
        "connect_timeout": 5,
    }


def try_connect(user, password, dbname):
    import psycopg2

    try:
        conn = psycopg2.connect(user=user, password=password, dbname=dbname, **db_params())
    except psycopg2.OperationalError as exc:
        return None, str(exc).strip()
    return conn, ""


def server_answers(message):
    """An auth or missing-database error proves the server is up and accepting logins."""
    return any(
        s in message
        for s in ("password authentication failed", "does not exist", "no password supplied")
    )


def step_wait_db(args):
    deadline = time.monotonic() + args.timeout
    user, dbname = env("TETHYS_DB_USERNAME", "tethys_default"), env("TETHYS_DB_NAME", "tethys_platform")
    next_note = 0.0
    while True:
        conn, message = try_connect(user, env("TETHYS_DB_PASSWORD"), dbname)
        if conn is not None or server_answers(message):
            if conn is not None:
                conn.close()
            return report(False, f"database server {db_params()['host']} answers")
        now = time.monotonic()
        if now >= deadline:
            raise StepError(
                f"database server {db_params()['host']}:{db_params()['port']} did not answer within "
                f"{args.timeout} s (last error: {message}); check the db service and TETHYS_DB_HOST/PORT"
            )
        if now >= next_note:
            print(f"waiting for the database server ({message.splitlines()[0] if message else '...'})", file=sys.stderr)
            next_note = now + 10
        time.sleep(1)


def step_db_roles(args):
    """Roles and database of the portal: created as `postgres` only when missing."""
    from psycopg2 import sql

    user, password = env("TETHYS_DB_USERNAME", "tethys_default"), env("TETHYS_DB_PASSWORD")
    super_user, super_password = env("TETHYS_DB_SUPERUSER", "tethys_super"), env("TETHYS_DB_SUPERUSER_PASS")
    dbname = env("TETHYS_DB_NAME", "tethys_platform")
    if not password or not super_password:
        raise StepError("TETHYS_DB_PASSWORD and TETHYS_DB_SUPERUSER_PASS (or their _FILE) must be set")

    portal_ok, _ = try_connect(user, password, dbname)
    # Tethys's persistent-store code connects as the superuser without naming a database, so
    # PostgreSQL picks the one named after the role: it must exist (as `tethys db create` does).
    super_ok, _ = try_connect(super_user, super_password, super_user)
    for conn in (portal_ok, super_ok):
        if conn is not None:
            conn.close()
    if portal_ok is not None and super_ok is not None:
        return report(False, f"roles {user}, {super_user} and their databases in place")

    admin_user = env("POSTGRES_USER", "postgres")
    admin, message = try_connect(admin_user, env("POSTGRES_PASSWORD"), "postgres")
    if admin is None:
        raise StepError(
            "the portal's roles or database are missing or their passwords differ, and "
            f"connecting as {admin_user} to fix it failed: {message} (set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE)"
        )
    admin.autocommit = True
    done = []
    # no `with admin:` block: it would open a transaction, and CREATE DATABASE refuses one
    with admin.cursor() as cur:
        for role, role_password, attrs in (
            # the superuser role creates each app's database and its PostGIS extension
            (super_user, super_password, "LOGIN SUPERUSER CREATEDB"),
            (user, password, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"),
        ):
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                sql.SQL("{} ROLE {} WITH {} PASSWORD %s").format(
                    sql.SQL(verb), sql.Identifier(role), sql.SQL(attrs)
                ),
                (role_password,),
            )
            done.append(f"{verb.lower()}d role {role}")
        for database, owner in ((dbname, user), (super_user, super_user)):
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if not cur.fetchone():
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                        sql.Identifier(database), sql.Identifier(owner)
                    )
                )
                done.append(f"created database {database}")
    admin.close()
    return report(True, "; ".join(done))


# --- portal objects: one Django boot per step ------------------------------------------------


def django_setup():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tethys_portal.settings")
    import django

    # tethys_apps' ready() harvests every app (imports, registers, syncs permissions: about a
    # second) unless sys.argv[1] is "migrate". These steps do not need it on a restart, and
    # get_app() harvests itself when the app is not registered yet; the workers harvest anyway.
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], "migrate"]
    try:
        django.setup()
    finally:
        sys.argv = saved_argv


def get_app(package):
    from tethys_apps.models import TethysApp

    app = TethysApp.objects.filter(package=package).first()
    if app is None:
        # the harvester registers installed apps and their settings in the portal database
        from tethys_apps.harvester import SingletonHarvester

        SingletonHarvester().harvest()
        app = TethysApp.objects.filter(package=package).first()
    if app is None:
        raise StepError(f"app '{package}' is not installed in the image (no tethysapp.{package})")
    return app


def step_portal_admin(args):
    django_setup()
    from django.contrib.auth import get_user_model

    name = env("PORTAL_SUPERUSER_NAME", "admin")
    User = get_user_model()
    if User.objects.filter(username=name).exists():
        # Created once from env; a password changed later in the portal is the admin's own.
        return report(False, f"portal admin {name} exists")
    password = env("PORTAL_SUPERUSER_PASSWORD")
    if not password:
        raise StepError("PORTAL_SUPERUSER_PASSWORD (or PORTAL_SUPERUSER_PASSWORD_FILE) must be set to create the portal admin")
    User.objects.create_superuser(name, env("PORTAL_SUPERUSER_EMAIL", ""), password)
    return report(True, f"created portal admin {name}")


def wanted_persistent_service():
    """The app's persistent store service connects as the db superuser role, which creates
    the app's database and its PostGIS extension."""
    return {
        "host": env("TETHYS_DB_HOST", "db"),
        "port": int(env("TETHYS_DB_PORT", "5432")),
        "username": env("TETHYS_DB_SUPERUSER", "tethys_super"),
        "password": env("TETHYS_DB_SUPERUSER_PASS"),
    }


def step_persistent_service(args):
    django_setup()
    from tethys_services.models import PostgresPersistentStoreService

    wanted = wanted_persistent_service()
    service = PostgresPersistentStoreService.objects.filter(name=args.name).first()
    if service is None:
        PostgresPersistentStoreService.objects.create(name=args.name, **wanted)
        return report(True, f"created persistent store service {args.name}")
    differs = [k for k, v in wanted.items() if getattr(service, k) != v]
    if not differs:
        return report(False, f"persistent store service {args.name} up to date")
    for key in differs:
        setattr(service, key, wanted[key])
    service.save()
    return report(True, f"updated {', '.join(differs)} of persistent store service {args.name}")


def persistent_store_setting(args):
    """The app's persistent store database setting named by --setting (a clear error if the app
    declares none of that name)."""
    app = get_app(args.app)
    setting = app.persistent_store_database_settings.filter(name=args.setting).first()
    if setting is None:
        raise StepError(f"app '{args.app}' declares no persistent store database setting '{args.setting}'")
    return setting


def step_link_persistent(args):
    django_setup()
    from tethys_services.models import PostgresPersistentStoreService

    setting = persistent_store_setting(args)
    service = PostgresPersistentStoreService.objects.get(name=args.service)
    if setting.persistent_store_service == service:
        return report(False, f"{args.app}:{args.setting} linked to {args.service}")
    setting.persistent_store_service = service
    setting.save()
    return report(True, f"linked {args.app}:{args.setting} to {args.service}")


def step_syncstores(args):
    django_setup()
    setting = persistent_store_setting(args)
    if setting.initialized and setting.persistent_store_database_exists():
        return report(False, f"database of {args.app}:{args.setting} exists and is initialized")
    setting.create_persistent_store_database()
    return report(True, f"created and initialized the database of {args.app}:{args.setting}")


def step_app_setting(args):
    django_setup()
    app = get_app(args.app)
    setting = app.custom_settings.filter(name=args.name).first()
    if setting is None:
        raise StepError(f"app '{args.app}' declares no custom setting '{args.name}'")
    if str(setting.value) == args.value:
        return report(False, f"{args.app}:{args.name} is {args.value}")
    setting.value = args.value
    setting.clean()
    setting.save()
    return report(True, f"set {args.app}:{args.name} to {args.value}")


def step_spatial_service(args):
    django_setup()
    from tethys_services.models import SpatialDatasetService

    wanted = {
        "engine": SpatialDatasetService.GEOSERVER,
        "endpoint": env("GEOSERVER_URL"),
        "public_endpoint": env("GEOSERVER_PUBLIC_URL") or env("GEOSERVER_URL"),
        "username": env("GEOSERVER_USERNAME", "admin"),
        "password": env("GEOSERVER_PASSWORD"),
    }
    if not wanted["endpoint"] or not wanted["password"]:
        raise StepError("GEOSERVER_URL and GEOSERVER_PASSWORD (or _FILE) must both be set to register GeoServer")
    service = SpatialDatasetService.objects.filter(name=args.name).first()
    changed = False
    if service is None:
        service = SpatialDatasetService.objects.create(name=args.name, **wanted)
        changed, comment = True, f"created spatial dataset service {args.name}"
    else:
        differs = [k for k, v in wanted.items() if getattr(service, k) != v]
        for key in differs:
            setattr(service, key, wanted[key])
        if differs:
            service.save()
            changed = True
        comment = f"spatial dataset service {args.name} " + (f"updated ({', '.join(differs)})" if differs else "up to date")
    if args.app and args.setting:
        app = get_app(args.app)
        setting = app.spatial_dataset_service_settings.filter(name=args.setting).first()
        if setting is None:
            raise StepError(f"app '{args.app}' declares no spatial dataset service setting '{args.setting}'")
        if setting.spatial_dataset_service_id != service.pk:
            setting.spatial_dataset_service = service
            setting.save()
            changed, comment = True, comment + f"; linked {args.app}:{args.setting}"
    return report(changed, comment)


# --- facts: every check of a restart in one Django boot --------------------------------------
#
# A Django boot costs about a second here; one per state would make a restart slow. The facts
# step looks at everything once and writes what it saw; the states' `unless` checks read it
# (`tethys-ensure fact NAME`, no Django) and skip work already done. The file is rewritten at
# every start, and each step re-checks before changing anything, so a stale or missing fact
# can only cost time, never skip needed work.

FACTS_FILE = os.path.join(os.environ.get("TETHYS_RUN_DIR", "/run/tethys"), "facts.json")


def collect_facts(args):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    facts = {}

    def fact(name, probe):
        try:
            facts[name] = probe()
        except Exception as exc:  # noqa: BLE001 - an unknowable fact is simply "not known true"
            facts[name] = False
            facts.setdefault("errors", {})[name] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__

    def migrations_applied():
        executor = MigrationExecutor(connection)
        return not executor.migration_plan(executor.loader.graph.leaf_nodes())

    fact("migrations_applied", migrations_applied)
    if not facts["migrations_applied"]:
        return facts  # nothing below can be known before the tables exist

    def admin_exists():
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(username=env("PORTAL_SUPERUSER_NAME", "admin")).exists()

    def service_current():
        from tethys_services.models import PostgresPersistentStoreService

        service = PostgresPersistentStoreService.objects.filter(name=args.service).first()
        return service is not None and not [k for k, v in wanted_persistent_service().items() if getattr(service, k) != v]

    def ps_setting():
        from tethys_apps.models import TethysApp

        app = TethysApp.objects.get(package=args.app)
        return app.persistent_store_database_settings.get(name=args.setting)

    def linked():
        service = ps_setting().persistent_store_service
        return service is not None and service.name == args.service

    def store_ready():
        setting = ps_setting()
        return bool(setting.initialized and setting.persistent_store_database_exists())

    def custom_settings():
        from tethys_apps.models import TethysApp

        app = TethysApp.objects.get(package=args.app)
        return {s.name: str(s.value) for s in app.custom_settings if hasattr(s, "value")}

    fact("admin_exists", admin_exists)
    fact("persistent_service_current", service_current)
    fact("linked", linked)
    fact("store_ready", store_ready)
    fact("settings", custom_settings)
    return facts


def step_facts(args):
    django_setup()
    facts = collect_facts(args)
    tmp = FACTS_FILE + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(facts, fh, indent=1, sort_keys=True)
    os.replace(tmp, FACTS_FILE)
    known = sorted(k for k, v in facts.items() if v is True)
    return report(False, f"facts collected; in place: {', '.join(known) or 'nothing yet'}")


def step_fact(args):
    """Exit 0 if the fact holds (or, with --value, the app setting has that value)."""
    try:
        with open(FACTS_FILE) as fh:
            facts = json.load(fh)
    except (OSError, ValueError):
        return 1
    if args.setting:
        return 0 if facts.get("settings", {}).get(args.setting) == args.value else 1
    return 0 if facts.get(args.name) is True else 1


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("wait-db")
    p.add_argument("--timeout", type=int, default=90)
    p.set_defaults(func=step_wait_db)
    sub.add_parser("db-roles").set_defaults(func=step_db_roles)
    sub.add_parser("portal-admin").set_defaults(func=step_portal_admin)
    p = sub.add_parser("persistent-service")
    p.add_argument("--name", required=True)
    p.set_defaults(func=step_persistent_service)
    for name, func in (("link-persistent", step_link_persistent), ("syncstores", step_syncstores)):
        p = sub.add_parser(name)
        p.add_argument("--app", required=True)
        p.add_argument("--setting", required=True)
        if name == "link-persistent":
            p.add_argument("--service", required=True)
        p.set_defaults(func=func)
    p = sub.add_parser("app-setting")
    p.add_argument("--app", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--value", required=True)
    p.set_defaults(func=step_app_setting)
    p = sub.add_parser("facts")
    p.add_argument("--app", required=True)
    p.add_argument("--setting", required=True)
    p.add_argument("--service", required=True)
    p.set_defaults(func=step_facts)
    p = sub.add_parser("fact")
    p.add_argument("name", nargs="?", default="")
    p.add_argument("--setting", default="")
    p.add_argument("--value", default="")
    p.set_defaults(func=step_fact)
    p = sub.add_parser("spatial-service")
    p.add_argument("--name", required=True)
    p.add_argument("--app", default="")
    p.add_argument("--setting", default="")
    p.set_defaults(func=step_spatial_service)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except StepError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        report(False, str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
