"""What is reachable from where: published ports and the internal/external network split."""

import uuid

import pytest

from stackctl.docker import inspect as docker_inspect
from stackctl.docker import run
from stackctl.settings import TEST_STACK

INTERNAL_SERVICES = ("db", "redis", "geoserver")


def _bindings(info):
    """[(container port, host ip, host port)] actually published by a container."""
    out = []
    for port, binds in (info["NetworkSettings"].get("Ports") or {}).items():
        for b in binds or []:
            out.append((port, b.get("HostIp"), b.get("HostPort")))
    for port, binds in (info["HostConfig"].get("PortBindings") or {}).items():
        for b in binds or []:
            out.append((port, b.get("HostIp"), b.get("HostPort")))
    return out


def test_no_internal_service_publishes_a_port(stack):
    containers = stack.containers()
    assert {"db", "redis", "web"} <= set(containers), f"services found: {sorted(containers)}"
    for service, cid in containers.items():
        if service == "web":
            continue
        info = docker_inspect(cid)[0]
        assert not _bindings(info), f"{service} publishes {_bindings(info)}"
        assert info["HostConfig"].get("NetworkMode") != "host", f"{service} uses the host network"


def test_web_is_published_on_loopback_only(stack):
    binds = _bindings(stack.inspect("web"))
    assert binds, "web publishes nothing"
    for port, host_ip, host_port in binds:
        assert port == "8080/tcp", f"web publishes container port {port}"
        assert host_ip == "127.0.0.1", f"web is published on {host_ip or 'every interface'}"
        assert host_port == str(TEST_STACK.port)


def _networks(info):
    return {name: net for name, net in info["NetworkSettings"]["Networks"].items()}


@pytest.fixture(scope="module")
def network_roles(stack):
    """{'internal': [names], 'external': [names]} from the web container's networks."""
    roles = {"internal": [], "external": []}
    for name in _networks(stack.inspect("web")):
        internal = docker_inspect(name)[0].get("Internal", False)
        roles["internal" if internal else "external"].append(name)
    return roles


def test_web_sits_on_one_internal_and_one_external_network(network_roles):
    assert len(network_roles["internal"]) == 1, network_roles
    assert len(network_roles["external"]) == 1, network_roles


def test_db_and_redis_are_only_on_internal_networks(stack, network_roles):
    for service in ("db", "redis"):
        names = set(_networks(stack.inspect(service)))
        assert names <= set(network_roles["internal"]), f"{service} is attached to {sorted(names)}"


# bash's /dev/tcp with a timeout: no client tools needed in the throwaway container.
PROBE = """
for target in "$@"; do
  host=${target%:*}; port=${target##*:}
  if timeout 4 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
    echo "$target open"
  else
    echo "$target closed"
  fi
done
"""


def test_from_the_external_network_db_and_redis_are_unreachable(stack, network_roles):
    external = network_roles["external"][0]
    internal = network_roles["internal"][0]
    targets = ["db:5432", "redis:6379"]
    # by address too, so the test does not pass merely because names do not resolve
    for service, port in (("db", 5432), ("redis", 6379)):
        ip = _networks(stack.inspect(service))[internal]["IPAddress"]
        targets.append(f"{ip}:{port}")
    # positive control: web is reachable on the same network, so "closed" means isolation
    web_ip = _networks(stack.inspect("web"))[external]["IPAddress"]
    targets.append(f"{web_ip}:8080")
    image = stack.inspect("web")["Image"]
    name = f"{TEST_STACK.project}-netprobe-{uuid.uuid4().hex[:8]}"
    try:
        out = run(
            ["docker", "run", "--rm", "--name", name, "--network", external, "--user", "65534:65534",
             "--entrypoint", "bash", image, "-c", PROBE, "probe", *targets],
            timeout=120,
        ).stdout
    finally:
        run(["docker", "rm", "-f", name], check=False, timeout=60)
    result = dict(line.rsplit(" ", 1) for line in out.strip().splitlines())
    assert result.pop(f"{web_ip}:8080") == "open", f"control failed, web unreachable: {out}"
    opened = [t for t, state in result.items() if state != "closed"]
    assert not opened, f"reachable from the external network: {opened}"
