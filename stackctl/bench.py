"""`make bench`: the fan-out benchmark, ours against the reference setup of the Tethys docs.

Brings up two throw-away stacks from the same web image, one after the other, on fresh volumes
(their own projects, ports and env files under build/bench/; the dev and test stacks are not
touched):
  ours  project dam-inventory-bench-ours, 127.0.0.1:18090, the stack's defaults
        (ASGI_PROCESSES from env/web.env.example, nginx spreading sockets over the workers,
        core Redis layer with the image's capacity and group expiry)
  ref   project dam-inventory-bench-ref, 127.0.0.1:18091, what the Tethys docs configure:
        one daphne process (ASGI_PROCESSES=1), core Redis layer with channels_redis' defaults
        (capacity 100, group_expiry 86400) and the docs' CHANNEL_LAYERS_CONFIG, the
        tutorial's consumer (DAM_INVENTORY_FANOUT=per-socket) and no connection pool
For each: first start to healthy, restart to healthy, then tests/bench/fanout.py (N clients,
steady adds, then the 50 dams/s burst). Finally tests/bench/report.py prints the ratios and
the targets, and writes docs/benchmarks.md and its plot.

Knobs (env): BENCH_CLIENTS (100,1000,5000), BENCH_DAMS (20), BENCH_RATE (2 dams/s),
BENCH_BURST_CLIENTS (100), BENCH_BURST_RATE (50), BENCH_BURST_SECONDS (30),
BENCH_CONFIGS ("ours ref"), BENCH_OURS_ASGI_PROCESSES (the example's default),
BENCH_KEEP=1 (leave the stacks up), BENCH_NO_REPORT=1 (results JSON only),
BENCH_NO_BUILD=1 (run the images as they are, without checking them against their inputs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from stackctl import docker, hosttools, images
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.envfiles import read_env_file, set_value, stack_value, write_env_files
from stackctl.health import wait_healthy
from stackctl.lifecycle import ONE_SHOT, UP_TIMEOUT, services
from stackctl.settings import BUILD_DIR, ENV_EXAMPLES_DIR, ROOT, Stack

OUT = BUILD_DIR / "bench"
PORTS = {"ours": 18090, "ref": 18091}
RESTART_TIMEOUT = 180
BUSY_LOAD = 1.5
# Where the load-generator container finds the checkout's benchmark code and stackctl.
CONTAINER_ROOT = "/bench"
WEB_PYTHON = "/opt/tethys-venv/bin/python"

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


def knob(name: str, default: str) -> str:
    return os.environ.get(name) or default


def bench_stack(cfg: str) -> Stack:
    if cfg not in PORTS:
        raise StackError(f"unknown config {cfg} (ours or ref)")
    return Stack(project=f"dam-inventory-bench-{cfg}", env_dir=OUT / cfg / "env", port=PORTS[cfg])


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
        asgi = knob("BENCH_OURS_ASGI_PROCESSES",
                    read_env_file(ENV_EXAMPLES_DIR / "web.env.example").get("ASGI_PROCESSES", ""))
    # Every dam of the run must be accepted: no inventory limit. The load generator reaches the
    # portal as web:8080 on the stack's network, so `web` is an allowed host (and origin).
    write_env_files(stack, {"ASGI_PROCESSES": asgi, "ALLOWED_HOSTS": "localhost,127.0.0.1,web",
                            "DAM_INVENTORY_MAX_DAMS": ""})
    for key, value in (REF_WEB_ENV.items() if cfg == "ref" else ()):
        set_value(stack.env_file("web"), key, value)
    say(f"{cfg}: ASGI_PROCESSES={asgi}, env in {stack.env_dir_ref}")


def remove_stack(cfg: str) -> None:
    stack = bench_stack(cfg)
    if not stack.env_file("web").is_file():
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


def run_fanout(cfg: str, compose: Compose, clients: str, web_image: str) -> None:
    """The load generator: tests/bench/fanout.py in a container of the web image (its Python has
    requests; the WebSocket client is tests/bench/rawws.py, stdlib only), on the stack's external
    network and in the web container's pid namespace (to read the workers' memory). No
    docker-proxy in the path, and the load stays between the stack's own containers."""
    stack = compose.stack
    web = compose.container_id("web")
    if not web or docker.container_state(web) not in ("healthy", "running"):
        raise StackError(f"{cfg}: no running web container")
    # One descriptor per client, plus the senders' and Python's own.
    nofile = max(int(n) for n in clients.split(",") if n.strip()) + 1024
    # The admin login goes in the environment: the env files are root's only.
    env = dict(os.environ,
               PORTAL_SUPERUSER_NAME=read_env_file(stack.env_file("web")).get("PORTAL_SUPERUSER_NAME") or "admin",
               PORTAL_SUPERUSER_PASSWORD=stack_value(stack, "web", "PORTAL_SUPERUSER_PASSWORD") or "")
    argv = [
        "docker", "run", "--rm", "--name", f"{stack.project}-loadgen",
        "--network", f"{stack.project}_external", "--pid", f"container:{web}",
        "--ulimit", f"nofile={nofile}:{nofile}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-e", "PORTAL_SUPERUSER_NAME", "-e", "PORTAL_SUPERUSER_PASSWORD", "-e", "PYTHONDONTWRITEBYTECODE=1",
        "-e", f"PYTHONPATH={CONTAINER_ROOT}",
        "-v", f"{ROOT / 'tests' / 'bench'}:{CONTAINER_ROOT}/tests/bench:ro",
        "-v", f"{ROOT / 'stackctl'}:{CONTAINER_ROOT}/stackctl:ro",
        "--entrypoint", WEB_PYTHON, web_image,
        f"{CONTAINER_ROOT}/tests/bench/fanout.py", "--url", "http://web:8080", "--project", "-",
        "--label", cfg, "--clients", clients,
        "--dams", knob("BENCH_DAMS", "20"), "--rate", knob("BENCH_RATE", "2"),
        "--burst-clients", knob("BENCH_BURST_CLIENTS", "100"), "--burst-rate", knob("BENCH_BURST_RATE", "50"),
        "--burst-seconds", knob("BENCH_BURST_SECONDS", "30"), "--out", "-",
    ]
    # stdout is the results JSON; the generator's progress goes on to stderr as it happens.
    with (OUT / cfg / "fanout.json").open("w") as results:
        proc = subprocess.run(argv, env=env, stdout=results, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise StackError(f"{cfg}: the load generator failed (its log is above)")


def write_image_info(web_image: str) -> None:
    info = docker.docker("image", "inspect", "-f", '{"image": "{{index .RepoTags 0}}", "bytes": {{.Size}}}',
                         web_image).stdout
    (OUT / "image.json").write_text(info)


def report() -> None:
    # The project venv has matplotlib for the plot.
    docker.run([hosttools.venv_python(), ROOT / "tests" / "bench" / "report.py", OUT], capture=False, timeout=600)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackctl bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", default=bool(os.environ.get("BENCH_NO_BUILD")),
                        help="run the images as they are (BENCH_NO_BUILD=1)")
    args = parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)
    configs = knob("BENCH_CONFIGS", "ours ref").split()
    clients = knob("BENCH_CLIENTS", "100,1000,5000")
    keep = bool(os.environ.get("BENCH_KEEP"))
    for cfg in configs:
        bench_stack(cfg)  # an unknown config fails before anything starts

    docker.require()
    warn_if_busy()
    OUT.mkdir(parents=True, exist_ok=True)
    # Build (or check) the images first, so the first-start time below is the start alone.
    if not args.no_build:
        images.prepare()
    web_image = images.compose_variables()["WEB_IMAGE"]
    try:
        for cfg in configs:
            (OUT / cfg).mkdir(parents=True, exist_ok=True)
            compose = start_and_time(cfg)
            run_fanout(cfg, compose, clients, web_image)
            if not keep:
                remove_stack(cfg)
    except BaseException:
        # Interrupted or failed: do not leave bench stacks (and their 5,000 sockets) behind.
        if not keep:
            for cfg in configs:
                remove_stack(cfg)
        raise
    write_image_info(web_image)
    if not os.environ.get("BENCH_NO_REPORT"):
        report()
    return 0
