"""The soak campaign (`make soak`): minutes or hours of the traffic a portal lives with, and the
fault suite's faults on a schedule, sampled over time for what would only show after a while.

The fault tests prove each failure once, with a handful of clients. What they cannot show is a
slow leak: a worker's memory or descriptors creeping up with every connect and disconnect, the
channel layer's group collecting dead members, PostgreSQL connections piling up after each
outage. So this runs, for SOAK_MINUTES:

- a steady population of WebSocket clients (tests/notifications.py, written apart from the
  app's JS client) that come and go: each stays for a random time, then leaves and another one
  takes its place;
- adds and deletes at a steady rate, home-page loads and catch-up requests;
- the fault suite's faults (tests/faults/faultkit.py), one after the other, spread over the
  middle of the run, leaving a quiet start and end;
- a sampler: each ASGI worker's and nginx's memory and open descriptors (read from /proc on
  the host: a container's processes are host processes), Redis' memory and the group's size,
  PostgreSQL's client connections, and how many clients are connected.

Everything it saw goes into a `Record`; tests/soak/verdicts.py judges it and
tests/soak/report.py writes it out. Every loop is bounded by the run's end, and all load goes to
the stack on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import random
import threading
import time
from array import array
from dataclasses import dataclass, field

from stackctl import docker
from stackctl.portal import ADD_PATH, APP_PATH, EVENTS_PATH, Portal, dam_form, visible_text
from stackctl.settings import source_commit
from tests.faults import faultkit
from tests.notifications import NotificationClient, dam_from_event
from tests.stack import APP_DB, TestStack

# The channels_redis key of the app's group (default prefix "asgi", group "notifications").
GROUP_KEY = "asgi:group:notifications"
# Logged-in sessions the clients share (a browser tab per session would mean a login, and a
# password hash on the portal, per client).
CLIENT_SESSIONS = 8
# Threads for the clients' catch-up requests (and the sampler's and the faults' commands).
CATCH_UP_THREADS = 32
# Clients opened per second while the population is below its size.
RAMP_PER_SECOND = 50
# A quiet start before the first fault (at most; a tenth of a short run).
WARM_UP_SECONDS = 120
# The faults fall in this first part of the run; the rest is steady load.
FAULTS_UNTIL = 0.5
# Once the load stops, how long every client that is still there has to be up to date: a
# client may be in its longest backoff (30 s) when the run ends.
SETTLE_SECONDS = NotificationClient.backoff_max + 15
# After a fault has recovered, requests and sockets may still meet its after-effects for this
# long (nginx rests a failed upstream for its fail_timeout, clients are in backoff).
FAULT_GRACE_SECONDS = 15


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r} must be greater than 0")
    return value


@dataclass(frozen=True)
class Plan:
    """The run's parameters. The defaults are `make test`'s short run; `make soak` sets the
    long one's (30 minutes, 1,000 clients)."""

    minutes: float = 5.0
    clients: int = 150
    client_lifetime: float = 60.0  # mean seconds a client stays before it leaves
    add_every: float = 1.0
    delete_every: float = 4.0
    page_every: float = 2.0
    sample_every: float = 10.0
    fault_rounds: int = 1  # each fault of faultkit.FAULTS this many times (web restart last)

    @classmethod
    def from_env(cls) -> "Plan":
        """SOAK_MINUTES, SOAK_CLIENTS, SOAK_CLIENT_LIFETIME, SOAK_ADD_EVERY, SOAK_DELETE_EVERY,
        SOAK_PAGE_EVERY, SOAK_SAMPLE_EVERY, SOAK_FAULT_ROUNDS; unset = the default."""
        base = cls()
        values = {name: _env_number(f"SOAK_{name.upper()}", getattr(base, name)) for name in cls.__dataclass_fields__}
        return cls(**{k: int(v) if isinstance(getattr(base, k), int) else v for k, v in values.items()})

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    def fault_schedule(self) -> list[tuple[float, str]]:
        """(seconds from the start, fault name): spread evenly over the first half of the run,
        after a quiet start (a tenth of it, at most WARM_UP_SECONDS). The second half is
        steady load, where growth is judged (tests/soak/verdicts.py)."""
        faults = list(faultkit.FAULTS) * self.fault_rounds
        first = min(WARM_UP_SECONDS, self.seconds / 10)
        last = self.seconds * FAULTS_UNTIL
        step = (last - first) / max(1, len(faults))
        return [(first + i * step, name) for i, name in enumerate(faults)]


@dataclass
class Attempt:
    """One add or delete the campaign sent, and what the portal answered."""

    at: float  # seconds from the start, when it was due
    name: str
    dam_id: int | None = None
    outcome: str = ""  # "ok", "refused" (nothing may have changed) or "unknown"
    detail: str = ""


@dataclass
class Record:
    """What the campaign did and saw; times are seconds from its start."""

    plan: Plan
    run_id: str
    workers: int
    started: float = field(default_factory=time.monotonic)
    # The code the run belongs to, read before the report rewrites its own tracked files.
    commit: str = field(default_factory=source_commit)
    adds: list[Attempt] = field(default_factory=list)
    deletes: list[Attempt] = field(default_factory=list)
    faults: list[dict] = field(default_factory=list)  # name, start, end, error
    samples: list[dict] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)  # every HTTP answer, by status
    server_errors: list[tuple[float, int, str]] = field(default_factory=list)  # (at, status, what)
    failures: list[tuple[float, str]] = field(default_factory=list)  # requests that got no answer
    # latency of each delivery, in seconds, by the minute of the add
    latency: dict[int, array] = field(default_factory=dict)
    connections: int = 0
    clients_opened: int = 0
    deliveries: int = 0
    catch_ups: int = 0
    final: dict = field(default_factory=dict)  # the end state (tests/soak/verdicts.py)
    # HTTP answers are counted in the threads that send the requests.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.monotonic() - self.started

    def answered(self, status: int, what: str) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status >= 500:
                self.server_errors.append((self.now(), status, what))

    def unanswered(self, what: str, exc: Exception) -> None:
        self.failures.append((self.now(), f"{what}: {type(exc).__name__}: {exc}"[:300]))

    def observe(self, portal: Portal) -> Portal:
        """Every HTTP answer PORTAL gets is counted here."""
        def hook(resp, *args, **kwargs):
            self.answered(resp.status_code, f"{resp.request.method} {resp.request.path_url.split('?')[0]}")
        portal.http.hooks["response"].append(hook)
        return portal


# ------------------------------------------------------------------------------- the clients
@dataclass
class Member:
    client: NotificationClient
    joined: float  # seconds from the start
    leaves: float
    start_seq: int


class Population:
    """PLAN.clients notification clients at all times; each leaves after a random
    (exponential) time and another one takes its place. What a leaving client delivered is
    added up into the record, and the client dropped. The events they apply tell the campaign
    which of its dams exist (by name: the add's due time, for the latency)."""

    def __init__(self, record: Record, portals: list[Portal]):
        self.record = record
        self.portals = portals
        self.members: list[Member] = []
        self.leaving: set[asyncio.Task] = set()
        self.last_seq = 0  # the newest seq any client has applied: where a new client starts
        self.due: dict[str, float] = {}  # name of each add sent -> when it was due
        self.added_at: dict[int, float] = {}  # dam id -> when its add was due
        self.live: set[int] = set()  # the campaign's dams not deleted, as the events tell

    def _on_event(self, event: dict) -> None:
        seq = int(event["seq"])
        if seq <= self.last_seq:
            return  # another client applied it first
        self.last_seq = seq
        dam = dam_from_event(event)
        if dam is not None and dam.get("name") in self.due:
            self.added_at[int(dam["id"])] = self.due[dam["name"]]
            self.live.add(int(dam["id"]))
        elif event.get("event") == "dam_deleted":
            self.live.discard(int(event["id"]))

    def _on_refused(self, status: int) -> None:
        self.record.answered(status, "WebSocket handshake")

    def _join(self) -> None:
        record, plan = self.record, self.record.plan
        client = NotificationClient(random.choice(self.portals), label=f"s{record.clients_opened}",
                                    last_seq=self.last_seq, on_event=self._on_event, on_refused=self._on_refused)
        record.clients_opened += 1
        now = record.now()
        self.members.append(Member(client.launch(), now, now + random.expovariate(1 / plan.client_lifetime), self.last_seq))

    def account(self, member: Member) -> None:
        """Adds MEMBER's deliveries and connections to the record."""
        client, record = member.client, self.record
        record.connections += client.connections
        record.catch_ups += client.catch_ups
        record.deliveries += len(client.seen) + len(client.deleted)
        for dam_id, seen in client.seen.items():
            due = self.added_at.get(dam_id)
            if due is not None and due >= member.joined:
                arrived = seen.at - record.started
                record.latency.setdefault(int(due // 60), array("d")).append(max(0.0, arrived - due))

    async def _leave(self, member: Member) -> None:
        await member.client.stop()
        self.account(member)

    async def run(self, until: float) -> None:
        while self.record.now() < until:
            now = self.record.now()
            for member in [m for m in self.members if m.leaves <= now]:
                self.members.remove(member)
                task = asyncio.create_task(self._leave(member))  # a close may wait for a slow server
                self.leaving.add(task)
                task.add_done_callback(self.leaving.discard)
            for _ in range(min(RAMP_PER_SECOND, self.record.plan.clients - len(self.members))):
                self._join()
            await asyncio.sleep(1)

    @property
    def connected(self) -> int:
        return sum(1 for m in self.members if m.client.connected)

    async def stop(self) -> None:
        await asyncio.gather(*self.leaving, *(self._leave(m) for m in self.members), return_exceptions=True)


# ----------------------------------------------------------------------------- the traffic
def _write_outcome(resp) -> str:
    """A saved add or delete redirects to the app's home; a refused one re-renders the form
    (200), is refused by the app (4xx; 503: the store is down) or by the login (a redirect
    elsewhere). A gateway error (502, 504) or no answer at all says nothing about what was
    saved."""
    if resp.status_code in (301, 302, 303):
        return "ok" if resp.headers.get("Location", "").split("?")[0].endswith(APP_PATH) else "refused"
    if resp.status_code in (502, 504):
        return "unknown"
    return "refused"


class Traffic:
    """Adds, deletes (of the campaign's own dams) and page loads at the plan's rates, as the
    portal's admin. Their requests have threads of their own: queued behind the clients'
    catch-ups they would fall behind their schedule, and the generator's delay would show as
    the portal's latency."""

    def __init__(self, record: Record, portal: Portal, population: Population):
        self.record = record
        self.portal = portal
        self.population = population
        self.threads = concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="traffic")

    async def _in_thread(self, function, *args) -> None:
        await asyncio.get_running_loop().run_in_executor(self.threads, function, *args)

    def _send(self, attempt: Attempt, path: str, form: dict) -> None:
        try:
            resp = self.portal.post(path, form)
        except Exception as exc:
            self.record.unanswered(path, exc)
            attempt.outcome = "unknown"
            return
        attempt.outcome = _write_outcome(resp)
        attempt.detail = f"HTTP {resp.status_code}"
        if attempt.outcome == "refused":
            attempt.detail += f": {visible_text(resp.text)[:120]}"

    def _page(self) -> None:
        for path, params in ((APP_PATH, None), (EVENTS_PATH, {"after": max(0, self.population.last_seq - 20)})):
            try:
                self.portal.get(path, params=params)
            except Exception as exc:
                self.record.unanswered(f"GET {path}", exc)

    async def _every(self, seconds: float, until: float, step) -> None:
        due = self.record.now()
        while due < until:
            await asyncio.sleep(max(0.0, due - self.record.now()))
            await step(due)
            due += seconds

    async def _add(self, due: float) -> None:
        attempt = Attempt(due, f"soak-{self.record.run_id}-{len(self.record.adds)}")
        self.record.adds.append(attempt)
        self.population.due[attempt.name] = due
        await self._in_thread(self._send, attempt, ADD_PATH, dam_form(attempt.name))

    async def _delete(self, due: float) -> None:
        if not self.population.live:
            return
        dam_id = random.choice(sorted(self.population.live))
        self.population.live.discard(dam_id)  # not again, whatever the answer
        attempt = Attempt(due, "", dam_id=dam_id)
        self.record.deletes.append(attempt)
        await self._in_thread(self._send, attempt, f"{APP_PATH}dams/{dam_id}/delete/", {})

    async def _pages(self, due: float) -> None:
        await self._in_thread(self._page)

    async def run(self, until: float) -> None:
        plan = self.record.plan
        try:
            await asyncio.gather(
                self._every(plan.add_every, until, self._add),
                self._every(plan.delete_every, until, self._delete),
                self._every(plan.page_every, until, self._pages),
            )
        finally:
            self.threads.shutdown(wait=False)


# ------------------------------------------------------------------------------- the faults
async def inject_faults(stack: TestStack, record: Record) -> None:
    """The plan's faults at their times, one at a time (a late one starts when the one before
    it has recovered)."""
    for at, name in record.plan.fault_schedule():
        await asyncio.sleep(max(0.0, at - record.now()))
        fault = {"name": name, "start": record.now(), "error": ""}
        record.faults.append(fault)
        try:
            await asyncio.to_thread(faultkit.FAULTS[name], stack)
        except Exception as exc:
            fault["error"] = f"{type(exc).__name__}: {exc}"[:300]
        fault["end"] = record.now()
        print(f"  {fault['end']:7.0f} s  fault {name}: {'recovered' if not fault['error'] else fault['error']} "
              f"after {fault['end'] - fault['start']:.0f} s", flush=True)


# ------------------------------------------------------------------------------ the sampler
def _process_usage(pids: list[int]) -> tuple[int, int] | None:
    """(resident KiB, open descriptors) of PIDS together; None if one of them is gone."""
    try:
        return (sum(docker.rss_kib(pid) for pid in pids),
                sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids))
    except OSError:
        return None


def _nginx_pids(procs: list[tuple[int, str]]) -> tuple[int, list[int]] | None:
    """(master pid, every nginx pid) among a container's processes."""
    nginx = [(pid, args) for pid, args in procs if args.startswith("nginx:")]
    master = [pid for pid, args in nginx if "master" in args]
    return (master[0], [pid for pid, _ in nginx]) if master else None


REDIS_PROBE = ('REDISCLI_AUTH="$(cat /run/secrets/redis_password)"; export REDISCLI_AUTH; '
               'redis-cli INFO server | grep "^run_id:"; redis-cli INFO memory | grep "^used_memory:"; '
               f'echo "members:$(redis-cli ZCARD {GROUP_KEY})"')
PG_PROBE = ("SELECT count(*) FILTER (WHERE backend_type = 'client backend'), "
            "extract(epoch FROM pg_postmaster_start_time())::bigint FROM pg_stat_activity")


def sample(stack: TestStack, containers: dict[str, str]) -> dict:
    """One reading of everything the campaign watches; a part that cannot be read (its
    service is down) is left out. Series are keyed by what they belong to and its incarnation
    (a pid, Redis' run id, PostgreSQL's start time), so a restart starts a new series."""
    series: dict[str, float] = {}
    for service in ("web", "edge"):
        try:
            procs = docker.processes(containers[service])
        except Exception:
            continue
        groups = {f"{service} nginx": _nginx_pids(procs)}
        if service == "web":
            groups.update({f"web worker {n}": (pid, [pid]) for n, pid in docker.asgi_workers(containers["web"], procs).items()})
        for label, found in groups.items():
            usage = _process_usage(found[1]) if found else None
            if usage:
                series[f"rss|{label}|{found[0]}"] = usage[0] / 1024
                series[f"fds|{label}|{found[0]}"] = usage[1]
    try:
        out = docker.docker("exec", containers["redis"], "sh", "-c", REDIS_PROBE, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.split() if ":" in line)
        series[f"redis_memory|redis|{fields['run_id'][:8]}"] = int(fields["used_memory"]) / 2**20
        series[f"group|redis|{fields['run_id'][:8]}"] = int(fields["members"])
    except Exception:
        pass
    try:
        count, started = stack.psql(APP_DB, PG_PROBE, timeout=10).split("|")
        # The connections are web's: a restart of either starts a new series.
        web_started = docker.inspect(containers["web"])[0]["State"]["StartedAt"][11:19]
        series[f"pg_connections|db|{started}/{web_started}"] = int(count)
    except Exception:
        pass
    return series


async def sampler(stack: TestStack, record: Record, population: Population, until: float) -> None:
    containers = {name: stack.container_id(name) for name in ("web", "edge", "redis", "db")}
    next_at = 0.0
    while record.now() < until:
        at = record.now()
        values = await asyncio.to_thread(sample, stack, containers)
        values["clients|connected|-"] = population.connected
        record.samples.append({"at": at, **values})
        if len(record.samples) % max(1, round(60 / record.plan.sample_every)) == 0:
            _progress(record, population, values)
        next_at += record.plan.sample_every
        await asyncio.sleep(max(0.0, next_at - record.now()))


def _progress(record: Record, population: Population, values: dict) -> None:
    workers_mib = sum(v for k, v in values.items() if k.startswith("rss|web worker"))
    group = next((v for k, v in values.items() if k.startswith("group|")), "?")
    print(f"  {record.now():7.0f} s  {population.connected:5d} connected, {record.clients_opened:6d} opened, "
          f"{len(record.adds):5d} adds, {len(record.deletes):4d} deletes, workers {workers_mib:6.0f} MiB, "
          f"group {group}, {len(record.server_errors)} 5xx", flush=True)


# ------------------------------------------------------------------------------- the run
async def _settle(population: Population, final_seq: int) -> float:
    """Seconds until every remaining client has applied FINAL_SEQ (at most SETTLE_SECONDS)."""
    start = time.monotonic()
    while time.monotonic() - start < SETTLE_SECONDS:
        if all(m.client.last_seq >= final_seq for m in population.members):
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - start


def _event_log(stack: TestStack, after: int) -> list[tuple[int, str, int, str]]:
    """The outbox after seq AFTER, read from the database: (seq, kind, dam id, dam name)."""
    rows = stack.psql(APP_DB, "SELECT seq, kind, dam_id, coalesce(message::json->'dam'->>'name', message::json->>'name') "
                              f"FROM dam_events WHERE seq > {int(after)} ORDER BY seq")
    return [(int(seq), kind, int(dam_id), name) for seq, kind, dam_id, name in
            (r.split("|", 3) for r in rows.splitlines() if r)]


def _campaign_dams(stack: TestStack, run_id: str) -> list[tuple[int, str]]:
    rows = stack.psql(APP_DB, f"SELECT id, name FROM dams WHERE name LIKE 'soak-{run_id}-%' ORDER BY id")
    return [(int(i), name) for i, name in (r.split("|", 1) for r in rows.splitlines() if r)]


async def run(stack: TestStack, credentials: tuple[str, str], workers: int, plan: Plan) -> Record:
    record = Record(plan, run_id=time.strftime("%H%M%S"), workers=workers)
    # The clients' catch-ups run in the loop's default threads: enough for a reconnect wave.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=CATCH_UP_THREADS, thread_name_prefix="catch-up"))
    portals = [record.observe(stack.portal().login(*credentials)) for _ in range(CLIENT_SESSIONS)]
    population = Population(record, portals)
    population.last_seq = await asyncio.to_thread(portals[0].last_event_seq)
    first_seq = population.last_seq
    traffic = Traffic(record, record.observe(stack.portal().login(*credentials)), population)
    print(f"soak: {plan.minutes:g} min, {plan.clients} clients, faults at "
          f"{', '.join(f'{at:.0f} s {name}' for at, name in plan.fault_schedule())}", flush=True)
    record.started = time.monotonic()
    end = plan.seconds
    try:
        await asyncio.gather(population.run(end), traffic.run(end), inject_faults(stack, record),
                             sampler(stack, record, population, end))
        events = await asyncio.to_thread(_event_log, stack, first_seq)
        final_seq = max([first_seq] + [event[0] for event in events])
        settled = await _settle(population, final_seq)
        record.final = {
            "settle_seconds": settled,
            "final_seq": final_seq,
            "events": events,
            "dams": await asyncio.to_thread(_campaign_dams, stack, record.run_id),
            "clients": [{"label": m.client.label, "start_seq": m.start_seq, "last_seq": m.client.last_seq,
                         "seen": sorted(m.client.seen), "deleted": sorted(m.client.deleted),
                         "connections": m.client.connections, "connected": m.client.connected}
                        for m in population.members],
        }
    finally:
        await population.stop()
    record.final["seconds"] = record.now()
    return record


def percentile(values, q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
