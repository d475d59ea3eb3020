"""Least privilege in the database: the one-shot setup service, holding the server admin's
password, made the roles and databases and migrated, then exited 0; web serves as roles that
may create neither roles nor databases, and holds no admin password in any form."""

from __future__ import annotations

import json

import pytest

from stackctl import docker
from stackctl.envfiles import stack_value
from tests.stack import APP_DB

PRIVILEGES = ("rolsuper", "rolcreatedb", "rolcreaterole")


def serving_roles(stack) -> dict[str, str]:
    """{role: env var of its password} of the two roles web serves requests as."""
    env = stack.env("web")
    return {env.get("TETHYS_DB_USERNAME", "tethys_default"): "TETHYS_DB_PASSWORD",
            env.get("TETHYS_DB_SUPERUSER", "tethys_super"): "TETHYS_DB_SUPERUSER_PASS"}


def test_setup_ran_once_and_exited_zero(stack):
    state = stack.inspect("setup")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0, \
        f"setup: status {state['Status']}, exit code {state['ExitCode']}"
    log = docker.logs_tail(stack.container_id("setup"), lines=200)
    assert "setup done" in log, f"setup's log does not end its work: {log[-2000:]}"


def test_setup_holds_the_admin_password_and_web_does_not(stack):
    assert stack.env("setup").get("POSTGRES_PASSWORD_FILE") == "/run/secrets/postgres_password"
    env = stack.env("web")
    assert not {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE"} & set(env), \
        "web's environment names the db admin's password"
    mounts = [m["Destination"] for m in stack.inspect("web")["Mounts"]]
    assert not [m for m in mounts if "postgres_password" in m], f"web mounts the admin password: {mounts}"
    assert stack.exec("web", ["sh", "-c", "ls /run/secrets"]).split().count("postgres_password") == 0


def test_web_holds_only_the_secrets_it_serves_with(stack):
    mounted = set(stack.exec("web", ["sh", "-c", "ls /run/secrets"]).split())
    assert mounted == {"secret_key", "tethys_db_password", "redis_password"}, f"web's secrets: {sorted(mounted)}"


def test_web_has_no_file_holding_the_admin_password(stack):
    # the password as the db container holds it (its secret file)
    admin_password = stack.exec("db", ["cat", "/run/secrets/postgres_password"]).strip()
    assert len(admin_password) >= 8
    found = stack.exec("web", ["sh", "-c", 'grep -rlsF -- "$(cat)" /run /var/lib/tethys /etc /tmp || true'],
                       input=admin_password)
    assert not found.strip(), f"files in web hold the db admin's password: {found}"


@pytest.mark.parametrize("attribute", PRIVILEGES)
def test_serving_roles_hold_no_privilege(stack, attribute):
    roles = serving_roles(stack)
    rows = stack.psql("postgres", f"SELECT rolname || '=' || {attribute} FROM pg_roles "
                f"WHERE rolname IN ({', '.join(repr(r) for r in roles)})").split()
    assert sorted(rows) == sorted(f"{role}=false" for role in roles), f"{attribute}: {rows}"


def test_app_store_database_is_owned_by_the_store_role_and_has_postgis(stack):
    store_role = stack.env("web").get("TETHYS_DB_SUPERUSER", "tethys_super")
    owner = stack.psql("postgres", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{APP_DB}'")
    assert owner == store_role, f"{APP_DB} is owned by {owner!r}"
    assert stack.psql(APP_DB, "SELECT count(*) FROM pg_extension WHERE extname = 'postgis'") == "1"


# Run with the portal's Python in web (its network, its driver): each serving role, with its
# password (from the stack's secret files, on stdin), tries what only the admin may do.
REFUSALS = r"""
import json, sys, psycopg
host, port, roles = json.loads(sys.stdin.read())
out = {}
for role, password in roles.items():
    conn = psycopg.connect(host=host, port=port, user=role, password=password, dbname="postgres",
                           autocommit=True)
    for what, sql in (("create database", 'CREATE DATABASE "lp_probe"'),
                      ("create role", 'CREATE ROLE "lp_probe"'),
                      ("read server files", "SELECT pg_read_file('PG_VERSION')")):
        try:
            conn.execute(sql)
            out[f"{role}: {what}"] = "allowed"
        except psycopg.errors.InsufficientPrivilege:
            out[f"{role}: {what}"] = "refused"
    conn.close()
print(json.dumps(out))
"""


def test_serving_roles_are_refused_admin_work(stack):
    env = stack.env("web")
    passwords = {role: stack_value(stack.stack, "web", var) for role, var in serving_roles(stack).items()}
    assert all(passwords.values()), "a serving role's password is missing from the stack's secret files"
    probe = json.dumps([env.get("TETHYS_DB_HOST", "db"), int(env.get("TETHYS_DB_PORT", "5432")), passwords])
    out = stack.exec("web", [stack.web_python_path(), "-c", REFUSALS], input=probe)
    results = json.loads(out.strip().splitlines()[-1])
    assert results and set(results.values()) == {"refused"}, results


def test_setup_runs_again_without_changes_while_web_serves(stack, admin_portal):
    cid = stack.container_id("setup")
    before = stack.inspect("setup")["State"]["StartedAt"]
    docker.docker("start", cid)
    code = int(docker.docker("wait", cid, timeout=300).stdout.strip())
    assert stack.inspect("setup")["State"]["StartedAt"] != before, "setup did not run again"
    assert code == 0, f"setup exited {code} on its second run: {docker.logs_tail(cid)}"
    assert admin_portal.get("/apps/dam-inventory/").status_code == 200


# ---- the backup service: reads every table as tethys_backup, may change nothing
BACKUP_PSQL = 'PGPASSWORD="$(cat /run/secrets/backup_db_password)" psql -X -At -h db -U "$BACKUP_DB_USERNAME" -d tethys_platform -c "$1"'


def backup_psql(stack, sql: str):
    return docker.docker("exec", stack.container_id("backup"), "sh", "-c", BACKUP_PSQL, "sh", sql, check=False)


def test_the_backup_role_holds_no_privilege_and_only_the_read_grant(stack):
    role = stack.env_file("backup").get("BACKUP_DB_USERNAME", "tethys_backup")
    attributes = stack.psql("postgres", f"SELECT {', '.join(PRIVILEGES)} FROM pg_roles WHERE rolname = '{role}'")
    assert attributes == "f|f|f", f"{role}: superuser|createdb|createrole = {attributes!r}"
    grants = stack.psql("postgres", "SELECT string_agg(pg_get_userbyid(roleid), ',') FROM pg_auth_members "
                                     f"WHERE member = '{role}'::regrole")
    assert grants == "pg_read_all_data", f"{role} is a member of {grants!r}"


def test_the_backup_role_reads_but_cannot_write(stack):
    read = backup_psql(stack, "SELECT count(*) > 0 FROM auth_user")
    assert read.returncode == 0 and read.stdout.strip() == "t", read.stderr
    for sql in ("DELETE FROM auth_user", "UPDATE auth_user SET is_superuser = true", "CREATE TABLE lp_probe (x int)"):
        written = backup_psql(stack, sql)
        assert written.returncode != 0 and "permission denied" in written.stderr, f"{sql}: {written.stderr}"


def test_the_backup_service_holds_only_its_own_secrets(stack):
    mounted = set(stack.exec("backup", ["sh", "-c", "ls /run/secrets"]).split())
    assert mounted == {"backup_db_password", "restic_password"}, f"backup's secrets: {sorted(mounted)}"
    assert not {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "BACKUP_DB_PASSWORD"} & set(stack.env("backup"))
