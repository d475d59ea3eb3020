"""db (PostgreSQL + PostGIS) and redis (Redis 5) as the app uses them."""

import json

import pytest

from tests.stack import APP_DB


def test_db_has_the_portal_and_app_databases(stack):
    names = set(stack.psql("postgres", "SELECT datname FROM pg_database").split())
    portal = stack.env("web").get("TETHYS_DB_NAME", "tethys_platform")
    assert portal in names, f"portal database {portal!r} missing: {sorted(names)}"
    assert APP_DB in names, f"app database {APP_DB!r} missing: {sorted(names)}"


def test_app_database_has_postgis(stack):
    version = stack.psql(APP_DB, "SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
    assert version.startswith("3."), f"postgis extension in {APP_DB}: {version!r}"
    # and it works, not merely registered
    assert stack.psql(APP_DB, "SELECT ST_AsText(ST_SetSRID(ST_MakePoint(1, 2), 4326))") == "POINT(1 2)"


def test_dam_geometries_are_srid_4326(stack):
    rows = stack.psql(
        APP_DB,
        "SELECT f_table_name || ':' || srid || ':' || type FROM geometry_columns",
    ).split()
    assert rows, f"no geometry column in {APP_DB}"
    assert all(":4326:" in r for r in rows), rows


# A tiny RESP client run with the web image's Python: the web container is where the app
# reaches Redis from, and the redis image need not ship redis-cli.
REDIS_PROBE = r"""
import json, socket, sys
password = sys.stdin.readline().rstrip('\n')

def reply(f):
    line = f.readline().decode().rstrip('\r\n')
    if line[:1] == '$':
        n = int(line[1:])
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if line[:1] == '*':
        return [reply(f) for _ in range(max(int(line[1:]), 0))]
    return line

def command(s, f, *args):
    msg = f'*{len(args)}\r\n' + ''.join(f'${len(a.encode())}\r\n{a}\r\n' for a in args)
    s.sendall(msg.encode())
    return reply(f)

s = socket.create_connection(('redis', 6379), timeout=10)
f = s.makefile('rb')
out = {'ping_without_auth': command(s, f, 'PING'),
       'get_without_auth': command(s, f, 'GET', 'anything'),
       'auth_wrong': command(s, f, 'AUTH', password + 'x')}
out['auth'] = command(s, f, 'AUTH', password)
out['ping'] = command(s, f, 'PING')
out['info_server'] = command(s, f, 'INFO', 'server')
out['info_persistence'] = command(s, f, 'INFO', 'persistence')
out['config_dir'] = command(s, f, 'CONFIG', 'GET', 'dir')
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def redis_probe(stack):
    password = stack.secret("redis", "REDIS_PASSWORD")
    assert password, "REDIS_PASSWORD is not set for the redis service"
    out = stack.exec("web", [stack.web_python_path(), "-c", REDIS_PROBE], input=password + "\n")
    return json.loads(out)


def _info(text):
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def test_redis_refuses_commands_without_the_password(redis_probe):
    assert redis_probe["ping_without_auth"].startswith("-NOAUTH"), redis_probe["ping_without_auth"]
    assert redis_probe["get_without_auth"].startswith("-NOAUTH"), redis_probe["get_without_auth"]
    assert redis_probe["auth_wrong"].startswith("-"), "a wrong password was accepted"


def test_redis_accepts_the_env_password(redis_probe):
    assert redis_probe["auth"] == "+OK"
    assert redis_probe["ping"] == "+PONG"


def test_redis_is_version_5(redis_probe):
    version = _info(redis_probe["info_server"]).get("redis_version", "")
    assert version.startswith("5."), f"redis_version {version!r}"


def test_redis_persists_to_disk(redis_probe):
    info = _info(redis_probe["info_persistence"])
    assert info.get("aof_enabled") == "1", f"appendonly is off: aof_enabled={info.get('aof_enabled')}"
    assert info.get("aof_last_write_status", "ok") == "ok"


def test_redis_data_is_on_a_named_volume(stack, redis_probe):
    # group membership must survive a container re-creation
    reply = redis_probe["config_dir"]
    data_dir = reply[1] if isinstance(reply, list) and len(reply) == 2 else "/data"
    mounts = [m for m in stack.inspect("redis")["Mounts"] if m.get("Type") == "volume"]
    assert any(data_dir == m["Destination"] or data_dir.startswith(m["Destination"].rstrip("/") + "/")
               for m in mounts), f"redis dir {data_dir} is not on a named volume: {mounts}"
