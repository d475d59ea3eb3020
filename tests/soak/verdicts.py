"""The soak campaign's verdicts: pure functions of what it recorded (tests/soak/campaign.py),
each a line that passes or fails the run. The bounds are stated here, once, and printed with
every verdict.

- Nothing lost or duplicated: every add the portal confirmed is in the outbox exactly once,
  every refused one not at all; the dams table agrees with the outbox; every confirmed delete
  happened once.
- Every client still there at the end (connected or reconnecting) holds every dam added and
  knows every delete since it joined, read from the database, not from the clients' logic.
- No 5xx outside a fault's window, and none but a gateway's or the app's "unavailable"
  (502, 503, 504) inside one; every request got an answer outside the windows.
- No growth beyond the bounds per hour of each process' memory and descriptors, Redis'
  memory and PostgreSQL's connections, over the steady stretch after the last fault.
- The group never holds more members than the workers, plus the killed workers whose member
  has not expired yet.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

# Growth per hour allowed to each series (a process, Redis, PostgreSQL), by metric.
GROWTH_BOUNDS = {
    "rss": (64.0, "MiB"),
    "fds": (100.0, "descriptors"),
    "redis_memory": (16.0, "MiB"),
    "pg_connections": (10.0, "connections"),
}
# Growth is judged where the load is steady: after the last fault's window (faults restart
# processes and move clients between them, which changes their memory and descriptors for
# reasons that are not leaks) and after each series' first GROWTH_WARM_UP seconds (imports,
# caches and pools filling up to their bounds), over at least MIN_JUDGED_SPAN: a slope over a
# few minutes says more about noise than about a leak.
GROWTH_WARM_UP = 300
MIN_JUDGED_SPAN = 300
# A killed worker's member stays until group_expiry after its last renewal (fanout.py renews
# every 300 s; salt/defaults.yaml sets the expiry to 900 s).
MEMBER_LINGERS = 900 + 300
ALLOWED_IN_FAULT = {502, 503, 504}


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def fault_windows(faults: list[dict], grace: float) -> list[tuple[float, float]]:
    return [(f["start"], f.get("end", f["start"]) + grace) for f in faults]


def _inside(at: float, windows) -> bool:
    return any(start <= at <= end for start, end in windows)


def faults_recovered(faults: list[dict], planned: int) -> Verdict:
    failed = [f"{f['name']} at {f['start']:.0f} s: {f['error']}" for f in faults if f.get("error")]
    return Verdict("faults injected and recovered", len(faults) == planned and not failed,
                   f"{len(faults)} of {planned} injected; " + ("; ".join(failed) if failed else "all recovered"))


def nothing_lost(adds, deletes, events, dams) -> Verdict:
    """ADDS/DELETES: the campaign's Attempts; EVENTS: the outbox (seq, kind, dam id, name);
    DAMS: the campaign's rows of the dams table (id, name)."""
    added = collections.Counter(name for _, kind, _, name in events if kind == "dam_added")
    deleted = collections.Counter(dam_id for _, kind, dam_id, _ in events if kind == "dam_deleted")
    problems = []
    for attempt in adds:
        times = added[attempt.name]
        if attempt.outcome == "ok" and times != 1:
            problems.append(f"confirmed add {attempt.name} in the outbox {times} times")
        elif attempt.outcome == "refused" and times:
            problems.append(f"refused add {attempt.name} ({attempt.detail}) was saved")
        elif times > 1:
            problems.append(f"add {attempt.name} in the outbox {times} times")
    for attempt in deletes:
        if attempt.outcome == "ok" and deleted[attempt.dam_id] != 1:
            problems.append(f"confirmed delete of dam {attempt.dam_id} in the outbox {deleted[attempt.dam_id]} times")
    expected = {dam_id for _, kind, dam_id, name in events if kind == "dam_added" and name in {a.name for a in adds}}
    expected -= set(deleted)
    table = {dam_id for dam_id, _ in dams}
    if table != expected:
        problems.append(f"dams table and outbox disagree: only in the table {sorted(table - expected)[:10]}, "
                        f"only in the outbox {sorted(expected - table)[:10]}")
    names = collections.Counter(name for _, name in dams)
    problems += [f"{name} is in the dams table {n} times" for name, n in names.items() if n > 1]
    outcomes = collections.Counter(a.outcome for a in adds)
    return Verdict("no dam lost or duplicated", not problems,
                   "; ".join(problems[:10]) if problems else
                   f"{outcomes['ok']} adds confirmed, {outcomes['refused']} refused, {outcomes['unknown']} unanswered "
                   f"(each saved once or not at all); {sum(1 for d in deletes if d.outcome == 'ok')} deletes confirmed; "
                   f"{len(table)} of the campaign's dams left, as the outbox says")


def every_client_holds_every_dam(clients: list[dict], events, final_seq: int, settle: float) -> Verdict:
    behind = []
    for client in clients:
        since = [(kind, dam_id) for seq, kind, dam_id, _ in events if seq > client["start_seq"]]
        lacks = {dam_id for kind, dam_id in since if kind == "dam_added"} - set(client["seen"])
        missed = {dam_id for kind, dam_id in since if kind == "dam_deleted"} - set(client["deleted"])
        if client["last_seq"] < final_seq or lacks or missed:
            behind.append(f"{client['label']} (seq {client['last_seq']} of {final_seq}, lacks {sorted(lacks)[:5]}, "
                          f"missed deletes {sorted(missed)[:5]}, {client['connections']} connections)")
    return Verdict("every client holds every dam", bool(clients) and not behind,
                   f"{len(behind)} of {len(clients)} behind: {'; '.join(behind[:5])}" if behind else
                   f"all {len(clients)} clients at seq {final_seq}, {settle:.1f} s after the load stopped")


def no_server_errors(server_errors, failures, windows) -> Verdict:
    outside = [f"{status} {what} at {at:.0f} s" for at, status, what in server_errors
               if not _inside(at, windows) or status not in ALLOWED_IN_FAULT]
    outside += [f"no answer: {what} at {at:.0f} s" for at, what in failures if not _inside(at, windows)]
    inside = sum(1 for at, status, _ in server_errors if _inside(at, windows) and status in ALLOWED_IN_FAULT)
    return Verdict("no 5xx outside a fault", not outside,
                   f"{len(outside)}: {'; '.join(outside[:8])}" if outside else
                   f"none; {inside} answers of {sorted(ALLOWED_IN_FAULT)} and "
                   f"{sum(1 for at, _ in failures if _inside(at, windows))} unanswered requests inside fault windows")


def series(samples: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """metric|label|incarnation -> [(at, value)] from the sampler's rows."""
    out: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for row in samples:
        for key, value in row.items():
            if key != "at":
                out[key].append((row["at"], float(value)))
    return dict(out)


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value over time (seconds), per hour."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 3600


def growth(samples: list[dict], steady_from: float, must_judge: bool) -> list[Verdict]:
    """A verdict per metric of GROWTH_BOUNDS: the slope of every series from STEADY_FROM (the
    end of the last fault's window) and its own warm-up on, where that spans MIN_JUDGED_SPAN.
    MUST_JUDGE: a run long enough that finding no such series fails."""
    verdicts = []
    by_metric = collections.defaultdict(dict)
    for key, points in series(samples).items():
        metric = key.split("|")[0]
        if metric in GROWTH_BOUNDS:
            judged = [(t, v) for t, v in points if t >= max(steady_from, points[0][0] + GROWTH_WARM_UP)]
            if len(judged) >= 2 and judged[-1][0] - judged[0][0] >= MIN_JUDGED_SPAN:
                by_metric[metric][key] = slope_per_hour(judged)
    for metric, (bound, unit) in GROWTH_BOUNDS.items():
        slopes = by_metric.get(metric, {})
        over = {k: s for k, s in slopes.items() if s > bound}
        name = f"{metric} growth under {bound:g} {unit}/h"
        if not slopes:
            verdicts.append(Verdict(name, not must_judge,
                                    f"not judged: no series spans {MIN_JUDGED_SPAN // 60} min of steady load "
                                    f"after its first {GROWTH_WARM_UP // 60} min"))
            continue
        worst = max(slopes, key=slopes.get)
        detail = ", ".join(f"{k.split('|')[1]} {s:+.1f}" for k, s in sorted(over.items()))
        verdicts.append(Verdict(name, not over, f"over the bound: {detail}" if over else
                                f"{len(slopes)} series judged, the steepest {worst.split('|')[1]} "
                                f"{slopes[worst]:+.1f} {unit}/h"))
    return verdicts


def group_bounded(samples: list[dict], faults: list[dict], workers: int) -> Verdict:
    """Members never above the workers, plus the killed workers whose member has not expired:
    those killed by the campaign, and any dead member already there when it began (a worker
    killed before it), each for MEMBER_LINGERS seconds."""
    readings = [(row["at"], int(value)) for row in samples for key, value in row.items() if key.startswith("group|")]
    if not readings:
        return Verdict("group membership bounded", False, "never read")
    # A worker joins with its first socket, so the first readings may still lack live members:
    # the dead ones from before are what exceeds the workers in the first minute.
    start = readings[0][0]
    dead_before = max(0, max(m for at, m in readings if at - start <= 60) - workers)
    kills = [f["start"] for f in faults if f["name"] == "worker SIGKILL"]
    over = []
    for at, members in readings:
        bound = (workers + sum(1 for k in kills if at - MEMBER_LINGERS <= k <= at)
                 + (dead_before if at - start <= MEMBER_LINGERS else 0))
        if members > bound:
            over.append(f"{members} members at {at:.0f} s (bound {bound})")
    largest = max(members for _, members in readings)
    return Verdict("group membership bounded", not over,
                   "; ".join(over[:5]) if over else
                   f"at most {largest} members for {workers} workers ({dead_before} dead member(s) from "
                   "before the run, left to expire)")


def load_ran(clients: int, opened: int, connections: int, confirmed_adds: int, deliveries: int) -> Verdict:
    """The campaign did what it set out to: a full population, adds confirmed, events delivered."""
    ok = opened >= clients and connections >= clients and confirmed_adds > 0 and deliveries > 0
    return Verdict("the load ran", ok, f"{opened:,} clients opened for a population of {clients:,}, "
                   f"{connections:,} connections, {confirmed_adds:,} adds confirmed, {deliveries:,} events delivered")
