"""The web container: its processes, their users, the workers' sockets, the effective config.

Processes are read from /proc by a small probe run with the image's own Python, because the
image need not ship procps (testinfra's `host.process` needs `ps`)."""

import json
import os
from urllib.parse import urlparse

import pytest
import yaml

PROC_PROBE = r"""
import json, os
me = os.getpid()
listening = {}  # socket inode -> path, for listening unix sockets
with open('/proc/net/unix') as f:
    next(f)
    for line in f:
        parts = line.split()
        # columns: Num RefCount Protocol Flags Type St Inode [Path]; flag 0x10000 = listening
        if len(parts) >= 8 and int(parts[3], 16) & 0x10000:
            listening[parts[6]] = parts[7]
procs = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        status = dict(l.split(':', 1) for l in open(f'/proc/{pid}/status') if ':' in l)
        argv = open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='replace').split('\0')
    except OSError:
        continue
    if int(pid) == me:
        continue
    sockets, fds_readable = [], True
    try:
        for fd in os.listdir(f'/proc/{pid}/fd'):
            try:
                target = os.readlink(f'/proc/{pid}/fd/{fd}')
            except OSError:
                continue
            if target.startswith('socket:['):
                inode = target[8:-1]
                if inode in listening:
                    sockets.append(listening[inode])
    except OSError:
        fds_readable = False
    procs.append({
        'pid': int(pid),
        'ppid': int(status['PPid'].strip()),
        'uid': int(status['Uid'].split()[1]),  # effective uid
        'argv': [a for a in argv if a],
        'listen': sorted(set(sockets)),
        'fds_readable': fds_readable,
    })
print(json.dumps({'procs': procs, 'listening': sorted(set(listening.values()))}))
"""

SOCKET_PROBE = r"""
import json, socket, sys
out = {}
for path in json.loads(sys.stdin.readline()):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
        out[path] = s.recv(64).decode(errors='replace').split('\r\n')[0]
    except OSError as e:
        out[path] = 'ERROR ' + repr(e)
    finally:
        s.close()
print(json.dumps(out))
"""


def _is(proc, program):
    argv = proc["argv"]
    if not argv:
        return False
    if program == "nginx":
        return argv[0].startswith("nginx:") or os.path.basename(argv[0]) == "nginx"
    # a wrapper named like "tethys-daphne" counts (it is daphne with a shutdown hook)
    names = [os.path.basename(a) for a in argv[:3]]
    return (any(n == program or n.endswith("-" + program) for n in names)
            or ("-m" in argv[:3] and program in argv[:4]))


def _socket_args(argv):
    """Unix socket paths named on a daphne command line (-u, --unix-socket, -e unix:...)."""
    paths = []
    for i, arg in enumerate(argv):
        if arg in ("-u", "--unix-socket") and i + 1 < len(argv):
            paths.append(argv[i + 1])
        elif arg.startswith("--unix-socket="):
            paths.append(arg.split("=", 1)[1])
        elif arg in ("-e", "--endpoint") and i + 1 < len(argv) and argv[i + 1].startswith("unix:"):
            paths.append(argv[i + 1].split(":", 1)[1].split(":")[0])
    return paths


@pytest.fixture(scope="module")
def web_python(stack):
    return stack.web_python_path()


@pytest.fixture(scope="module")
def processes(stack, web_python):
    data = json.loads(stack.exec("web", [web_python, "-"], input=PROC_PROBE))
    # docker exec'd commands (this probe's own shell, if any) have PPid 0 like PID 1 does;
    # keep PID 1 and everything the container started itself.
    data["procs"] = [p for p in data["procs"] if p["pid"] == 1 or p["ppid"] != 0]
    return data


@pytest.fixture(scope="module")
def asgi_processes(stack):
    value = stack.env("web").get("ASGI_PROCESSES")
    assert value, "ASGI_PROCESSES is not set in the web container's environment"
    return int(value)


def test_test_stack_runs_three_asgi_processes(asgi_processes):
    # tests/conftest.py sets ASGI_PROCESSES=3 for the test stack: the e2e suite relies on it.
    assert asgi_processes == 3


def test_supervisord_and_nginx_run(processes):
    procs = processes["procs"]
    assert [p for p in procs if _is(p, "supervisord")], "supervisord is not running"
    nginx = [p for p in procs if _is(p, "nginx")]
    assert any("master" in " ".join(p["argv"]) for p in nginx), f"no nginx master process: {nginx}"
    assert any("worker" in " ".join(p["argv"]) for p in nginx), f"no nginx worker process: {nginx}"


def test_exactly_asgi_processes_daphne_workers(processes, asgi_processes):
    daphnes = [p for p in processes["procs"] if _is(p, "daphne")]
    assert len(daphnes) == asgi_processes, (
        f"{len(daphnes)} daphne processes for ASGI_PROCESSES={asgi_processes}: "
        + "; ".join(" ".join(p["argv"]) for p in daphnes)
    )


def test_daphne_workers_are_supervised(processes):
    supervisord = {p["pid"] for p in processes["procs"] if _is(p, "supervisord")}
    for p in (p for p in processes["procs"] if _is(p, "daphne")):
        assert p["ppid"] in supervisord, f"daphne {p['pid']} is not a child of supervisord"


def test_nothing_runs_as_root(processes):
    root = [f"{p['pid']}: {' '.join(p['argv'])}" for p in processes["procs"] if p["uid"] == 0]
    assert not root, "processes running as root in web:\n" + "\n".join(root)


def test_the_exec_user_is_not_root(stack):
    # the image's USER: also what `docker exec` gets, so an operator's shell is not root either
    assert stack.host("web").user().uid != 0


def _worker_sockets(processes):
    sockets = {}
    for p in (p for p in processes["procs"] if _is(p, "daphne")):
        paths = p["listen"] or _socket_args(p["argv"])
        sockets[p["pid"]] = paths
    return sockets


def test_each_worker_has_its_own_listening_unix_socket(processes):
    sockets = _worker_sockets(processes)
    assert sockets, "no daphne worker found"
    all_paths = []
    for pid, paths in sockets.items():
        assert len(paths) == 1, f"daphne {pid} listens on {paths or 'no unix socket'}"
        assert paths[0] in processes["listening"], f"{paths[0]} of daphne {pid} is not listening"
        all_paths += paths
    assert len(set(all_paths)) == len(all_paths), f"workers share a socket: {sockets}"


def test_each_worker_socket_answers_http(stack, processes, web_python):
    paths = [p for ps in _worker_sockets(processes).values() for p in ps]
    answers = json.loads(
        stack.exec("web", [web_python, "-c", SOCKET_PROBE], input=json.dumps(paths) + "\n")
    )
    for path, status_line in answers.items():
        assert status_line.startswith("HTTP/1."), f"worker socket {path}: {status_line}"


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
