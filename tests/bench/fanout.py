"""Fan-out benchmark client: N WebSocket clients on a running stack, dams added at a steady rate,
latency of every (dam, client) delivery.

scripts/bench.sh runs it in a load-generator container on the stack's `external` network, in the
web container's pid namespace (to read the workers' memory), so the load goes between the
stack's own containers and no docker-proxy sits in the path (the host's docker-proxy for the
published port died at ~3,300 sockets, docs/benchmarks.md):

    fanout.py --url http://web:8080 --project - --env-dir /bench/env --label ours \
              --clients 100,1000,5000 --out -

It also runs on the host against the published port (--project <compose project>).

Latency of one delivery = arrival of the notification at the client - start of the Add Dam POST
that caused it (what a user waiting on another screen sees), on one monotonic clock. Every phase
is bounded in count and time. Needs `ulimit -n` above the client count.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stackclient as sc  # noqa: E402


# --project value meaning "this process shares the web container's pid namespace".
IN_WEB_PID_NAMESPACE = "-"


def log(msg: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


# ------------------------------------------------------------------------- memory


def web_processes(project: str) -> list[tuple[int, str]]:
    """(pid, command line) of the web container's processes. In the load-generator container
    (scripts/bench.sh runs it in web's pid namespace) they are this container's own /proc;
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
    return sc.container_processes(sc.container_id(project, "web", running_only=True))


def process_rss(project: str) -> dict[str, int]:
    """KiB of resident memory: all daphne workers together, and nginx (master + worker)."""
    daphne = nginx = 0
    for pid, args in web_processes(project):
        try:
            if "daphne" in args and not args.startswith(("sh ", "/bin/sh ")):
                daphne += sc.rss_kib(pid)
            elif args.startswith("nginx"):
                nginx += sc.rss_kib(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return {"daphne_kib": daphne, "nginx_kib": nginx}


# ------------------------------------------------------------------------- the run


class Run:
    def __init__(self, portal: sc.Portal, run_id: str):
        self.portal = portal
        self.run_id = run_id
        self.sent: dict[str, float] = {}  # dam name -> monotonic time the POST started
        self.latencies: dict[str, list[float]] = {}  # dam name -> seconds, one per delivery
        self.unknown = 0
        self.dropped = 0  # clients whose socket closed during the measurement
        self.workers: dict[str, int] = {}
        self.refusals: list[str] = []  # every refused handshake, retried or not
        self.send_deadline = float("inf")  # adds not started by then are not sent (bounded run)

    async def client(self, ready: asyncio.Semaphore, opened: list, stop: asyncio.Event, give_up: float):
        """One client. A refused handshake is retried like the JS client does (1 s doubling,
        half jitter) until `give_up` (monotonic); each refusal is counted."""
        from websockets.asyncio.client import connect

        url = self.portal.base_url.replace("http", "ws", 1) + sc.WS_PATH
        attempt = 0
        while True:
            try:
                async with ready:
                    ws = await connect(url, additional_headers=sc.ws_headers(self.portal),
                                       origin=sc.ws_origin(self.portal), proxy=None, compression=None,
                                       ping_interval=None, open_timeout=60, close_timeout=2,
                                       max_queue=None)
                break
            except Exception as exc:  # counted, not fatal: the delivery ratio shows it
                self.refusals.append(f"{type(exc).__name__}: {exc}"[:120])
                base = min(8.0, 2.0 ** attempt)
                attempt += 1
                pause = base / 2 + random.random() * base / 2
                if time.monotonic() + pause > give_up:
                    opened.append(self.refusals[-1])
                    return
                await asyncio.sleep(pause)
        worker = ws.response.headers.get(sc.WORKER_HEADER, "?")
        self.workers[worker] = self.workers.get(worker, 0) + 1
        opened.append(None)
        try:
            async for raw in ws:
                now = time.monotonic()
                # Cheap path first: only this run's dams carry the run id; parse those only.
                if self.run_id not in raw:
                    continue
                dam = sc.dam_from_event(json.loads(raw))
                lat = self.latencies.get(dam.get("name")) if dam else None
                if lat is None:
                    self.unknown += 1
                    continue
                lat.append(now - self.sent[dam["name"]])
        except Exception:
            pass
        finally:
            if not stop.is_set():
                self.dropped += 1
            await ws.close()

    def add(self, session, name: str) -> tuple[str, int, float]:
        t0 = time.monotonic()
        if t0 > self.send_deadline:
            return name, 0, 0.0
        self.sent[name] = t0
        self.latencies[name] = []
        try:
            resp = session.post(sc.ADD_PATH, sc.dam_form(name))
            return name, resp.status_code, time.monotonic() - t0
        except Exception as exc:
            return name, -1, time.monotonic() - t0


async def measure(portal: sc.Portal, project: str, n_clients: int, n_dams: int, rate: float,
                  drain: float, connect_budget: float, label: str) -> dict:
    run_id = f"b{os.getpid()}x{int(time.time()) % 100000}n{n_clients}r{int(rate)}"
    run = Run(portal, run_id)
    stop = asyncio.Event()
    opened: list = []
    mem_before = process_rss(project)
    ready = asyncio.Semaphore(int(os.environ.get("BENCH_CONNECT_CONCURRENCY", "50")))

    log(f"{label}: opening {n_clients} WebSocket clients")
    t_connect = time.monotonic()
    give_up = t_connect + connect_budget
    tasks = [asyncio.create_task(run.client(ready, opened, stop, give_up)) for _ in range(n_clients)]
    while len(opened) < n_clients and time.monotonic() - t_connect < connect_budget:
        await asyncio.sleep(0.2)
    connect_s = time.monotonic() - t_connect
    failures = [e for e in opened if e]
    connected = len(opened) - len(failures)
    log(f"{label}: {connected}/{n_clients} connected in {connect_s:.1f}s on workers {run.workers}; "
        f"{len(failures)} gave up, {len(run.refusals)} handshakes refused {run.refusals[:1]}")
    await asyncio.sleep(2)  # let every handshake finish its group_add
    mem_after = process_rss(project)

    # Senders: one requests session per thread (cookies copied), paced to the steady rate.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=int(min(64, max(4, rate * 2))))
    sessions: dict[int, sc.Portal] = {}

    def session_for_thread() -> sc.Portal:
        import threading

        key = threading.get_ident()
        if key not in sessions:
            p = sc.Portal(portal.base_url)
            p.http.cookies.update(portal.http.cookies)
            sessions[key] = p
        return sessions[key]

    loop = asyncio.get_running_loop()
    log(f"{label}: adding {n_dams} dams at {rate}/s to {connected} clients")
    futures = []
    t_start = time.monotonic()
    # Bounded: an add the server has not started within 3x the planned time is not sent.
    run.send_deadline = t_start + 3 * n_dams / rate + 10
    for i in range(n_dams):
        delay = t_start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        name = f"{run_id}-{i:05d}"
        futures.append(loop.run_in_executor(pool, lambda n=name: run.add(session_for_thread(), n)))
    posts = await asyncio.gather(*futures)
    send_s = time.monotonic() - t_start
    # Wait until every delivery arrived, or the drain budget is spent.
    deadline = time.monotonic() + drain
    expected_each = connected - run.dropped
    while time.monotonic() < deadline:
        if all(len(v) >= expected_each for v in run.latencies.values()):
            break
        await asyncio.sleep(0.2)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pool.shutdown(wait=False, cancel_futures=True)

    accepted = [p for p in posts if p[1] in (301, 302, 303)]
    not_sent = [p for p in posts if p[1] == 0]
    refused = [p for p in posts if p[1] not in (0, 301, 302, 303)]
    send_s = max([run.sent[p[0]] + p[2] for p in accepted], default=t_start) - t_start
    lat = [x for name, *_ in accepted for x in run.latencies[name]]
    expected = len(accepted) * connected
    result = {
        "label": label,
        "clients": n_clients,
        "connected": connected,
        "connect_failures": len(failures),
        "connect_errors": sorted(set(failures))[:5],
        "connect_s": round(connect_s, 2),
        "workers": dict(sorted(run.workers.items())),
        "dams": n_dams,
        "dams_accepted": len(accepted),
        "dams_refused": len(refused),
        "dams_not_sent": len(not_sent),
        "handshake_refusals": len(run.refusals),
        "handshake_refusal_kinds": sorted({r.split(":")[0] + ":" + r.split(":")[1][:40] for r in run.refusals if ":" in r})[:5],
        "refused_statuses": sorted({p[1] for p in refused}),
        "rate_wanted": rate,
        "rate_achieved": round(len(accepted) / send_s, 2) if send_s > 0 else None,
        "post_p50_ms": ms(percentile([p[2] for p in posts], 50)),
        "post_p99_ms": ms(percentile([p[2] for p in posts], 99)),
        "deliveries": len(lat),
        "deliveries_expected": expected,
        "delivery_ratio": round(len(lat) / expected, 6) if expected else 0.0,
        "dropped_sockets": run.dropped,
        "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(max(lat) if lat else None),
        "mean_ms": ms(statistics.fmean(lat) if lat else None),
        "rss_before_kib": mem_before,
        "rss_after_kib": mem_after,
        "daphne_kib_per_conn": round((mem_after["daphne_kib"] - mem_before["daphne_kib"]) / connected, 1) if connected else None,
        "nginx_kib_per_conn": round((mem_after["nginx_kib"] - mem_before["nginx_kib"]) / connected, 1) if connected else None,
    }
    log(f"{label}: N={n_clients} delivered {result['delivery_ratio']:.2%} p50={result['p50_ms']}ms "
        f"p99={result['p99_ms']}ms max={result['max_ms']}ms, adds {len(accepted)}/{n_dams} at "
        f"{result['rate_achieved']}/s, daphne {result['daphne_kib_per_conn']} KiB/conn")
    return result


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--project", required=True,
                    help=f"compose project of the stack, or {IN_WEB_PID_NAMESPACE!r} when run in its web container's pid namespace")
    ap.add_argument("--env-dir", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--clients", default="100,1000,5000", help="comma-separated client counts")
    ap.add_argument("--dams", type=int, default=20, help="dams per client count")
    ap.add_argument("--rate", type=float, default=2.0, help="dams per second")
    ap.add_argument("--burst-clients", type=int, default=100)
    ap.add_argument("--burst-rate", type=float, default=50.0)
    ap.add_argument("--burst-seconds", type=float, default=30.0)
    ap.add_argument("--drain", type=float, default=15.0, help="seconds to wait for late deliveries")
    ap.add_argument("--connect-budget", type=float, default=180.0)
    ap.add_argument("--out", required=True, help="results JSON file, or - for stdout")
    args = ap.parse_args()

    settings = sc.StackSettings(args.project, Path(args.env_dir).resolve(), args.url.rstrip("/"))
    portal = sc.Portal(settings.base_url, timeout=60).login(*sc.admin_credentials(settings))

    results = {"label": args.label, "fanout": [], "burst": None}
    # Warm-up, not recorded: the first sockets and adds of a fresh worker load code and fill
    # caches, which would otherwise count as memory per connection and latency.
    asyncio.run(measure(portal, args.project, 30, 3, 3.0, 5.0, args.connect_budget, args.label + " warm-up"))
    for n in [int(x) for x in args.clients.split(",") if x.strip()]:
        results["fanout"].append(asyncio.run(measure(
            portal, args.project, n, args.dams, args.rate, args.drain, args.connect_budget, args.label)))
        time.sleep(3)  # let the closed sockets leave the workers and Redis before the next size
    if args.burst_seconds > 0:
        results["burst"] = asyncio.run(measure(
            portal, args.project, args.burst_clients, int(args.burst_rate * args.burst_seconds),
            args.burst_rate, args.drain, args.connect_budget, args.label + " burst"))
    if args.out == "-":
        print(json.dumps(results, indent=2))
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
