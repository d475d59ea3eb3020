"""`make swarm-up` / `make swarm-down`: the stack on Docker Swarm, with WEB_REPLICAS web tasks.

The stack file is generated, never kept by hand: `compose config` resolves docker-compose.yml
for the stack (images, env files, secrets' paths), and `stack_file()` rewrites what Swarm reads
differently or not at all:
- `version: "3.9"` (docker stack deploy of Engine 20.10 needs it); `build`, `depends_on`,
  `profiles`, `restart`, `security_opt` and `shm_size` go (Swarm ignores or refuses them); the
  restart policy, replicas, rolling-update and rollback settings, placement and resources go
  under `deploy:` (RESOURCES, below);
- networks become overlay networks (`attachable`, so one-off containers such as the tests'
  probes can join them; `SWARM_ENCRYPT=1` encrypts them between nodes);
- secrets become Swarm secrets named after their content's digest (a Swarm secret cannot
  change: a new value is a new secret, and the old one goes with `docker stack rm`);
- services are found by DNS round robin (`endpoint_mode: dnsrr`: a name resolves to its tasks'
  addresses) instead of a virtual IP, which needs the kernel's IPVS, absent on some hosts (this
  build machine's among them); the edge spreads requests over web's tasks itself and publishes
  its ports on the node it runs on (`mode: host`: Swarm cannot bind one host address).

Setup runs once, before any web task: the first deploy has web at 0 replicas and setup as a
one-shot task (restart condition none, re-run at every swarm-up by a changed SETUP_RUN);
stackctl waits for it to complete, then deploys again with web at WEB_REPLICAS.

A single-node swarm is initialised when the engine is in none (`docker swarm init
--advertise-addr SWARM_ADVERTISE_ADDR`, 127.0.0.1 by default), and `swarm-down` leaves it only
if stackctl made it. db and redis are pinned to the node labelled `dam-inventory.data=true`
(stateful: their volumes live there); stackctl labels this node when no node has the label.
docs/swarm.md says what several nodes need beyond this.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from stackctl import docker, envfiles, images
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.health import poll
from stackctl.settings import BUILD_DIR, Stack

SWARM_DIR = BUILD_DIR / "swarm"
# Written when stackctl initialised the swarm: swarm-down then leaves it again.
CREATED_MARKER = SWARM_DIR / "created-by-stackctl"
DATA_LABEL = "dam-inventory.data"
STACK_VERSION = "3.9"
SETUP_TIMEOUT = 300
CONVERGE_TIMEOUT = 300
DOWN_TIMEOUT = 120
# Per service: (CPU limit, memory limit, CPU reservation, memory reservation). Sized for the
# 2-core machine this was built on: raise the limits with the hardware (docs/swarm.md). The
# reservations must leave room for one web task more than WEB_REPLICAS on a node: a
# start-first update runs the new task beside the old ones (with 0.5 CPU each, the third web
# task of a 2-core node could not be placed and the update waited for ever).
RESOURCES = {
    "edge": ("1.0", "256M", "0.05", "32M"),
    "web": ("2.0", "1536M", "0.25", "384M"),
    "setup": ("1.0", "1024M", "0.25", "256M"),
    "db": ("2.0", "2048M", "0.25", "256M"),
    "redis": ("1.0", "512M", "0.05", "32M"),
    "geoserver": ("2.0", "2048M", "0.50", "1024M"),
}
# Swarm ignores or refuses these service keys (Engine 20.10).
UNSUPPORTED = ("build", "depends_on", "profiles", "restart", "security_opt", "shm_size", "container_name")
WEB_UPDATE = {"parallelism": 1, "order": "start-first", "failure_action": "rollback", "monitor": "20s",
              "delay": "5s"}
WEB_ROLLBACK = {"parallelism": 1, "order": "start-first", "monitor": "20s"}


# ----------------------------------------------------------------------------- settings
def web_replicas() -> int:
    raw = os.environ.get("WEB_REPLICAS") or "2"
    if not raw.isdigit() or int(raw) < 1:
        raise StackError(f"WEB_REPLICAS is {raw!r}: give a number of web tasks, 1 or more")
    return int(raw)


# ----------------------------------------------------------------------------- the swarm
def swarm_state() -> tuple[str, bool]:
    """(LocalNodeState, is this node a manager)."""
    out = docker.docker("info", "--format", "{{json .Swarm}}").stdout
    info = json.loads(out)
    return info.get("LocalNodeState", "inactive"), bool(info.get("ControlAvailable"))


def ensure_swarm() -> bool:
    """A swarm this node manages; True when it had to be made here."""
    state, manager = swarm_state()
    created = state == "inactive"
    if created:
        address = os.environ.get("SWARM_ADVERTISE_ADDR") or "127.0.0.1"
        say(f"this engine is in no swarm: making a single-node one (docker swarm init --advertise-addr {address})")
        docker.docker("swarm", "init", "--advertise-addr", address)
        SWARM_DIR.mkdir(parents=True, exist_ok=True)
        CREATED_MARKER.write_text("docker swarm init by stackctl; swarm-down leaves it\n")
    elif state != "active":
        raise StackError(f"this engine's swarm state is {state!r}: wait for it, or `docker swarm leave`")
    elif not manager:
        raise StackError("this node is a swarm worker: run swarm-up on a manager (docker node ls)")
    label_data_node()
    return created


def label_data_node() -> None:
    """db and redis run where their volumes are: the node labelled DATA_LABEL. With no node
    labelled, this one becomes it."""
    nodes = docker.docker("node", "ls", "--format", "{{.ID}}").stdout.split()
    labels = [json.loads(docker.docker("node", "inspect", "--format", "{{json .Spec.Labels}}", n).stdout) or {}
              for n in nodes]
    if not any(label.get(DATA_LABEL) == "true" for label in labels):
        this_node = docker.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        docker.docker("node", "update", "--label-add", f"{DATA_LABEL}=true", this_node)
        say(f"labelled this node {DATA_LABEL}=true: db and redis (and their volumes) live here")


# ----------------------------------------------------------------------------- stack file
def compose_config(stack: Stack) -> dict:
    import yaml

    out = Compose(stack)("config").stdout
    return yaml.safe_load(out)


def _deploy(service: str, replicas: int, restart: str) -> dict:
    cpus, memory, cpus_reserved, memory_reserved = RESOURCES[service]
    deploy = {
        "replicas": replicas,
        "endpoint_mode": "dnsrr",
        "restart_policy": {"condition": restart, "delay": "5s"},
        "resources": {"limits": {"cpus": cpus, "memory": memory},
                      "reservations": {"cpus": cpus_reserved, "memory": memory_reserved}},
    }
    if service in ("db", "redis", "geoserver"):
        deploy["placement"] = {"constraints": [f"node.labels.{DATA_LABEL} == true"]}
    if service == "web":
        deploy["update_config"], deploy["rollback_config"] = dict(WEB_UPDATE), dict(WEB_ROLLBACK)
        per_node = os.environ.get("SWARM_WEB_MAX_PER_NODE")
        if per_node:
            deploy.setdefault("placement", {})["max_replicas_per_node"] = int(per_node)
    if service == "edge":
        # its ports are bound on the node: a second edge task there could not start beside it
        deploy["update_config"] = {"parallelism": 1, "order": "stop-first", "failure_action": "rollback"}
    return deploy


def _secret_name(project: str, key: str, path: str) -> str:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{project}_{key}_{digest}"


def _host_port(port) -> dict:
    """A published port of `compose config` (long form, or "[ip:]published:target[/proto]") as
    Swarm publishes it: on the node running the task, on every address of it."""
    if isinstance(port, str):
        spec, _, protocol = port.partition("/")
        *_, published, target = spec.split(":")
        port = {"published": int(published), "target": int(target), "protocol": protocol or "tcp"}
    port = {k: v for k, v in port.items() if k != "host_ip"}
    return {**port, "mode": "host"}


def stack_file(stack: Stack, config: dict, web: int, setup_run: str) -> dict:
    """The Swarm form of the resolved compose file (see the module docstring)."""
    services = {}
    for name, service in config["services"].items():
        if name == "geoserver" and not images.geoserver_included():
            continue
        if name == "backup":
            continue  # it writes to a folder of one host (docs/swarm.md, "Backups in swarm mode")
        one_shot = service.get("restart") == "no"
        service = {k: v for k, v in service.items() if k not in UNSUPPORTED}
        replicas = web if name == "web" else 1
        service["deploy"] = _deploy(name, replicas, "none" if one_shot else "any")
        if one_shot:
            service.setdefault("environment", {})["SETUP_RUN"] = setup_run
        if name == "db":
            # shm_size has no Swarm form: a tmpfs of the same size for PostgreSQL's shared memory
            service.setdefault("volumes", []).append(
                {"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": 256 * 1024 * 1024}})
        if service.get("ports"):
            service["ports"] = [_host_port(p) for p in service["ports"]]
        services[name] = service
    encrypted = os.environ.get("SWARM_ENCRYPT") == "1"
    networks = {}
    for name, network in (config.get("networks") or {}).items():
        network = {k: v for k, v in (network or {}).items() if k in ("internal", "name")}
        network.update(driver="overlay", attachable=True)
        if encrypted:
            network["driver_opts"] = {"encrypted": ""}
        networks[name] = network
    secrets = {key: {"file": value["file"], "name": _secret_name(stack.project, key, value["file"])}
               for key, value in (config.get("secrets") or {}).items()}
    return {"version": STACK_VERSION, "services": services, "networks": networks,
            "volumes": config.get("volumes") or {}, "secrets": secrets}


def write_stack_file(stack: Stack, web: int, setup_run: str) -> Path:
    import yaml

    SWARM_DIR.mkdir(parents=True, exist_ok=True)
    path = SWARM_DIR / f"{stack.project}.yml"
    text = yaml.safe_dump(stack_file(stack, compose_config(stack), web, setup_run), sort_keys=False)
    path.write_text("# Generated by stackctl/swarm.py from docker-compose.yml: edit that, not this.\n" + text)
    return path


# ----------------------------------------------------------------------------- deploy
def deploy(stack: Stack, path: Path) -> None:
    # --resolve-image never: the images are this machine's own (built, or loaded from a registry
    # by an operator); asking a registry for them would fail where none answers.
    docker.run(["docker", "stack", "deploy", "--prune", "--resolve-image", "never", "-c", path, stack.project],
               timeout=300, env=dict(os.environ))


def tasks(stack: Stack, service: str) -> list[dict]:
    out = docker.docker("service", "ps", "--no-trunc", "--format", "{{json .}}",
                        f"{stack.project}_{service}", check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_setup(stack: Stack, setup_run: str) -> None:
    """Waits for this run's setup task to complete; fails with its log when it does not."""

    def check() -> str | None:
        current = [t for t in tasks(stack, "setup") if t["DesiredState"] in ("Shutdown", "Running", "Complete")]
        state = current[0]["CurrentState"].split()[0] if current else "pending"
        if state == "Complete" and _setup_run_of(current[0]) == setup_run:
            return None
        if state in ("Failed", "Rejected"):
            logs = docker.docker("service", "logs", "--tail", "40", f"{stack.project}_setup", check=False)
            raise StackError(f"setup failed ({current[0]['Error']}):\n{logs.stdout[-3000:]}{logs.stderr[-1000:]}")
        return f"setup: {state}"

    def timed_out(line: str):
        raise StackError(f"setup did not complete within {SETUP_TIMEOUT}s ({line}): docker service ps {stack.project}_setup")

    say(f"setup completed in {poll(check, timeout=SETUP_TIMEOUT, on_timeout=timed_out):.0f}s")


def _setup_run_of(task: dict) -> str:
    out = docker.docker("inspect", "--format", "{{json .Spec.ContainerSpec.Env}}", task["ID"], check=False).stdout
    env = json.loads(out or "null") or []
    return next((e.split("=", 1)[1] for e in env if e.startswith("SETUP_RUN=")), "")


def task_containers(stack: Stack, service: str) -> list[str]:
    """Ids of the running containers of SERVICE's tasks on this node."""
    out = docker.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={stack.project}_{service}").stdout
    return out.split()


def converged(stack: Stack, service: str, replicas: int) -> str | None:
    """None when SERVICE runs REPLICAS healthy containers here; else what it is doing."""
    ids = task_containers(stack, service)
    health = [docker.container_state(c) for c in ids]
    healthy = health.count("healthy")
    return None if healthy == replicas and len(ids) == replicas else f"{healthy}/{replicas} healthy"


def wait_converged(stack: Stack, wanted: dict[str, int], timeout: float = CONVERGE_TIMEOUT) -> float:
    def check() -> str | None:
        waiting = {s: v for s, v in ((s, converged(stack, s, n)) for s, n in wanted.items()) if v}
        return " ".join(f"{s}={v}" for s, v in waiting.items()) if waiting else None

    def timed_out(line: str):
        raise StackError(f"not converged within {timeout:.0f}s: {line} (docker stack ps {stack.project})")

    elapsed = poll(check, timeout=timeout, on_timeout=timed_out)
    say(f"every service converged after {elapsed:.0f}s")
    return elapsed


def up(stack: Stack, replicas: int | None = None) -> None:
    replicas = replicas or web_replicas()
    images.prepare()
    envfiles.write_env_files(stack)
    ensure_swarm()
    setup_run = time.strftime("%Y%m%dT%H%M%S")
    say(f"deploying {stack.project} with web at 0 replicas: setup runs first, once")
    deploy(stack, write_stack_file(stack, 0, setup_run))
    wait_setup(stack, setup_run)
    say(f"deploying web at {replicas} replicas")
    deploy(stack, write_stack_file(stack, replicas, setup_run))
    backing = {s: 1 for s in ("db", "redis", "edge")}
    wait_converged(stack, {**backing, "web": replicas})


def down(stack: Stack, volumes: bool = False, leave: bool | None = None) -> None:
    """Removes the stack (and its volumes). LEAVE: leave the swarm too; None: when stackctl
    made it (CREATED_MARKER)."""
    docker.docker("stack", "rm", stack.project, check=False)
    deadline = time.monotonic() + DOWN_TIMEOUT
    label = f"label=com.docker.stack.namespace={stack.project}"
    # The stack's containers and networks go asynchronously; volumes can go only after them.
    while time.monotonic() < deadline:
        left = docker.docker("ps", "-aq", "--filter", label).stdout.split() + \
            docker.docker("network", "ls", "-q", "--filter", label).stdout.split()
        if not left:
            break
        time.sleep(1)
    if volumes:
        for volume in docker.docker("volume", "ls", "-q", "--filter", label).stdout.split():
            docker.docker("volume", "rm", volume, check=False)
    if leave is None:
        leave = CREATED_MARKER.exists()
    if leave:
        say("leaving the single-node swarm stackctl made (docker swarm leave --force)")
        docker.docker("swarm", "leave", "--force", check=False)
        CREATED_MARKER.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    try:
        import yaml  # noqa: F401
    except ImportError:  # the stack file is YAML: run again in the project's .venv (PyYAML)
        from stackctl import hosttools

        python = hosttools.venv_python()
        os.execv(python, [python, "-m", "stackctl", "swarm", *argv])
    parser = argparse.ArgumentParser(prog="python -m stackctl swarm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "clean"],
                        help="up: deploy (or update); down: remove the stack, keep its volumes; clean: and its volumes")
    args = parser.parse_args(argv)
    docker.require()
    stack = Stack.from_environment()
    if args.action == "up":
        up(stack)
        say(f"up: {stack.base_url}/apps/dam-inventory/ (web x{web_replicas()}; docker stack ps {stack.project})")
    else:
        down(stack, volumes=args.action == "clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
