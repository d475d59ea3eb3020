"""Fan-out benchmark client: N WebSocket clients on a running stack, dams added at a steady rate,
latency of every (dam, client) delivery.

`python -m stackctl bench` (stackctl/bench.py) runs it in a load-generator container on the
stack's `front` network (the edge's and web's), in the web container's pid namespace (to read
the workers' memory), so the load goes between the stack's own containers and no docker-proxy
sits in the path (the host's docker-proxy for the published port died at ~3,300 sockets,
docs/benchmarks.md). The checkout's stackctl/ is mounted beside this directory and is on
PYTHONPATH there. Straight to web, and through the edge (TLS, checked against the stack's local
CA, which bench.py mounts at /bench-ca/):

    fanout.py --url http://web:8080 --project - --label ours \
              --clients 100,1000,5000 --out -
    fanout.py --url https://edge:8443 --ca-file /bench-ca/local_ca.crt --project - \
              --label ours-edge --clients 100,1000,5000 --out -

It also runs on the host against the edge's published port (--project <compose project>), with
the checkout on PYTHONPATH:

    PYTHONPATH=. python tests/bench/fanout.py --url https://127.0.0.1:18090 \
        --ca-file build/bench/ours/env/secrets/local_ca.crt \
        --project dam-inventory-bench-ours --env-dir build/bench/ours/env --label ours --out -

Straight to web the client stands where the edge would, on plain HTTP: web still marks its
session and CSRF cookies Secure (the stack serves HTTPS), which a cookie jar keeps off plain
HTTP, so there this client's jar keeps them as ordinary cookies (PlainHopCookieJar).

Latency of one delivery = arrival of the notification at the client - the time the Add Dam POST
that caused it was due on the schedule (what a user waiting on another screen sees, including
any delay of the sender), on one monotonic clock. Delivery and the percentiles are judged over
every (dam, client) pair asked for: a client that never connected, an add refused or not sent,
a notification that never came, each counts as a missing pair (infinitely late). Every phase
is bounded in count and time. Needs `ulimit -n` above the client count.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import math
import multiprocessing
import os
import random
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path

import rawws  # beside this file: the script's directory is on sys.path
from requests.cookies import RequestsCookieJar

from stackctl import docker
from stackctl.compose import Compose
from stackctl.portal import ADD_PATH, WORKER_HEADER, Portal, admin_credentials, dam_form
from stackctl.settings import Stack

# --project value meaning "this process shares the web container's pid namespace".
IN_WEB_PID_NAMESPACE = "-"


def log(msg: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


class PlainHopCookieJar(RequestsCookieJar):
    """A jar for the plain-HTTP hop straight to web: every cookie is kept without its Secure
    flag, so web's session and CSRF cookies go back to it over http. (A cookie policy would not
    do: requests copies the jar into one with the default policy for every request.)"""

    def set_cookie(self, cookie, *args, **kwargs):
        cookie.secure = False
        return super().set_cookie(cookie, *args, **kwargs)


def portal_client(url: str, ca_file: Path | None, **kw) -> Portal:
    """A Portal session on URL. Over https its certificate is checked against CA_FILE (the
    stack's local CA), else the system's store. Over plain http (straight to web, where the edge
    would be) it sends back the Secure cookies web sets: without them no login succeeds."""
    portal = Portal(url, ca_file=ca_file, **kw)
    if url.startswith("http:"):
        portal.http.cookies = PlainHopCookieJar()
    return portal


def tls_context(ws_url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """What rawws checks a wss: server against (CA_FILE, else the system's store); None for ws:."""
    if not ws_url.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


# ------------------------------------------------------------------------- memory


def web_processes(project: str) -> list[tuple[int, str]]:
    """(pid, command line) of the web container's processes. In the load-generator container
    (stackctl/bench.py runs it in web's pid namespace) they are this container's own /proc;
    on the host, `docker top`."""
    if project == IN_WEB_PID_NAMESPACE:
        procs = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit():
                    args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    procs.append((int(entry.name), args))
            except OSError:
                pass
        return procs
    return docker.processes(Compose(Stack(project=project)).require_container("web"))


def process_rss(project: str) -> dict[str, int]:
    """KiB of resident memory: all ASGI workers together, and nginx (master + worker)."""
    procs = web_processes(project)
    workers = set(docker.workers_among(procs).values())
    asgi = nginx = 0
    for pid, args in procs:
        try:
            if pid in workers:
                asgi += docker.rss_kib(pid)
            elif args.startswith("nginx"):
                nginx += docker.rss_kib(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return {"asgi_kib": asgi, "nginx_kib": nginx}


# ------------------------------------------------------------------------- receivers
# The clients are rawws.py's minimal ones (a library client's per-frame cost was counted as the
# stack's latency: rawws.py says why), in RECEIVER processes (--client-procs). Arrival times are
# time.monotonic(), CLOCK_MONOTONIC, one clock for every process of the machine, so the parent
# subtracts its own POST start times from them.


def added_dam(event) -> dict | None:
    """The dam of a new-dam event ({"event": "dam_added", "dam": {...}}), None for any other."""
    if isinstance(event, dict) and event.get("event") == "dam_added" and isinstance(event.get("dam"), dict):
        return event["dam"]
    return None


class Receiver:
    """`n` WebSocket clients in this process; records the arrival of every run dam."""

    def __init__(self, url: str, headers: dict, origin: str, run_id: str, ca_file: Path | None):
        self.url, self.headers, self.origin, self.run_id = url, headers, origin, run_id
        # One context for all the process's clients: made here, after the fork.
        self.ssl_context = tls_context(url, ca_file)
        self.run_id_bytes = run_id.encode()
        self.arrivals: dict[str, list[float]] = {}  # dam name -> arrival times, one per client
        self.unknown = 0
        self.duplicates = 0  # a dam a client had already: not a delivery
        self.dropped = 0  # clients whose socket closed during the measurement
        self.workers: dict[str, int] = {}
        self.refusals: list[str] = []  # every refused handshake, retried or not
        self.opened: list = []  # None per open client, the last error per client that gave up
        self.stop = asyncio.Event()

    def on_text(self, seen: set[str], payload: bytes, now: float):
        """A frame to the client that has had the dams `seen`: a dam's first arrival only is its
        delivery, so a second copy can never stand in for a client that got none."""
        # Cheap path first: only this run's dams carry the run id; parse those only.
        if self.run_id_bytes not in payload:
            return
        dam = added_dam(json.loads(payload))
        if not dam or self.run_id not in str(dam.get("name")):
            self.unknown += 1
            return
        if dam["name"] in seen:
            self.duplicates += 1
            return
        seen.add(dam["name"])
        self.arrivals.setdefault(dam["name"], []).append(now)

    async def client(self, ready: asyncio.Semaphore, give_up: float):
        """One client. A refused handshake is retried like the JS client does (1 s doubling,
        half jitter) until `give_up` (monotonic); each refusal is counted."""
        attempt = 0
        while True:
            try:
                async with ready:
                    ws, headers = await rawws.connect(self.url, self.headers, self.origin,
                                                      functools.partial(self.on_text, set()),
                                                      ssl_context=self.ssl_context)
                break
            except Exception as exc:  # counted, not fatal: the delivery ratio shows it
                self.refusals.append(f"{type(exc).__name__}: {exc}"[:120])
                base = min(8.0, 2.0 ** attempt)
                attempt += 1
                pause = base / 2 + random.random() * base / 2
                if time.monotonic() + pause > give_up:
                    self.opened.append(self.refusals[-1])
                    return
                await asyncio.sleep(pause)
        worker = headers.get(WORKER_HEADER.lower(), "?")
        self.workers[worker] = self.workers.get(worker, 0) + 1
        self.opened.append(None)
        try:
            await asyncio.shield(ws.closed)
        except asyncio.CancelledError:
            pass
        finally:
            if not self.stop.is_set():
                self.dropped += 1
            ws.close()

    async def run(self, conn, n: int, give_up: float, concurrency: int):
        ready = asyncio.Semaphore(concurrency)
        tasks = [asyncio.create_task(self.client(ready, give_up)) for _ in range(n)]
        while len(self.opened) < n and time.monotonic() < give_up:
            await asyncio.sleep(0.2)
        failures = [e for e in self.opened if e]
        connected = len(self.opened) - len(failures)
        conn.send({"connected": connected, "failures": failures, "workers": self.workers,
                   "refusals": self.refusals})
        # Then: wait for the parent's list of accepted dams, and for their deliveries.
        names, deadline = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        while time.monotonic() < deadline:
            if all(len(self.arrivals.get(name, ())) >= connected - self.dropped for name in names):
                break
            await asyncio.sleep(0.1)
        self.stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send({"arrivals": {name: self.arrivals.get(name, []) for name in names},
                   "dropped": self.dropped, "unknown": self.unknown, "duplicates": self.duplicates})


def receiver_process(conn, url, headers, origin, run_id, ca_file, n, give_up, concurrency):
    asyncio.run(Receiver(url, headers, origin, run_id, ca_file).run(conn, n, give_up, concurrency))


# ------------------------------------------------------------------------- the run


def add(session: Portal, name: str, due: float, not_after: float) -> tuple[str, int, float, float]:
    """(name, HTTP status or 0 = not sent or -1 = error, DUE, POST seconds). DUE is when the
    add was scheduled: latency is counted from it, so a sender that falls behind its schedule
    shows as latency, not as a slower rate hidden from it."""
    t0 = time.monotonic()
    if t0 > not_after:
        return name, 0, due, 0.0
    try:
        resp = session.post(ADD_PATH, dam_form(name))
        return name, resp.status_code, due, time.monotonic() - t0
    except Exception:
        return name, -1, due, time.monotonic() - t0


def send_adds(portal: Portal, run_id: str, n_dams: int, rate: float) -> list[tuple]:
    """n_dams Add Dam posts started at `rate` per second from a thread pool (one requests
    session per thread), so a slow answer does not delay the next start."""
    sessions = threading.local()

    def session() -> Portal:
        if not hasattr(sessions, "portal"):
            sessions.portal = portal_client(portal.base_url, portal.ca_file)
            sessions.portal.http.cookies.update(portal.http.cookies)
        return sessions.portal

    t_start = time.monotonic()
    # Bounded: an add the server has not started within 3x the planned time is not sent.
    not_after = t_start + 3 * n_dams / rate + 10
    with concurrent.futures.ThreadPoolExecutor(max_workers=int(min(64, max(4, rate * 2)))) as pool:
        futures = []
        for i in range(n_dams):
            due = t_start + i / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            futures.append(pool.submit(lambda n=f"{run_id}-{i:05d}", due=due: add(session(), n, due, not_after)))
        return [f.result() for f in futures]


def measure(portal: Portal, project: str, n_clients: int, n_dams: int, rate: float,
            drain: float, connect_budget: float, label: str, procs: int, web_tasks: int = 1) -> dict:
    run_id = f"b{os.getpid()}x{int(time.time()) % 100000}n{n_clients}r{int(rate)}"
    mem_before = process_rss(project)
    procs = max(1, min(procs, n_clients))
    shares = [n_clients // procs + (1 if i < n_clients % procs else 0) for i in range(procs)]
    concurrency = max(1, int(os.environ.get("BENCH_CONNECT_CONCURRENCY", "50")) // procs)

    log(f"{label}: opening {n_clients} WebSocket clients in {procs} receiver processes")
    ctx = multiprocessing.get_context("fork")  # before any thread or event loop of this process
    headers = {"Cookie": portal.cookie_header}
    t_connect = time.monotonic()
    give_up = t_connect + connect_budget
    pipes, children = [], []
    for share in shares:
        mine, theirs = ctx.Pipe()
        child = ctx.Process(target=receiver_process, daemon=True, args=(
            theirs, portal.ws_url, headers, portal.base_url, run_id, portal.ca_file, share, give_up, concurrency))
        child.start()
        pipes.append(mine)
        children.append(child)
    try:
        opened = []
        for pipe in pipes:
            if not pipe.poll(connect_budget + 60):
                raise RuntimeError("a receiver process did not report its connections")
            opened.append(pipe.recv())
        connect_s = time.monotonic() - t_connect
        connected = sum(o["connected"] for o in opened)
        failures = [f for o in opened for f in o["failures"]]
        refusals = [r for o in opened for r in o["refusals"]]
        workers: dict[str, int] = {}
        for o in opened:
            for w, k in o["workers"].items():
                workers[w] = workers.get(w, 0) + k
        log(f"{label}: {connected}/{n_clients} connected in {connect_s:.1f}s on workers {workers}; "
            f"{len(failures)} gave up, {len(refusals)} handshakes refused {refusals[:1]}")
        time.sleep(2)  # let every handshake finish
        mem_after = process_rss(project)

        log(f"{label}: adding {n_dams} dams at {rate}/s to {connected} clients")
        posts = send_adds(portal, run_id, n_dams, rate)
        accepted = [p for p in posts if p[1] in (301, 302, 303)]
        deadline = time.monotonic() + drain
        for pipe in pipes:
            pipe.send(([p[0] for p in accepted], deadline))
        received = []
        for pipe in pipes:
            if not pipe.poll(drain + 60):
                raise RuntimeError("a receiver process did not report its deliveries")
            received.append(pipe.recv())
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()

    not_sent = [p for p in posts if p[1] == 0]
    refused = [p for p in posts if p[1] not in (0, 301, 302, 303)]
    # Latencies per accepted dam, in the order the dams were added.
    per_dam = {p[0]: [t - p[2] for r in received for t in r["arrivals"].get(p[0], ())] for p in accepted}
    lat = [x for xs in per_dam.values() for x in xs]
    # Judged over every (dam, client) pair asked for: a client that never connected, an add
    # refused or never sent, a delivery that did not come, each is a pair missing, counted as
    # infinitely late in the percentiles.
    expected = n_dams * n_clients
    pairs = lat + [math.inf] * (expected - len(lat))
    t_first = min((p[2] for p in posts), default=0.0)
    send_s = max((p[2] + p[3] for p in accepted), default=t_first) - t_first
    dropped = sum(r["dropped"] for r in received)
    result = {
        "label": label,
        "clients": n_clients,
        "connected": connected,
        "receiver_processes": procs,
        "connect_failures": len(failures),
        "connect_errors": sorted(set(failures))[:5],
        "connect_s": round(connect_s, 2),
        "workers": dict(sorted(workers.items())),
        "dams": n_dams,
        "dams_accepted": len(accepted),
        "dams_refused": len(refused),
        "dams_not_sent": len(not_sent),
        "handshake_refusals": len(refusals),
        "handshake_refusal_kinds": sorted({r.split(":")[0] + ":" + r.split(":")[1][:40]
                                           for r in refusals if ":" in r})[:5],
        "refused_statuses": sorted({p[1] for p in refused}),
        "rate_wanted": rate,
        "rate_achieved": round(len(accepted) / send_s, 2) if send_s > 0 else None,
        "post_p50_ms": ms(percentile([p[3] for p in posts], 50)),
        "post_p99_ms": ms(percentile([p[3] for p in posts], 99)),
        "deliveries": len(lat),
        "deliveries_expected": expected,
        "delivery_ratio": round(len(lat) / expected, 6) if expected else 0.0,
        "dropped_sockets": dropped,
        "unknown_messages": sum(r["unknown"] for r in received),
        "duplicate_deliveries": sum(r["duplicates"] for r in received),
        "p50_ms": ms(percentile(pairs, 50)),
        "p99_ms": ms(percentile(pairs, 99)),
        "max_ms": ms(max(lat) if lat else None),
        "mean_ms": ms(statistics.fmean(lat) if lat else None),
        # The slowest delivery of each dam, in the order the dams were added: a p99 over few dams
        # is set by the slowest of them, and this shows whether one dam or all of them.
        "per_dam_max_ms": [ms(max(xs, default=None)) for xs in per_dam.values()],
        "rss_before_kib": mem_before,
        "rss_after_kib": mem_after,
        # The memory is one web container's: its share of the connections.
        "asgi_kib_per_conn": per_connection(mem_before["asgi_kib"], mem_after["asgi_kib"], connected / web_tasks),
        "nginx_kib_per_conn": per_connection(mem_before["nginx_kib"], mem_after["nginx_kib"], connected / web_tasks),
    }
    log(f"{label}: N={n_clients} delivered {result['delivery_ratio']:.2%} p50={result['p50_ms']}ms "
        f"p99={result['p99_ms']}ms max={result['max_ms']}ms, adds {len(accepted)}/{n_dams} at "
        f"{result['rate_achieved']}/s, ASGI workers {result['asgi_kib_per_conn']} KiB/conn")
    return result


def ms(seconds: float | None) -> float | None:
    """Milliseconds; None for no value or a missing delivery (infinitely late)."""
    return None if seconds is None or math.isinf(seconds) else round(seconds * 1000, 1)


def per_connection(kib_before: int, kib_after: int, connected: float) -> float | None:
    return round((kib_after - kib_before) / connected, 1) if connected else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the portal: http://web:8080 (web itself) or https://edge:8443")
    ap.add_argument("--ca-file", type=Path,
                    help="for an https URL: the CA its certificate is checked against (the stack's "
                         "local_ca.crt); default: the system's store")
    ap.add_argument("--project", required=True,
                    help=f"compose project of the stack, or {IN_WEB_PID_NAMESPACE!r} when run in its web "
                         "container's pid namespace")
    ap.add_argument("--env-dir", default="env",
                    help="the stack's env dir, for the admin login (unless PORTAL_SUPERUSER_NAME and "
                         "_PASSWORD are set)")
    ap.add_argument("--label", required=True)
    ap.add_argument("--clients", default="100,1000,5000", help="comma-separated client counts")
    ap.add_argument("--dams", type=int, default=20, help="dams per client count")
    ap.add_argument("--rate", type=float, default=2.0, help="dams per second")
    ap.add_argument("--burst-clients", type=int, default=100)
    ap.add_argument("--burst-rate", type=float, default=50.0)
    ap.add_argument("--burst-seconds", type=float, default=30.0)
    ap.add_argument("--drain", type=float, default=15.0, help="seconds to wait for late deliveries")
    ap.add_argument("--connect-budget", type=float, default=180.0)
    ap.add_argument("--client-procs", type=int, default=1,
                    help="receiver processes the clients are spread over")
    ap.add_argument("--web-tasks", type=int, default=1,
                    help="web containers the URL spreads the clients over evenly (Swarm's virtual IP); "
                         "the memory read is one container's")
    ap.add_argument("--out", required=True, help="results JSON file, or - for stdout")
    args = ap.parse_args()

    stack = Stack(project=args.project, env_dir=Path(args.env_dir).resolve())
    portal = portal_client(args.url, args.ca_file, timeout=60).login(*admin_credentials(stack))

    results = {"label": args.label, "fanout": [], "burst": None}
    # Warm-up, not recorded: the first sockets and adds of a fresh worker load code and fill
    # caches, which would otherwise count as memory per connection and latency.
    def run(n, dams, rate, label):
        return measure(portal, args.project, n, dams, rate, args.drain, args.connect_budget, label,
                       args.client_procs, args.web_tasks)

    run(30, 3, 3.0, args.label + " warm-up")
    for n in [int(x) for x in args.clients.split(",") if x.strip()]:
        results["fanout"].append(run(n, args.dams, args.rate, args.label))
        time.sleep(3)  # let the closed sockets leave the workers and Redis before the next size
    if args.burst_seconds > 0:
        results["burst"] = run(args.burst_clients, int(args.burst_rate * args.burst_seconds),
                               args.burst_rate, args.label + " burst")
    if args.out == "-":
        print(json.dumps(results, indent=2))
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
