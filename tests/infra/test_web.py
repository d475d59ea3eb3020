"""The web container through testinfra: its processes and their users (`host.process`), the
workers' unix sockets (`host.socket`), files (`host.file`) and the effective config."""

from urllib.parse import urlparse

import pytest
import yaml

from stackctl import docker
from stackctl.settings import ROOT


@pytest.fixture(scope="module")
def web(stack):
    return stack.host("web")


@pytest.fixture(scope="module")
def asgi_processes(stack):
    value = stack.env("web").get("ASGI_PROCESSES")
    assert value, "ASGI_PROCESSES is not set in the web container's environment"
    return int(value)


def salt_default(name: str):
    return yaml.safe_load((ROOT / "salt" / "defaults.yaml").read_text())[name]


@pytest.fixture(scope="module")
def asgi_server(stack) -> str:
    return stack.env("web").get("ASGI_SERVER") or salt_default("ASGI_SERVER")


@pytest.fixture(scope="module")
def workers(web):
    processes = {p.pid: p for p in web.process.filter()}
    found = docker.workers_among([(pid, p.args) for pid, p in processes.items()])
    return [processes[pid] for _, pid in sorted(found.items())]


def worker_socket(process) -> str:
    endpoint = docker.worker_endpoint(process.args)
    assert endpoint, f"worker {process.pid} names no unix socket: {process.args}"
    return endpoint[0]


def test_test_stack_runs_three_asgi_processes(asgi_processes):
    # tests/conftest.py sets ASGI_PROCESSES=3 for the test stack: the e2e suite relies on it.
    assert asgi_processes == 3


def test_supervisord_is_pid_1(web):
    assert "supervisord" in web.process.get(pid=1).args


def test_nginx_master_and_workers_run(web):
    nginx = [p.args for p in web.process.filter(comm="nginx")]
    assert any("master" in a for a in nginx), f"no nginx master process: {nginx}"
    assert any("worker" in a for a in nginx), f"no nginx worker process: {nginx}"


def test_exactly_asgi_processes_workers(workers, asgi_processes):
    assert len(workers) == asgi_processes, (
        f"{len(workers)} ASGI workers for ASGI_PROCESSES={asgi_processes}: {[p.args for p in workers]}")


# The script each ASGI_SERVER's workers run (tethys-daphne: daphne with a shutdown hook that
# closes every WebSocket with 1000).
SERVER_SCRIPTS = {"daphne": "/usr/local/bin/tethys-daphne", "uvicorn": "/opt/tethys-venv/bin/uvicorn"}


def test_every_worker_runs_the_configured_server(workers, asgi_server):
    scripts = {p.pid: p.args.split()[1] for p in workers}
    assert workers and set(scripts.values()) == {SERVER_SCRIPTS[asgi_server]}, (
        f"ASGI_SERVER={asgi_server}, workers run {scripts}")


def test_asgi_workers_are_supervised(workers):
    assert workers, "no ASGI worker found"
    for process in workers:
        assert process.ppid == 1, f"worker {process.pid} is not a child of supervisord (pid 1)"


def test_nothing_runs_as_root(web):
    root = [f"{p.pid}: {p.args}" for p in web.process.filter(euid=0)]
    assert not root, "processes running as root in web:\n" + "\n".join(root)


def test_the_exec_user_is_not_root(web):
    # the image's USER: also what `docker exec` gets, so an operator's shell is not root either
    assert web.user().uid != 0


def test_each_worker_has_its_own_listening_unix_socket(web, workers):
    paths = [worker_socket(p) for p in workers]
    assert paths, "no ASGI worker found"
    assert len(set(paths)) == len(paths), f"workers share a socket: {paths}"
    for path in paths:
        assert web.socket(f"unix://{path}").is_listening, f"{path} is not listening"


def test_each_worker_socket_queues_the_configured_backlog(stack, workers):
    configured = int(stack.env("web").get("ASGI_LISTEN_BACKLOG") or salt_default("ASGI_LISTEN_BACKLOG"))
    backlogs = {p.pid: docker.worker_endpoint(p.args)[1] for p in workers}
    assert set(backlogs.values()) == {configured}, f"listen backlogs {backlogs}, configured {configured}"


def test_each_worker_socket_answers_http(web, workers):
    # -W 1: read one answer, then quit; the request side stays open (daphne drops a
    # half-closed connection before answering it).
    request = "printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n'"
    for path in (worker_socket(p) for p in workers):
        answer = web.run(f"{request} | timeout 10 nc -W 1 -U {path} | head -n1")
        assert answer.stdout.startswith("HTTP/1."), f"worker socket {path}: {answer.stdout!r} {answer.stderr!r}"


# ---------------------------------------------------------------------------------------------
# portal_config.yml
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def portal_settings(stack):
    env = stack.env("web")
    home = env.get("TETHYS_HOME")
    assert home, "TETHYS_HOME is not set in the web image/container"
    f = stack.host("web").file(f"{home}/portal_config.yml")
    assert f.exists, f"{home}/portal_config.yml does not exist in web"
    config = yaml.safe_load(f.content_string) or {}
    return config.get("settings") or {}


def _redis_hosts(layer_config):
    """(host, port, password) for each host entry: URL strings, {'address': url} or dicts."""
    out = []
    for h in layer_config.get("hosts") or []:
        if isinstance(h, (list, tuple)):
            out.append((h[0], int(h[1]), None))
            continue
        if isinstance(h, dict) and "address" in h:
            extra = h
            h = h["address"]
        else:
            extra = {}
        if isinstance(h, str):
            u = urlparse(h)
            out.append((u.hostname, u.port or 6379, u.password or extra.get("password")))
        else:
            out.append((h.get("host"), int(h.get("port", 6379)), h.get("password")))
    return out


def test_channel_layer_is_redis_with_the_env_password(stack, portal_settings):
    layers = portal_settings.get("CHANNEL_LAYERS") or {}
    default = layers.get("default") or {}
    assert default.get("BACKEND") in (
        "channels_redis.core.RedisChannelLayer",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    ), f"channel layer backend: {default.get('BACKEND')!r}"
    hosts = _redis_hosts(default.get("CONFIG") or {})
    assert hosts, f"no Redis hosts in CHANNEL_LAYERS: {default}"
    password = stack.secret("redis", "REDIS_PASSWORD")
    assert password, "REDIS_PASSWORD is not set for the redis service"
    for host, port, pw in hosts:
        assert host == "redis" and port == 6379, f"channel layer points at {host}:{port}"
        assert pw == password, "the channel layer's Redis password is not the one in redis.env"


def test_database_settings_come_from_env(stack, portal_settings):
    db = (portal_settings.get("DATABASES") or {}).get("default") or {}
    env = stack.env("web")
    assert "postgresql" in db.get("ENGINE", "") or "postgis" in db.get("ENGINE", ""), db.get("ENGINE")
    assert db.get("HOST") == env.get("TETHYS_DB_HOST", "db")
    assert str(db.get("PORT")) == env.get("TETHYS_DB_PORT", "5432")
    for key, var in (("NAME", "TETHYS_DB_NAME"), ("USER", "TETHYS_DB_USERNAME")):
        if env.get(var):
            assert db.get(key) == env[var], f"DATABASES.default.{key} != ${var}"
    password = stack.secret("web", "TETHYS_DB_PASSWORD")
    assert password, "TETHYS_DB_PASSWORD(_FILE) is not set for web"
    assert db.get("PASSWORD") == password, "DATABASES.default.PASSWORD is not $TETHYS_DB_PASSWORD"


def test_portal_config_is_not_world_readable(stack):
    # it holds the db and Redis passwords
    home = stack.env("web")["TETHYS_HOME"]
    mode = stack.host("web").file(f"{home}/portal_config.yml").mode
    assert not mode & 0o004, f"portal_config.yml mode {oct(mode)} is world-readable"
