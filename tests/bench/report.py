"""Turns the results of `python -m stackctl bench` (build/bench/) into the comparison table, the
verdict on each target, docs/benchmarks.md and docs/benchmarks-latency.png.

    report.py build/bench            (stackctl/bench.py calls it)

Results: <dir>/ours/ and <dir>/ref/ (straight to web), <dir>/ours-uvicorn/ (ours on uvicorn), and,
when the run went through the edge
too (BENCH_EDGE), <dir>/ours-edge/: the ours stack again, through the edge (TLS), shown beside
ours so the extra hop's cost is read off one stack and one image; and with the swarm config,
<dir>/swarm/ (2 web tasks, straight through Swarm's virtual IP: judged on the sizes one web
container cannot hold here) and <dir>/swarm-edge/ (2 web tasks behind the edge, judged against
ours-edge, one web).

Only measured numbers are written; a missing measurement is shown as "n/a", never guessed.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks-latency.png"
# Every result file of the run the document shows, in one file beside it.
RAW = REPO / "docs" / "benchmarks-results.json"
MARK_START = "<!-- bench:results:start -->"
MARK_END = "<!-- bench:results:end -->"

# The targets on this 2-core machine (for "ours"), each met only if every run of that size
# meets it (BENCH_CLIENTS=1000,1000,... repeats a size).
TARGETS = [
    ("1,000 clients: 100% delivery and p99 < 50 ms in every run", 1000,
     lambda r: r["delivery_ratio"] >= 1.0 and (r["p99_ms"] or 1e9) < 50),
    ("5,000 clients: 100% delivery and p99 < 250 ms", 5000,
     lambda r: r["delivery_ratio"] >= 1.0 and (r["p99_ms"] or 1e9) < 250),
    ("10,000 clients: 100% delivery and p99 < 500 ms", 10000,
     lambda r: r["delivery_ratio"] >= 1.0 and (r["p99_ms"] or 1e9) < 500),
]
# The burst target: (clients, dams per second), for 30 s.
BURST_TARGET = (100, 100)
# What users behind the edge get (only when the run measured it): the same bound.
EDGE_TARGETS = [
    ("1,000 clients through the edge: p99 < 100 ms", 1000,
     lambda r: r["delivery_ratio"] >= 1.0 and (r["p99_ms"] or 1e9) < 100),
]
# Where bench.py puts the results through the edge, and their name in the table and plot.
EDGE_DIR = "ours-edge"
EDGE_NAME = "ours via edge (TLS)"
# The limit row (bench.py runs tests/bench/limit.py): the bare broadcast, and how far ours may be
# from it.
LIMIT_DIR = "limit"
LIMIT_NAME = "limit (bare asyncio broadcast)"
LIMIT_CLIENTS = 1000
LIMIT_FACTOR = 3.0
# Ours on the image's other ASGI server (bench.py's ours-uvicorn; ours runs daphne).
UVICORN_DIR = "ours-uvicorn"
UVICORN_NAME = "ours on uvicorn"
# The swarm config (bench.py): 2 web tasks behind the same edge, against one web (EDGE_DIR);
# and straight to the tasks through Swarm's virtual IP, where the 10,000-client size fits (one
# web container's nginx holds about 9,800 sockets on this machine).
SWARM_DIR = "swarm-edge"
SWARM_NAME = "swarm, 2 web tasks, via edge"
SWARM_WEB_DIR = "swarm"
SWARM_WEB_NAME = "swarm, 2 web tasks, straight"
ONE_WEB_MAX_SOCKETS = 9800
# Replicas on one machine add no CPU: the target is no cliff, not a speed-up.
SWARM_P99_FACTOR = 1.5


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}"


def ratio(ref, ours, better_low=True):
    """How many times better ours is (>1 = ours better)."""
    if ref in (None, 0) or ours in (None, 0):
        return "n/a"
    r = ref / ours if better_low else ours / ref
    return f"{r:.2f}x"


def by_clients(results):
    return {r["clients"]: r for r in (results or {}).get("fanout", [])}


def burst_ok(b) -> bool:
    return (bool(b) and b["delivery_ratio"] >= 1.0 and b["dams_accepted"] == b["dams"]
            and b["dropped_sockets"] == 0 and b["connected"] == b["clients"])


def fanout_verdicts(results, targets) -> list[tuple[str, str, str]]:
    rows = []
    for label, n, ok in targets:
        runs = [r for r in (results or {}).get("fanout", []) if r["clients"] == n]
        if not runs:
            rows.append((label, "NOT MEASURED", f"no run with {n:,} clients"))
            continue
        met = sum(1 for r in runs if ok(r))
        rows.append((label, "met" if met == len(runs) else "MISSED",
                     f"{met} of {len(runs)} runs; " + "; ".join(
                         f"delivery {r['delivery_ratio']:.4%}, p99 {fmt(r['p99_ms'], ' ms')}, "
                         f"{r['connected']:,}/{r['clients']:,} connected" for r in runs)))
    return rows


def swarm_verdicts(edge, swarm) -> list[tuple[str, str, str]]:
    """Per client count measured both ways: the same delivery, p99 within SWARM_P99_FACTOR."""
    rows = []
    one, two = by_clients(edge), by_clients(swarm)
    for n in sorted(set(one) & set(two)):
        a, b = one[n], two[n]
        ok = b["delivery_ratio"] >= a["delivery_ratio"] and (b["p99_ms"] or 1e9) <= SWARM_P99_FACTOR * (a["p99_ms"] or 0)
        rows.append((f"{n:,} clients over 2 web tasks: same delivery, p99 within {SWARM_P99_FACTOR}x of one web",
                     "met" if ok else "MISSED",
                     f"delivery {b['delivery_ratio']:.4%} vs {a['delivery_ratio']:.4%}, "
                     f"p99 {fmt(b['p99_ms'], ' ms')} vs {fmt(a['p99_ms'], ' ms')}"))
    if not rows:
        rows.append(("2 web tasks against one", "NOT MEASURED", "run BENCH_CONFIGS='ours swarm'"))
    return rows


def verdicts(ours, edge=None) -> list[tuple[str, str, str]]:
    """Every target's row; the edge's only when the run went through the edge (EDGE_DIR)."""
    rows = fanout_verdicts(ours, TARGETS)
    b = (ours or {}).get("burst")
    target = f"{BURST_TARGET[0]} clients at {BURST_TARGET[1]} dams/s for 30 s, nothing dropped"
    if b is None:
        rows.append((target, "NOT MEASURED", "no burst run"))
    else:
        met = burst_ok(b) and b["clients"] >= BURST_TARGET[0] and b["rate_wanted"] >= BURST_TARGET[1]
        rows.append((target, "met" if met else "MISSED",
                     f"delivery {b['delivery_ratio']:.4%} of {b['deliveries_expected']:,}, "
                     f"{b['dams_accepted']}/{b['dams']} adds accepted at {b['rate_achieved']}/s, "
                     f"p99 {fmt(b['p99_ms'], ' ms')}"))
    if edge is not None:
        rows += fanout_verdicts(edge, EDGE_TARGETS)
    return rows


def median_p99(results, n):
    """The median p99 over the runs with N clients (None if any run has none): runs of two
    configs are not side by side in time, so their medians, not a pair picked out, are compared."""
    p99s = [r["p99_ms"] for r in (results or {}).get("fanout", []) if r["clients"] == n]
    if not p99s or None in p99s:
        return None
    return statistics.median(p99s)


def limit_verdict(ours, limit) -> list[tuple[str, str, str]]:
    """Ours against the bare broadcast (tests/bench/limit.py), when the run measured it."""
    if limit is None:
        return []
    o, lim = median_p99(ours, LIMIT_CLIENTS), median_p99(limit, LIMIT_CLIENTS)
    target = f"{LIMIT_CLIENTS:,} clients: ours' p99 at most {LIMIT_FACTOR:g}x the limit's (medians over the runs)"
    if not o or not lim:
        return [(target, "NOT MEASURED", "no p99 of both at that size")]
    factor = o / lim
    return [(target, "met" if factor <= LIMIT_FACTOR else "MISSED",
             f"ours {fmt(o, ' ms')} / limit {fmt(lim, ' ms')} = {factor:.1f}x")]


def storm_verdict(storm) -> list[tuple[str, str, str]]:
    """The reconnect storm's row (tests/bench/storm.py), when the run made one."""
    if storm is None:
        return []
    target = f"Redis restarted under {storm['clients']:,} clients: every client holds every dam within " \
             f"{storm['target_seconds']:.0f} s, no 5xx from the catch-up"
    return [(target, "met" if storm["ok"] else "MISSED",
             f"{storm['holding_every_dam_within_target']:,}/{storm['clients']:,} within the target "
             f"({storm['connected']:,} connected), p50 {fmt(storm['caught_up_p50_s'], ' s')}, "
             f"p99 {fmt(storm['caught_up_p99_s'], ' s')}, max {fmt(storm['caught_up_max_s'], ' s')} after Redis "
             f"was started again ({storm['redis_started_after_s']} s after the stop, healthy after "
             f"{storm['redis_healthy_after_s']} s; p99 from the stop {fmt(storm['caught_up_p99_from_stop_s'], ' s')}); "
             f"{storm['catch_up_requests']:,} catch-ups from the stop on, peak "
             f"{storm['catch_up_peak_per_second']:,}/s (every catch-up's status, with the clients' first ones: "
             f"{storm['catch_up_statuses']}); "
             f"{storm['reconnections']:,} reconnections, {storm['handshakes_refused']:,} handshakes refused")]


def ladder(out: Path) -> list[str]:
    """The steps from the reference to ours (stackctl/bench.py writes them to ladder.json),
    each changing one factor: p99 and delivery at each size, and the burst's delivery."""
    steps = [(name, what, load(out / name / "fanout.json")) for name, what in load(out / "ladder.json") or []]
    steps = [(name, what, res) for name, what, res in steps if res is not None]
    if not steps:
        return []
    sizes = sorted(set().union(*(by_clients(res) for _, _, res in steps)))
    lines = ["### One factor at a time", "",
             "Each row is the one above it with one more thing as ours has it (straight to web).", "",
             "| config | what it changes | " + " | ".join(f"{n:,} clients: p99 ms (delivered)" for n in sizes)
             + " | burst delivered |", "|---|---|" + "---:|" * (len(sizes) + 1)]
    for name, what, res in steps:
        fan = by_clients(res)
        cells = [f"{fmt(fan[n]['p99_ms'])} ({fan[n]['delivery_ratio']:.1%})" if n in fan else "n/a" for n in sizes]
        burst = res.get("burst")
        cells.append(f"{burst['delivery_ratio']:.1%}" if burst else "n/a")
        lines.append(f"| {name} | {what} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def copies(r) -> str:
    """Frames with a dam the client had already (a replay racing the live message): not
    counted as deliveries; "n/a" in results from before they were counted."""
    return fmt(r.get("duplicate_deliveries"))


def table(ours, ref, edge=None, swarm=None, limit=None, uvicorn=None, swarm_web=None) -> str:
    out = ["| clients | config | connected | delivery | second copies | p50 ms | p99 ms | max ms | "
           "ASGI workers KiB/conn | nginx KiB/conn | workers |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    configs = (("ours", ours), (UVICORN_NAME, uvicorn), (EDGE_NAME, edge), (SWARM_WEB_NAME, swarm_web),
               (SWARM_NAME, swarm), ("ref", ref), (LIMIT_NAME, limit))
    fans = [(name, by_clients(res)) for name, res in configs]
    for n in sorted(set().union(*(fan for _, fan in fans))):
        for name, fan in fans:
            r = fan.get(n)
            if r is None:
                continue
            out.append(f"| {n:,} | {name} | {r['connected']:,} | {r['delivery_ratio']:.4%} | {copies(r)} | {fmt(r['p50_ms'])} | "
                       f"{fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {fmt(r['asgi_kib_per_conn'])} | "
                       f"{fmt(r['nginx_kib_per_conn'])} | {r['workers']} |")
    for name, res in configs:
        b = (res or {}).get("burst")
        if b:
            out.append(f"| {b['clients']:,} burst {b['rate_wanted']:g}/s x {b['dams']} | {name} | {b['connected']:,} | "
                       f"{b['delivery_ratio']:.4%} | {copies(b)} | {fmt(b['p50_ms'])} | {fmt(b['p99_ms'])} | {fmt(b['max_ms'])} | "
                       f"{fmt(b['asgi_kib_per_conn'])} | {fmt(b['nginx_kib_per_conn'])} | {b['workers']} |")
    return "\n".join(out)


def ratios(ours, ref, st_ours, st_ref, names=("ours", "ref")) -> str:
    """NAMES[0] against NAMES[1] (ours and ref unless told), measure by measure."""
    out = [f"| measure | {names[0]} | {names[1]} | {names[0]} better by |", "|---|---:|---:|---:|"]

    def latency(label, o, r, key):
        out.append(f"| {label} | {fmt(o[key], ' ms')} | {fmt(r[key], ' ms')} | {ratio(r[key], o[key])} |")

    def delivery(label, o, r):
        out.append(f"| {label} | {o['delivery_ratio']:.4%} | {r['delivery_ratio']:.4%} | "
                   f"{ratio(r['delivery_ratio'], o['delivery_ratio'], better_low=False)} |")

    fo, fr = by_clients(ours), by_clients(ref)
    for n in sorted(set(fo) & set(fr)):
        o, r = fo[n], fr[n]
        latency(f"p99 latency, {n:,} clients", o, r, "p99_ms")
        latency(f"p50 latency, {n:,} clients", o, r, "p50_ms")
        delivery(f"delivery, {n:,} clients", o, r)
    bo, br = (ours or {}).get("burst"), (ref or {}).get("burst")
    if bo and br:
        delivery("delivery, burst", bo, br)
        latency("p99 latency, burst", bo, br, "p99_ms")
    for key, label in (("first_start_s", "first start to healthy"), ("restart_s", "restart to healthy")):
        o, r = (st_ours or {}).get(key), (st_ref or {}).get(key)
        out.append(f"| {label} | {fmt(o, ' s')} | {fmt(r, ' s')} | {ratio(r, o)} |")
    return "\n".join(out)


def edge_cost(ours, edge) -> str:
    """Straight to web against through the edge, on the same stack: what the hop and TLS add."""
    out = ["| measure | straight to web | via edge (TLS) | the edge adds |", "|---|---:|---:|---:|"]

    def latency(label, o, e, key):
        added = None if o[key] is None or e[key] is None else round(e[key] - o[key], 1)
        out.append(f"| {label} | {fmt(o[key], ' ms')} | {fmt(e[key], ' ms')} | {fmt(added, ' ms')} |")

    fo, fe = by_clients(ours), by_clients(edge)
    for n in sorted(set(fo) & set(fe)):
        latency(f"p50 latency, {n:,} clients", fo[n], fe[n], "p50_ms")
        latency(f"p99 latency, {n:,} clients", fo[n], fe[n], "p99_ms")
    bo, be = (ours or {}).get("burst"), (edge or {}).get("burst")
    if bo and be:
        latency("p99 latency, burst", bo, be, "p99_ms")
    return "\n".join(out)


def plot(ours, ref, edge=None, uvicorn=None) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, res, style in (("ours", ours, "-o"), (UVICORN_NAME, uvicorn, ":v"), (EDGE_NAME, edge, "-.^"),
                             ("ref (Tethys docs)", ref, "--s")):
        rows = sorted(by_clients(res).values(), key=lambda r: r["clients"])
        rows = [r for r in rows if r["p99_ms"] is not None]
        if not rows:
            continue
        xs = [r["clients"] for r in rows]
        ax.plot(xs, [r["p99_ms"] for r in rows], style, label=f"{name} p99")
        ax.plot(xs, [r["p50_ms"] for r in rows], style, alpha=0.45, label=f"{name} p50")
    ax.axhline(500, color="grey", lw=0.8, ls=":")
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent WebSocket clients")
    ax.set_ylabel("notification latency (ms)")
    ax.set_title("New-dam notification latency against clients (2 cores)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT)
    return True


def uvicorn_section(ours, uvicorn, st_ours, st_uvicorn) -> list[str]:
    return [
        "### The ASGI server: daphne (ours) against uvicorn",
        "",
        f"Two stacks alike but for ASGI_SERVER: ours (daphne, the default) and `{UVICORN_NAME}` "
        "(uvicorn on uvloop, httptools and the websockets library), straight to web.",
        "",
        ratios(uvicorn, ours, st_uvicorn, st_ours, names=(UVICORN_NAME, "ours")),
        "",
    ]


def edge_section(ours, edge) -> list[str]:
    return [
        "### The edge's cost (ours)",
        "",
        f"One ours stack, measured straight to web (`ours`) and then, after that run, through the edge "
        f"(`{EDGE_NAME}`). Through the edge the load generator's own TLS work is part of the latency; "
        "the KiB/conn columns are web's processes (the edge's memory is not measured).",
        "",
        edge_cost(ours, edge),
        "",
    ]


def raw_results(out: Path, measured: str) -> dict:
    """Every JSON file the run wrote, by its path under OUT, with when and on what it ran."""
    files = {str(path.relative_to(out)): load(path) for path in sorted(out.rglob("*.json"))}
    return {"measured": measured, "commit": (files.get("run.json") or {}).get("commit", "unknown"), "files": files}


def main(out_dir: str) -> int:
    out = Path(out_dir)
    ours, ref = load(out / "ours" / "fanout.json"), load(out / "ref" / "fanout.json")
    edge = load(out / EDGE_DIR / "fanout.json")
    swarm, swarm_web = load(out / SWARM_DIR / "fanout.json"), load(out / SWARM_WEB_DIR / "fanout.json")
    st_ours, st_ref = load(out / "ours" / "startup.json"), load(out / "ref" / "startup.json")
    image = load(out / "image.json")
    storm, limit = load(out / "storm" / "storm.json"), load(out / LIMIT_DIR / "fanout.json")
    uvicorn, st_uvicorn = load(out / UVICORN_DIR / "fanout.json"), load(out / UVICORN_DIR / "startup.json")
    verdict_rows = (verdicts(ours, edge) + (swarm_verdicts(edge, swarm) if swarm is not None else [])
                    + limit_verdict(ours, limit) + storm_verdict(storm))
    if swarm_web is not None:  # the sizes one web container cannot hold here
        verdict_rows += [(f"{SWARM_WEB_NAME}: {a}", b, c) for a, b, c in fanout_verdicts(
            swarm_web, [t for t in TARGETS if t[1] > ONE_WEB_MAX_SOCKETS])]
    if uvicorn is not None:  # the same targets, for whoever runs it (not the default)
        verdict_rows += [(f"{UVICORN_NAME}: {a}", b, c) for a, b, c in verdicts(uvicorn) + limit_verdict(uvicorn, limit)]

    raw = raw_results(out, f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    text = [
        f"Measured {raw['measured']} on commit {raw['commit']}, on {platform.node()} "
        f"({os.cpu_count()} cores), load average at report time {open('/proc/loadavg').read().split()[0]}. "
        f"Every result file of this run: [{RAW.name}]({RAW.name}).",
        "",
        "### Fan-out",
        "",
        table(ours, ref, edge, swarm, limit, uvicorn, swarm_web),
        "",
        "### Ours against the reference",
        "",
        ratios(ours, ref, st_ours, st_ref),
        "",
        f"Web image `{(image or {}).get('image', 'n/a')}`: "
        f"{fmt(round((image or {}).get('bytes', 0) / 1e6, 1) if image else None, ' MB')}.",
        "",
        *ladder(out),
        *(uvicorn_section(ours, uvicorn, st_ours, st_uvicorn) if uvicorn is not None else []),
        *(edge_section(ours, edge) if edge is not None else []),
        "### Targets (ours)",
        "",
        "| target | verdict | measured |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in verdict_rows],
        "",
    ]
    if plot(ours, ref, edge, uvicorn):
        text.append(f"![latency against clients]({PLOT.name})")
    block = "\n".join(text)
    print(block)

    doc = DOC.read_text() if DOC.is_file() else ""
    if MARK_START in doc and MARK_END in doc:
        RAW.write_text(json.dumps(raw, indent=1) + "\n")
        head, rest = doc.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        DOC.write_text(f"{head}{MARK_START}\n{block}\n{MARK_END}{tail}")
        print(f"\n[bench] results written into {DOC.relative_to(REPO)} and {PLOT.relative_to(REPO)}", file=sys.stderr)
    else:
        print(f"\n[bench] {DOC.relative_to(REPO)} has no results markers: not written", file=sys.stderr)
    # The report is written either way (a miss is a result too); the command then fails.
    missed = [a for a, b, _ in verdict_rows if b != "met"]
    if missed:
        print("[bench] FAILED, targets not met: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(REPO / "build" / "bench")))
