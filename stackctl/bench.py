"""`make bench`: the fan-out benchmark, ours against the reference setup of the Tethys docs,
and the steps between them.

Brings up throw-away stacks from the same web and edge images, one after the other, on fresh
volumes (their own projects, ports and env files under build/bench/; the dev and test stacks
are not touched):
  ours  project dam-inventory-bench-ours, the edge on 127.0.0.1:18090 (HTTPS) and :18190
        (HTTP), the stack's defaults (ASGI_PROCESSES from env/web.env.example, nginx spreading
        sockets over the workers, core Redis layer with the image's capacity and group expiry)
  ref   project dam-inventory-bench-ref, 127.0.0.1:18091 and :18191, what the Tethys docs
        configure: one daphne process (ASGI_PROCESSES=1), core Redis layer with channels_redis'
        defaults (capacity 100, group_expiry 86400) and the docs' CHANNEL_LAYERS_CONFIG, the
        tutorial's consumer (DAM_INVENTORY_FANOUT=per-socket) and no connection pool
  ref-procs, ref-procs-capacity, ref-procs-capacity-fanout (LADDER): from ref towards ours,
        one factor at a time, so each gain is credited to its cause
  ours-uvicorn  ours with the image's other ASGI server (ASGI_SERVER=uvicorn), 127.0.0.1:18096
        and :18196, straight to web
For each: first start to healthy, restart to healthy, then tests/bench/fanout.py (N clients,
steady adds, then the 100 dams/s burst) straight to web (http://web:8080), results in
build/bench/<config>/. On ours, a second fanout.py run then goes through the edge
(https://edge:8443, TLS verified against the stack's local CA) to the same stack, results in
build/bench/ours-edge/: the edge's cost is the difference between the two, on one stack and
one image. Finally tests/bench/report.py prints the ratios, the edge's cost and the targets,
and writes docs/benchmarks.md and its plot.
  swarm (BENCH_CONFIGS="ours swarm"): ours deployed by `stackctl swarm up` with 2 web tasks on
        a single-node swarm (project dam-inventory-bench-swarm, 127.0.0.1:18092 and :18192),
        measured through the edge (build/bench/swarm-edge/), beside ours through the edge: on
        one machine replicas add no CPU, so what it shows is that the design scales out
        without a cliff.

Knobs (env): BENCH_CLIENTS (100,1000,5000,10000), BENCH_DAMS (20), BENCH_RATE (2 dams/s),
BENCH_BURST_CLIENTS (100), BENCH_BURST_RATE (100), BENCH_BURST_SECONDS (30),
BENCH_CONFIGS (DEFAULT_CONFIGS: ours, ref and the steps), BENCH_OURS_ASGI_PROCESSES (the example's default),
BENCH_STORM_CLIENTS (5000; 0: no reconnect storm, tests/bench/storm.py, run on ours after its
fan-out runs; `--storm-only` runs it alone),
BENCH_EDGE (1; 0: ours straight to web only), BENCH_KEEP=1 (leave the stacks up),
BENCH_NO_REPORT=1 (results JSON only),
BENCH_NO_BUILD=1 (run the images as they are, without checking them against their inputs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stackctl import docker, hosttools, images, swarm
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.envfiles import EnvWriter, example_value, read_env_file, set_value, stack_value, write_env_files
from stackctl.health import wait_healthy
from stackctl.lifecycle import ONE_SHOT, UP_TIMEOUT, services
from stackctl.settings import BUILD_DIR, ROOT, Stack, source_commit

OUT = BUILD_DIR / "bench"
# Published by each bench stack's edge: HTTPS, and HTTP (the redirect). Only their own, so the
# two stacks, the dev and the test stack never collide.
PORTS = {"ours": 18090, "ref": 18091, "swarm": 18092, "ref-procs": 18093, "ref-procs-capacity": 18094,
         "ref-procs-capacity-fanout": 18095, "ours-uvicorn": 18096}
HTTP_PORTS = {name: port + 100 for name, port in PORTS.items()}
# The swarm config: ours deployed by `stackctl swarm up` with this many web tasks, measured
# straight to web, where Swarm's virtual IP spreads the connections over every task (each task's
# nginx then holds its share of the descriptors a container may have), and through the edge,
# which spreads them too (docs/swarm.md).
SWARM_REPLICAS = 2
RESTART_TIMEOUT = 180
BUSY_LOAD = 1.5
# Where the load-generator container finds the checkout's benchmark code and stackctl.
CONTAINER_ROOT = "/bench"
WEB_PYTHON = "/opt/tethys-venv/bin/python"
# Where the load generator reaches the portal on the stack's `front` network: web itself (plain
# HTTP, as the edge does), and the edge in front of it (TLS, checked against the stack's local
# CA, mounted read-only into the load generator's container at CONTAINER_CA).
WEB_URL = "http://web:8080"
EDGE_URL = "https://edge:8443"
CONTAINER_CA = "/bench-ca/local_ca.crt"
# The results through the edge go to OUT/<config><EDGE_SUFFIX>/ (report.py reads ours-edge/).
EDGE_SUFFIX = "-edge"
# The reconnect storm's results: OUT/<STORM_DIR>/storm.json (report.py reads it).
STORM_DIR = "storm"
# Between two load-generator runs on one stack: the first run's closed sockets leave the
# workers and Redis before the second opens its own.
BETWEEN_RUNS_S = 5

# Appended to the ref stack's web.env: the docs' value, and channels_redis' own defaults
# instead of the image's.
# The reference setup of the Tethys docs ("Django Channels Layer" page): the core layer with
# channels_redis' own capacity and group expiry, the tutorial's consumer (each socket joins the
# group) and Django's default of a database connection per request, where ours has a fan-out
# per process and a pool.
REF_WEB_ENV = {
    "CHANNEL_LAYERS_BACKEND": "channels_redis.core.RedisChannelLayer",
    "CHANNEL_LAYERS_CONFIG": "{'hosts':[{'host': 'redis', 'port': 6379}]}",
    "CHANNEL_LAYERS_CAPACITY": "100",
    "CHANNEL_LAYERS_GROUP_EXPIRY": "86400",
    "DAM_INVENTORY_FANOUT": "per-socket",
    "TETHYS_DB_POOL_MAX_SIZE": "0",
}
# From the reference to ours one factor at a time: each step is the one before it with one more
# thing as ours has it, so each gain is credited to its cause. name -> (what it changes, the
# REF_WEB_ENV keys it leaves at ours' value). Every step but ref runs ours' process count.
LADDER = {
    "ref": ("the Tethys docs' setup: one daphne process", ()),
    "ref-procs": ("+ ours' process count (ASGI_PROCESSES)", ()),
    "ref-procs-capacity": ("+ ours' channel capacity (1000) and group expiry (900 s)",
                           ("CHANNEL_LAYERS_CAPACITY", "CHANNEL_LAYERS_GROUP_EXPIRY")),
    "ref-procs-capacity-fanout": ("+ ours' per-process fan-out",
                                  ("CHANNEL_LAYERS_CAPACITY", "CHANNEL_LAYERS_GROUP_EXPIRY", "DAM_INVENTORY_FANOUT")),
    "ours": ("+ ours' connection pool: the stack as shipped", tuple(REF_WEB_ENV)),
}
# The other ASGI server the image offers, measured beside ours (ASGI_SERVER; daphne is ours').
UVICORN = "ours-uvicorn"
UVICORN_WEB_ENV = {"ASGI_SERVER": "uvicorn"}
# The limit row: no stack, a bare asyncio broadcast (tests/bench/limit.py).
LIMIT = "limit"
# ours first (the reconnect storm runs on it), ours on uvicorn, then the steps from the
# reference towards ours, then the limit.
DEFAULT_CONFIGS = " ".join(["ours", UVICORN, *(name for name in LADDER if name != "ours"), LIMIT])


@dataclass(frozen=True)
class Route:
    """One load-generator run on a stack: where it reaches the portal, and where its results go
    (OUT/<label>/fanout.json)."""

    label: str
    url: str
    tls: bool = False


def knob(name: str, default: str) -> str:
    return os.environ.get(name) or default


def bench_stack(cfg: str) -> Stack:
    if cfg not in PORTS:
        raise StackError(f"unknown config {cfg} ({', '.join(PORTS)})")
    return Stack(project=f"dam-inventory-bench-{cfg}", env_dir=OUT / cfg / "env", port=PORTS[cfg],
                 http_port=HTTP_PORTS[cfg])


def routes(cfg: str) -> list[Route]:
    """Straight to web for every config; ours and swarm also through the edge (BENCH_EDGE, on
    by default), on the same stack, to show what the extra hop and TLS cost. The reference setup
    of the Tethys docs has no edge of its own, so ref is measured straight to web only."""
    out = [Route(cfg, WEB_URL)]
    if cfg in ("ours", "swarm") and knob("BENCH_EDGE", "1") != "0":
        out.append(Route(cfg + EDGE_SUFFIX, EDGE_URL, tls=True))
    return out


def warn_if_busy() -> None:
    load = float(Path("/proc/loadavg").read_text().split()[0])
    if load > BUSY_LOAD:
        say(f"WARNING: load average is {load} on {os.cpu_count()} cores: other work (image builds?) "
            "will skew the numbers")


def write_env(cfg: str) -> None:
    """Fresh env files (new secrets, matching the fresh volumes) with the config's settings."""
    stack = bench_stack(cfg)
    shutil.rmtree(stack.env_dir, ignore_errors=True)
    if cfg == "ref":
        asgi = "1"
    else:
        asgi = knob("BENCH_OURS_ASGI_PROCESSES", example_value("web", "ASGI_PROCESSES"))
    # Every dam of the run must be accepted: no inventory limit. The load generator reaches the
    # portal as web:8080 and edge:8443 on the stack's network, so both are allowed hosts, trusted
    # origins beside the published ones (its posts carry Origin = the URL it was given), and the
    # edge's certificate names `edge` (SERVER_NAMES, an edge.env key).
    origins = [EnvWriter(stack).derived("CSRF_TRUSTED_ORIGINS"), EDGE_URL, WEB_URL]
    write_env_files(stack, {"ASGI_PROCESSES": asgi, "ALLOWED_HOSTS": "localhost,127.0.0.1,web,edge",
                            "CSRF_TRUSTED_ORIGINS": ",".join(o for o in origins if o),
                            "SERVER_NAMES": "localhost,edge", "DAM_INVENTORY_MAX_DAMS": ""})
    for key, value in REF_WEB_ENV.items():
        if cfg in LADDER and key not in LADDER[cfg][1]:
            set_value(stack.env_file("web"), key, value)
    if cfg == UVICORN:
        for key, value in UVICORN_WEB_ENV.items():
            set_value(stack.env_file("web"), key, value)
    swarm_server = knob("BENCH_SWARM_ASGI_SERVER", "")
    if cfg == "swarm" and swarm_server:
        set_value(stack.env_file("web"), "ASGI_SERVER", swarm_server)
    say(f"{cfg}: ASGI_PROCESSES={asgi}, ASGI_SERVER={stack_value(stack, 'web', 'ASGI_SERVER')}, "
        f"env in {stack.env_dir_ref}")


# Whether the swarm config made this engine's swarm (then it leaves it again).
_swarm_made_here = False


def remove_stack(cfg: str) -> None:
    if cfg == LIMIT:
        remove_limit()
        return
    stack = bench_stack(cfg)
    if not stack.env_file("web").is_file():
        return
    if cfg == "swarm":
        swarm.down(stack, volumes=True, leave=_swarm_made_here)
        return
    say(f"{cfg}: removing the bench stack and its volumes")
    Compose(stack)("down", "-v", "--remove-orphans", check=False)


@contextlib.contextmanager
def output_to(path: Path):
    """Sends this process's stdout and stderr, and its children's, to a file for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def start_swarm(cfg: str) -> Stack:
    """The swarm config on fresh volumes: `stackctl swarm up` with SWARM_REPLICAS web tasks,
    timed to every task healthy (startup.json)."""
    global _swarm_made_here
    remove_stack(cfg)
    write_env(cfg)
    stack = bench_stack(cfg)
    _swarm_made_here = swarm.swarm_state()[0] == "inactive"
    say(f"{cfg}: swarm up, {SWARM_REPLICAS} web tasks, fresh volumes")
    t0 = time.monotonic()
    swarm.up(stack, replicas=SWARM_REPLICAS)
    first = time.monotonic() - t0
    say(f"{cfg}: first start to healthy {first:.1f}s")
    (OUT / cfg / "startup.json").write_text(f'{{"first_start_s": {first:.1f}}}\n')
    return stack


def start_and_time(cfg: str) -> Compose:
    """First start on fresh volumes, then a restart of web, each timed to healthy
    (startup.json)."""
    remove_stack(cfg)
    write_env(cfg)
    stack = bench_stack(cfg)
    compose = Compose(stack)
    up_log = OUT / cfg / "up.log"
    say(f"{cfg}: first start on fresh volumes (make up: migrations, admin, stores)")
    t0 = time.monotonic()
    try:
        with output_to(up_log):
            compose.announce()
            compose("up", "-d", "--remove-orphans", capture=False)
            wait_healthy(compose, services(compose), UP_TIMEOUT, one_shot=ONE_SHOT)
    except StackError as exc:
        with up_log.open("a") as log:
            log.write(f"ERROR: {exc}\n")
        raise StackError(f"{cfg} stack did not come up: see {up_log}") from None
    first = time.monotonic() - t0
    say(f"{cfg}: first start to healthy {first:.1f}s")

    say(f"{cfg}: restart of web to healthy")
    t0 = time.monotonic()
    compose("restart", "web")
    try:
        wait_healthy(compose, ["web"], RESTART_TIMEOUT, quiet=True)
    except StackError as exc:
        raise StackError(f"{cfg}: web not healthy {RESTART_TIMEOUT} s after a restart: {exc}") from None
    restart = time.monotonic() - t0
    say(f"{cfg}: restart to healthy {restart:.1f}s")
    (OUT / cfg / "startup.json").write_text(f'{{"first_start_s": {first:.1f}, "restart_s": {restart:.1f}}}\n')
    return compose


def ca_mount(cfg: str, stack: Stack) -> list[str]:
    """docker run arguments that show the load generator the stack's local CA at CONTAINER_CA."""
    ca = stack.ca_file
    if ca is None or not ca.is_file():
        raise StackError(f"{cfg}: no local CA certificate to check the edge against "
                         f"({stack.secrets_dir / 'local_ca.crt'}; the bench stacks run TLS_MODE=local)")
    return ["-v", f"{ca}:{CONTAINER_CA}:ro"]


def loadgen(network: str, pid_of: str, web_image: str, route: Route, nofile: int, credentials: tuple[str, str],
            script: str, *args: str, ca: list[str] = (), interactive: bool = False) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of a load generator: tests/bench/SCRIPT in a container of the web image (its
    Python has requests; the WebSocket client is tests/bench/rawws.py, stdlib only), on NETWORK
    (a stack's `front`, where the edge and web are) and in container PID_OF's pid namespace (to
    read the workers' memory). No docker-proxy in the path, and the load stays between
    containers. web's nginx believes forwarded headers from all of `front`: the generator sends
    none, so straight to web it is a plain-HTTP client and through the edge the edge's. NOFILE:
    descriptors it may open (one per client, plus margin); CA: docker run arguments that mount
    the CA a TLS route is checked against."""
    # The admin login goes in the environment: the env files are root's only.
    env = dict(os.environ, PORTAL_SUPERUSER_NAME=credentials[0], PORTAL_SUPERUSER_PASSWORD=credentials[1])
    argv = [
        "docker", "run", "--rm", *(["-i"] if interactive else []), "--name", f"{network}-loadgen",
        "--network", network, "--pid", f"container:{pid_of}",
        "--ulimit", f"nofile={nofile}:{nofile}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-e", "PORTAL_SUPERUSER_NAME", "-e", "PORTAL_SUPERUSER_PASSWORD", "-e", "PYTHONDONTWRITEBYTECODE=1",
        "-e", f"PYTHONPATH={CONTAINER_ROOT}",
        "-v", f"{ROOT / 'tests' / 'bench'}:{CONTAINER_ROOT}/tests/bench:ro",
        "-v", f"{ROOT / 'stackctl'}:{CONTAINER_ROOT}/stackctl:ro", *ca,
        "--entrypoint", WEB_PYTHON, web_image,
        f"{CONTAINER_ROOT}/tests/bench/{script}", "--url", route.url,
        *(["--ca-file", CONTAINER_CA] if route.tls else []), *args,
    ]
    return argv, env


def stack_loadgen(cfg: str, stack: Stack, web: str, web_image: str, route: Route, nofile: int, script: str,
                  *args: str, interactive: bool = False) -> tuple[list[str], dict[str, str]]:
    """loadgen() on STACK's `front` network, in its web container WEB's pid namespace (under
    Swarm, one of the tasks), as its portal admin."""
    if not web or docker.container_state(web) not in ("healthy", "running"):
        raise StackError(f"{cfg}: no running web container")
    credentials = (read_env_file(stack.env_file("web")).get("PORTAL_SUPERUSER_NAME") or "admin",
                   stack_value(stack, "web", "PORTAL_SUPERUSER_PASSWORD") or "")
    return loadgen(f"{stack.project}_front", web, web_image, route, nofile, credentials, script, *args,
                   ca=ca_mount(cfg, stack) if route.tls else [], interactive=interactive)


def fanout_args(route: Route, clients: str) -> list[str]:
    return ["--project", "-", "--label", route.label, "--clients", clients,
            "--dams", knob("BENCH_DAMS", "20"), "--rate", knob("BENCH_RATE", "2"),
            "--burst-clients", knob("BENCH_BURST_CLIENTS", "100"), "--burst-rate", knob("BENCH_BURST_RATE", "100"),
            "--burst-seconds", knob("BENCH_BURST_SECONDS", "30"), "--out", "-"]


def nofile_for(clients: str) -> int:
    return max(int(n) for n in clients.split(",") if n.strip()) + 1024


def run_loadgen(label: str, argv: list[str], env: dict[str, str]) -> None:
    """Runs a fanout.py load generator; its results JSON in OUT/LABEL/fanout.json."""
    (OUT / label).mkdir(parents=True, exist_ok=True)
    # stdout is the results JSON; the generator's progress goes on to stderr as it happens.
    with (OUT / label / "fanout.json").open("w") as results:
        proc = subprocess.run(argv, env=env, stdout=results, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise StackError(f"{label}: the load generator failed (its log is above)")


def run_fanout(cfg: str, stack: Stack, web: str, clients: str, web_image: str, route: Route) -> None:
    """tests/bench/fanout.py: N clients, steady adds, then the burst; results in
    OUT/<route>/fanout.json."""
    tasks = SWARM_REPLICAS if cfg == "swarm" else 1
    argv, env = stack_loadgen(cfg, stack, web, web_image, route, nofile_for(clients), "fanout.py",
                              *fanout_args(route, clients), "--web-tasks", str(tasks))
    say(f"{cfg}: load generator to {route.url}, results in {(OUT / route.label).relative_to(ROOT)}")
    run_loadgen(route.label, argv, env)


def run_limit(clients: str, web_image: str) -> None:
    """The limit row: fanout.py against tests/bench/limit.py (a bare asyncio broadcast, no
    stack), both in containers of the web image on a network of their own."""
    network = f"dam-inventory-bench-{LIMIT}"
    remove_limit()
    docker.docker("network", "create", network)
    nofile = nofile_for(clients)
    docker.docker("run", "-d", "--rm", "--name", network, "--network", network, "--network-alias", LIMIT,
                  "--ulimit", f"nofile={nofile}:{nofile}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                  "-v", f"{ROOT / 'tests' / 'bench'}:{CONTAINER_ROOT}/tests/bench:ro",
                  "--entrypoint", WEB_PYTHON, web_image, f"{CONTAINER_ROOT}/tests/bench/limit.py", "--port", "8080")
    route = Route(LIMIT, f"http://{LIMIT}:8080")
    argv, env = loadgen(network, network, web_image, route, nofile, (LIMIT, LIMIT), "fanout.py",
                        *fanout_args(route, clients))
    say(f"{LIMIT}: load generator to a bare asyncio broadcast, results in {(OUT / LIMIT).relative_to(ROOT)}")
    try:
        run_loadgen(LIMIT, argv, env)
    finally:
        remove_limit()


def remove_limit() -> None:
    network = f"dam-inventory-bench-{LIMIT}"
    docker.docker("rm", "-f", network, check=False)
    docker.docker("network", "rm", network, check=False)


def run_storm(cfg: str, compose: Compose, web_image: str, clients: int) -> None:
    """tests/bench/storm.py: Redis restarted under CLIENTS connected clients, straight to web.
    The generator cannot reach Redis, so this stops and starts it when the generator says so
    (the conversation is in storm.py). Results in OUT/storm/storm.json; a miss shows in the
    report's targets."""
    out = OUT / STORM_DIR
    out.mkdir(parents=True, exist_ok=True)
    redis = compose.container_id("redis")
    argv, env = stack_loadgen(cfg, compose.stack, compose.container_id("web"), web_image, Route(STORM_DIR, WEB_URL),
                              clients + 1024, "storm.py", "--clients", str(clients), interactive=True)
    say(f"{cfg}: reconnect storm, {clients} clients; Redis is stopped and started under them")
    with subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:

        def hear(expected: str) -> None:
            line = proc.stdout.readline().strip()
            if line != expected:
                raise StackError(f"{cfg}: the storm's load generator said {line!r}, not {expected!r} (its log is above)")

        def answer(line: str) -> None:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

        try:
            hear("ready")
            docker.docker("stop", "-t", "10", redis, timeout=60)
            answer("down")
            hear("added")
            docker.docker("start", redis)
            answer("started")
            wait_healthy(compose, ("redis",), RESTART_TIMEOUT, quiet=True)
            answer("back")
            results = proc.stdout.read()
        except BaseException:
            docker.docker("rm", "-f", f"{compose.stack.project}_front-loadgen", check=False)  # not left waiting
            raise
        finally:
            if docker.container_state(redis) not in ("healthy", "running", "starting"):
                docker.docker("start", redis, check=False)
            proc.wait(timeout=600)
    try:
        json.loads(results)
    except ValueError:
        raise StackError(f"{cfg}: the storm's load generator gave no results (exit {proc.returncode}; "
                         "its log is above)") from None
    (out / "storm.json").write_text(results)


def write_image_info(web_image: str) -> None:
    info = docker.docker("image", "inspect", "-f", '{"image": "{{index .RepoTags 0}}", "bytes": {{.Size}}}',
                         web_image).stdout
    (OUT / "image.json").write_text(info)


def report() -> None:
    # The project venv has matplotlib for the plot.
    proc = docker.run([hosttools.venv_python(), ROOT / "tests" / "bench" / "report.py", OUT], capture=False,
                      timeout=600, check=False)
    if proc.returncode != 0:
        raise StackError("the benchmark missed a target (the report above says which)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackctl bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", default=bool(os.environ.get("BENCH_NO_BUILD")),
                        help="run the images as they are (BENCH_NO_BUILD=1)")
    parser.add_argument("--storm-only", action="store_true",
                        help="ours, the reconnect storm alone: no fan-out runs, no report")
    args = parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)
    configs = ["ours"] if args.storm_only else knob("BENCH_CONFIGS", DEFAULT_CONFIGS).split()
    storm_clients = int(knob("BENCH_STORM_CLIENTS", "5000"))
    clients = knob("BENCH_CLIENTS", "100,1000,5000,10000")
    keep = bool(os.environ.get("BENCH_KEEP"))
    for cfg in configs:
        if cfg != LIMIT:
            bench_stack(cfg)  # an unknown config fails before anything starts

    docker.require()
    warn_if_busy()
    OUT.mkdir(parents=True, exist_ok=True)
    # An earlier run's results must not be reported (or kept) beside this run's.
    for stale in [OUT / STORM_DIR / "storm.json"] if args.storm_only else OUT.rglob("*.json"):
        stale.unlink(missing_ok=True)
    # The code the results belong to: the report names it and keeps it with the raw results.
    (OUT / "run.json").write_text(json.dumps({"commit": source_commit(), "configs": configs, "clients": clients}))
    # Build (or check) the images first, so the first-start time below is the start alone.
    if not args.no_build:
        images.prepare()
    web_image = images.compose_variables()["WEB_IMAGE"]
    try:
        for cfg in configs:
            (OUT / cfg).mkdir(parents=True, exist_ok=True)
            if cfg == LIMIT:
                run_limit(clients, web_image)
                continue
            if cfg == "swarm":
                stack = start_swarm(cfg)
                web = swarm.task_containers(stack, "web")[0]
            else:
                compose = start_and_time(cfg)
                stack, web = compose.stack, compose.container_id("web")
            for i, route in enumerate([] if args.storm_only else routes(cfg)):
                if i:
                    time.sleep(BETWEEN_RUNS_S)
                run_fanout(cfg, stack, web, clients, web_image, route)
            if cfg == "ours" and storm_clients > 0:
                time.sleep(BETWEEN_RUNS_S)
                run_storm(cfg, compose, web_image, storm_clients)
            if not keep:
                remove_stack(cfg)
    except BaseException:
        # Interrupted or failed: do not leave bench stacks (and their 5,000 sockets) behind.
        if not keep:
            for cfg in configs:
                remove_stack(cfg)
        raise
    if args.storm_only:
        result = json.loads((OUT / STORM_DIR / "storm.json").read_text())
        print(json.dumps(result, indent=1))
        return 0 if result["ok"] else 1
    write_image_info(web_image)
    (OUT / "ladder.json").write_text(json.dumps([[name, what] for name, (what, _) in LADDER.items()]))
    if not os.environ.get("BENCH_NO_REPORT"):
        report()
    return 0
