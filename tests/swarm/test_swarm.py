"""The stack on a single-node Docker Swarm (`stackctl swarm up`): web replicas behind the edge
and Swarm's virtual IP, setup run once, notifications across replicas, a web task killed and a
rolling update under load with nothing lost, and an update to a broken image rolled back by
Swarm itself. Timeouts are upper bounds for a slow CI machine, not speed assertions."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections import Counter

import pytest

from stackctl import docker, swarm
from stackctl.portal import APP_PATH, REPLICA_HEADER, add_succeeded, unique_name
from tests.notifications import NotificationClient, wait_until
from tests.swarm.conftest import REPLICAS, WORKERS_PER_REPLICA

CATCH_UP_TIMEOUT = 60
# Sends of an add answered 502 (one a second): longer than the edge keeps a stopping task's address.
ADD_RETRIES = 10
UPDATE_TIMEOUT = 600


def service(stack, name: str) -> str:
    return f"{stack.project}_{name}"


def inspect_service(stack, name: str) -> dict:
    return json.loads(docker.docker("service", "inspect", service(stack, name)).stdout)[0]


def update_state(stack) -> str | None:
    return (inspect_service(stack, "web").get("UpdateStatus") or {}).get("State")


def test_every_service_runs_its_replicas_healthy(swarm_stack):
    wanted = {"edge": 1, "db": 1, "redis": 1, "web": REPLICAS}
    assert {name: swarm.converged(swarm_stack, name, n) for name, n in wanted.items()} == dict.fromkeys(wanted)


def test_secrets_are_swarm_secrets_and_networks_are_overlays(swarm_stack):
    label = f"label=com.docker.stack.namespace={swarm_stack.project}"
    secrets = docker.docker("secret", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split()
    assert any("_secret_key_" in s for s in secrets) and any("_tls_key_" in s for s in secrets), secrets
    ids = docker.docker("network", "ls", "-q", "--filter", label).stdout.split()
    networks = {n["Name"].removeprefix(swarm_stack.project + "_"): (n["Driver"], n["Internal"])
                for n in docker.inspect(*ids)}
    assert networks == {"internal": ("overlay", True), "front": ("overlay", True), "public": ("overlay", False)}


def test_setup_ran_once_to_completion(swarm_stack):
    states = [t["CurrentState"].split()[0] for t in swarm.tasks(swarm_stack, "setup")]
    assert states.count("Complete") == 1 and not {"Failed", "Rejected", "Running"} & set(states), states


def test_db_and_redis_are_pinned_to_the_data_node(swarm_stack):
    for name in ("db", "redis"):
        constraints = inspect_service(swarm_stack, name)["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
        assert constraints == [f"node.labels.{swarm.DATA_LABEL} == true"]


def test_every_service_has_limits_and_reservations(swarm_stack):
    for name in ("edge", "web", "db", "redis", "setup"):
        resources = inspect_service(swarm_stack, name)["Spec"]["TaskTemplate"]["Resources"]
        assert resources["Limits"]["NanoCPUs"] > 0 and resources["Limits"]["MemoryBytes"] > 0, (name, resources)
        assert resources["Reservations"]["MemoryBytes"] > 0, (name, resources)


def test_page_requests_spread_over_every_replica(swarm_portal):
    seen = Counter(swarm_portal.get(APP_PATH).headers.get(REPLICA_HEADER) for _ in range(40))
    assert len(seen) == REPLICAS and None not in seen, seen


async def open_clients(portal, n: int) -> list[NotificationClient]:
    last_seq = await asyncio.to_thread(portal.last_event_seq)
    return list(await asyncio.gather(*(NotificationClient(portal, label=f"s{i}", last_seq=last_seq).start(30)
                                       for i in range(n))))


async def stop_all(clients):
    await asyncio.gather(*(c.stop() for c in clients))


def test_a_dam_added_through_any_replica_reaches_clients_on_every_replica_and_worker(swarm_portal):
    async def scenario():
        clients = await open_clients(swarm_portal, 4 * REPLICAS * WORKERS_PER_REPLICA)
        try:
            placed = Counter((c.replicas[-1], c.workers[-1]) for c in clients)
            dam_ids = [await asyncio.to_thread(swarm_portal.add_dam_checked, unique_name("Swarm dam")) for _ in range(4)]
            arrived = await asyncio.gather(*(c.wait_for(dam_ids, 15) for c in clients))
            live = all(c.seen[d].how == "live" for c in clients for d in dam_ids if d in c.seen)
            return placed, arrived, live
        finally:
            await stop_all(clients)

    placed, arrived, live = asyncio.run(scenario())
    assert len(placed) == REPLICAS * WORKERS_PER_REPLICA, f"sockets did not reach every replica and worker: {placed}"
    assert all(arrived) and live, "a client missed a dam added through another replica"


class SteadyTraffic:
    """Page requests and adds in a thread until stopped. An add answered 502 is the documented
    retry case (a POST that reached a web task as it stopped): as a user would, the traffic
    looks at the list a second later and, when the dam is not there, sends it again, until the
    edge has stopped choosing that task (it looks web up every 5 s); such adds are counted
    apart. A task killed between the commit and its answer leaves the dam saved: then the
    list shows it and it is not sent again."""

    def __init__(self, portal, interval: float = 0.2):
        self.portal, self.interval = portal, interval
        self.pages: Counter = Counter()
        self.adds: Counter = Counter()
        self.retried: list[str] = []
        self.saved_despite_502: list[str] = []
        self.names: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _add(self) -> None:
        name = unique_name("Rolling dam")
        resp = self.portal.add_dam(name)
        for _ in range(ADD_RETRIES):
            if resp.status_code != 502:
                break
            self.retried.append(name)
            time.sleep(1)
            if name in self.portal.dam_names():
                self.names.append(name)
                self.saved_despite_502.append(name)
                return
            resp = self.portal.add_dam(name)
        self.adds[resp.status_code] += 1
        if add_succeeded(resp):
            self.names.append(name)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                if n % 5 == 0:
                    self._add()
                else:
                    self.pages[self.portal.get(APP_PATH).status_code] += 1
            except Exception as exc:  # counted: the test names each
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            time.sleep(self.interval)

    def dam_ids(self) -> list[int]:
        """Ids of the dams added, checking each name was saved exactly once."""
        saved = Counter(d["name"] for d in self.portal.dams_since(0))
        twice = [name for name in self.names if saved[name] != 1]
        assert not twice, f"dams not saved exactly once (a retried add saved twice?): {twice}"
        return [d["id"] for d in self.portal.dams_since(0) if d["name"] in set(self.names)]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)


def run_under_load(portal, n_clients: int, action):
    """Opens N_CLIENTS notification clients, runs ACTION (blocking) with steady traffic, then
    checks every client holds every dam added meanwhile. Returns (traffic, the clients missing
    dams, their reconnects, the longest time one was without a socket)."""
    async def scenario():
        clients = await open_clients(portal, n_clients)
        try:
            with SteadyTraffic(portal) as traffic:
                await asyncio.to_thread(action)
                await asyncio.sleep(3)  # some adds after the action, too
            dam_ids = await asyncio.to_thread(traffic.dam_ids)
            held = await asyncio.gather(*(c.wait_for(dam_ids, CATCH_UP_TIMEOUT) for c in clients))
            missing = {c.label: sorted(set(dam_ids) - c.seen.keys()) for c, ok in zip(clients, held) if not ok}
            offline = max((gap for c in clients for gap in c.offline), default=0.0)
            return traffic, missing, sum(c.connections - 1 for c in clients), offline
        finally:
            await stop_all(clients)

    return asyncio.run(scenario())


def test_a_killed_web_task_is_replaced_and_its_clients_catch_up(swarm_stack, swarm_portal):
    victim = swarm.task_containers(swarm_stack, "web")[0]

    def kill_and_heal():
        docker.docker("kill", victim)
        wait_until(lambda: swarm.converged(swarm_stack, "web", REPLICAS) is None and
                   victim not in swarm.task_containers(swarm_stack, "web"), 180, what="web healed")

    traffic, missing, reconnects, _ = run_under_load(swarm_portal, 20, kill_and_heal)
    assert traffic.names, f"no dam was added during the kill: {traffic.errors}"
    assert not missing, f"clients missing dams after the task was killed: {missing}"
    assert reconnects > 0, "no client was on the killed task: the test proved nothing"


def test_rolling_update_under_load_loses_nothing(swarm_stack, swarm_portal):
    before = {t["ID"] for t in swarm.tasks(swarm_stack, "web") if t["DesiredState"] == "Running"}
    started = time.monotonic()

    def update():
        docker.docker("service", "update", "--detach", "--force", "--env-add", f"ROLLING_UPDATE={time.time():.0f}",
                      service(swarm_stack, "web"), timeout=60)
        wait_until(lambda: update_state(swarm_stack) in ("completed", "rollback_completed", "paused"), UPDATE_TIMEOUT,
                   what="the rolling update's end")

    traffic, missing, reconnects, offline = run_under_load(swarm_portal, 100, update)
    took = time.monotonic() - started
    after = {t["ID"] for t in swarm.tasks(swarm_stack, "web") if t["DesiredState"] == "Running"}
    print(f"rolling update of {REPLICAS} web tasks under 100 clients: {took:.0f}s; pages {dict(traffic.pages)}, "
          f"adds {dict(traffic.adds)} ({len(traffic.retried)} answers 502, "
          f"{len(traffic.saved_despite_502)} dams saved all the same), {reconnects} reconnects, "
          f"longest without a socket {offline:.1f}s")
    assert not before & after, "the update replaced no task"
    assert update_state(swarm_stack) == "completed"
    bad = {f"{kind} {status}": n for kind, statuses in (("page", traffic.pages), ("add", traffic.adds))
           for status, n in statuses.items() if not 200 <= status < 400}
    assert not bad and not traffic.errors, f"failed requests during the update: {bad} {traffic.errors}"
    assert not missing, f"clients missing dams after the update: {missing}"


BROKEN = "dam-inventory/web:broken-for-test"


@pytest.fixture
def broken_image(swarm_stack):
    """The web image with a start that fails at once."""
    web = inspect_service(swarm_stack, "web")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    subprocess.run(["docker", "build", "-q", "-t", BROKEN, "-"], check=True, capture_output=True, timeout=300,
                   input=f'FROM {web.split("@")[0]}\nENTRYPOINT ["sh", "-c", "echo broken on purpose >&2; exit 1"]\n'.encode())
    yield BROKEN
    docker.docker("image", "rm", BROKEN, check=False)


def test_an_update_to_a_broken_image_rolls_back_by_itself(swarm_stack, swarm_portal, broken_image):
    image_before = inspect_service(swarm_stack, "web")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    docker.docker("service", "update", "--detach", "--image", broken_image, service(swarm_stack, "web"), timeout=60)
    wait_until(lambda: update_state(swarm_stack) == "rollback_completed", UPDATE_TIMEOUT, what="rollback completed")
    spec = inspect_service(swarm_stack, "web")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert spec == image_before
    wait_until(lambda: swarm.converged(swarm_stack, "web", REPLICAS) is None, 180, what="web healthy again")
    assert swarm_portal.get(APP_PATH).status_code == 200
