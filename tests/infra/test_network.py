"""What is reachable from where: only the edge publishes ports; web sits behind it on `front`;
db and redis sit on `internal`, unreachable from the edge's public side; the backup service
alone has a second way out (`backup-out`, for an off-site restic repository)."""

import uuid

import pytest

from stackctl.docker import inspect as docker_inspect
from stackctl.docker import run
from stackctl.settings import TEST_STACK


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


def test_no_service_but_the_edge_publishes_a_port(stack):
    containers = stack.containers()
    assert {"db", "redis", "web", "edge"} <= set(containers), f"services found: {sorted(containers)}"
    for service, cid in containers.items():
        if service == "edge":
            continue
        info = docker_inspect(cid)[0]
        assert not _bindings(info), f"{service} publishes {_bindings(info)}"
        assert info["HostConfig"].get("NetworkMode") != "host", f"{service} uses the host network"


def test_the_edge_is_published_on_loopback_only(stack):
    binds = _bindings(stack.inspect("edge"))
    expected = {("8443/tcp", str(TEST_STACK.port)), ("8080/tcp", str(TEST_STACK.http_port))}
    assert {(port, host_port) for port, _, host_port in binds} == expected, binds
    for port, host_ip, host_port in binds:
        assert host_ip == "127.0.0.1", f"the edge is published on {host_ip or 'every interface'}"


def _networks(info):
    return {name: net for name, net in info["NetworkSettings"]["Networks"].items()}


@pytest.fixture(scope="module")
def networks(stack):
    """{role: name} of the stack's four networks."""
    return {role: f"{TEST_STACK.project}_{role}" for role in ("internal", "front", "public", "backup-out")}


def test_only_the_edges_and_the_backup_services_networks_have_a_route_out(networks):
    internal = {role: docker_inspect(name)[0].get("Internal", False) for role, name in networks.items()}
    assert internal == {"internal": True, "front": True, "public": False, "backup-out": False}, internal


@pytest.mark.parametrize("service, attached", [
    ("edge", {"front", "public"}),
    ("web", {"internal", "front"}),
    ("db", {"internal"}),
    ("redis", {"internal"}),
    ("backup", {"internal", "backup-out"}),
])
def test_each_service_sits_on_its_networks_only(stack, networks, service, attached):
    assert set(_networks(stack.inspect(service))) == {networks[role] for role in attached}


def test_on_front_there_is_nothing_but_the_edge_and_web(stack, networks):
    # web believes forwarded headers from the whole of `front` (salt/_modules/tethys_net.py)
    members = {c["Name"] for c in docker_inspect(networks["front"])[0]["Containers"].values()}
    expected = {stack.inspect(service)["Name"].lstrip("/") for service in ("edge", "web")}
    assert members == expected


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


def test_from_the_public_network_db_redis_and_web_are_unreachable(stack, networks):
    public, internal = networks["public"], networks["internal"]
    targets = ["db:5432", "redis:6379", "web:8080"]
    # by address too, so the test does not pass merely because names do not resolve
    for service, port in (("db", 5432), ("redis", 6379)):
        ip = _networks(stack.inspect(service))[internal]["IPAddress"]
        targets.append(f"{ip}:{port}")
    web_ip = _networks(stack.inspect("web"))[networks["front"]]["IPAddress"]
    targets.append(f"{web_ip}:8080")
    # positive control: the edge is reachable on the same network, so "closed" means isolation
    edge_ip = _networks(stack.inspect("edge"))[public]["IPAddress"]
    targets.append(f"{edge_ip}:8443")
    image = stack.inspect("web")["Image"]
    name = f"{TEST_STACK.project}-netprobe-{uuid.uuid4().hex[:8]}"
    try:
        out = run(
            ["docker", "run", "--rm", "--name", name, "--network", public, "--user", "65534:65534",
             "--entrypoint", "bash", image, "-c", PROBE, "probe", *targets],
            timeout=120,
        ).stdout
    finally:
        run(["docker", "rm", "-f", name], check=False, timeout=60)
    result = dict(line.rsplit(" ", 1) for line in out.strip().splitlines())
    assert result.pop(f"{edge_ip}:8443") == "open", f"control failed, the edge unreachable: {out}"
    opened = [t for t, state in result.items() if state != "closed"]
    assert not opened, f"reachable from the public network: {opened}"
