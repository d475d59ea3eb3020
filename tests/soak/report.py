"""Writes a soak run out: OUT/reliability.md (parameters, counts, verdicts, latency per
minute, the figures), OUT/reliability/*.png (the measures over time, fault windows shaded)
and OUT/reliability/soak.json (every sample and count, for re-plotting). `make soak` writes
into docs/, `make test`'s short run into build/soak/. Every figure in the document comes from
the run; nothing is typed in by hand."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from tests.soak.campaign import FAULT_GRACE_SECONDS, Record, percentile
from tests.soak.verdicts import Verdict, fault_windows, series

REPO = Path(__file__).resolve().parents[2]
# The figures: file name, title, the metrics drawn, the y axis.
FIGURES = (
    ("memory", "Resident memory per process", ("rss",), "MiB"),
    ("descriptors", "Open file descriptors per process", ("fds",), "descriptors"),
    ("redis", "Redis: memory and the notifications group", ("redis_memory", "group"), "MiB / members"),
    ("postgres", "PostgreSQL client connections", ("pg_connections",), "connections"),
    ("clients", "Connected WebSocket clients", ("clients",), "clients"),
)


def latency_by_minute(record: Record) -> list[tuple[int, int, float, float]]:
    """(minute, deliveries, p50 ms, p99 ms) of the adds due in each minute."""
    return [(minute, len(values), percentile(values, 50) * 1000, percentile(values, 99) * 1000)
            for minute, values in sorted(record.latency.items())]


# How a series is named where a figure draws more than one metric.
METRIC_NAMES = {"redis_memory": "memory (MiB)", "group": "group members"}


def _series_label(key: str) -> str:
    metric, label, incarnation = key.split("|")
    label = f"{METRIC_NAMES[metric]}, {label}" if metric in METRIC_NAMES else label
    return label if incarnation == "-" else f"{label} ({incarnation})"


def plot(record: Record, folder: Path) -> list[str]:
    """The PNGs of FIGURES (and the latency) -> their file names; none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    windows = fault_windows(record.faults, FAULT_GRACE_SECONDS)
    by_key = series(record.samples)
    names = []

    def figure(name, title, ylabel, draw):
        fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
        for start, end in windows:
            ax.axvspan(start / 60, end / 60, color="0.88", lw=0)
        draw(ax)
        ax.set_title(title + " (grey: fault windows)", fontsize=10)
        ax.set_xlabel("minutes")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=3, loc="upper left")
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png")
        plt.close(fig)
        names.append(f"{name}.png")

    for name, title, metrics, ylabel in FIGURES:
        def draw(ax, metrics=metrics):
            for key, points in sorted(by_key.items()):
                if key.split("|")[0] in metrics:
                    ax.plot([t / 60 for t, _ in points], [v for _, v in points], lw=1, label=_series_label(key))
        figure(name, title, ylabel, draw)

    rows = latency_by_minute(record)

    def draw_latency(ax):
        ax.plot([m + 0.5 for m, *_ in rows], [p50 for *_, p50, _ in rows], "-o", ms=3, label="p50")
        ax.plot([m + 0.5 for m, *_ in rows], [p99 for *_, p99 in rows], "-s", ms=3, label="p99")
        ax.set_yscale("log")
    figure("latency", "Notification latency by the minute of the add", "ms (log)", draw_latency)
    return names


def _table(header: tuple[str, ...], rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(record: Record, verdicts: list[Verdict], figures: list[str]) -> str:
    plan, final = record.plan, record.final
    outcomes = {kind: sum(1 for a in attempts if a.outcome == "ok") for kind, attempts in
                (("adds", record.adds), ("deletes", record.deletes))}
    all_latency = [v for values in record.latency.values() for v in values]
    parts = [
        "# Reliability: the soak campaign",
        "",
        f"Written by `make soak` (tests/soak/) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"commit {record.commit}, on a {platform.machine()} host with {os.cpu_count()} CPUs. "
        "Every number below is the run's; run `make soak` to measure again (`SOAK_MINUTES`, `SOAK_CLIENTS`, ...: see the README).",
        "",
        "## Verdicts",
        "",
        "```",
        *(v.line() for v in verdicts),
        "```",
        "",
        "## The run",
        "",
        _table(("parameter", "value"), [
            ("length", f"{plan.minutes:g} min (and {final.get('settle_seconds', 0):.0f} s to settle)"),
            ("WebSocket clients at all times", f"{plan.clients:,}"),
            ("mean time a client stays", f"{plan.client_lifetime:g} s"),
            ("adds / deletes / page loads", f"every {plan.add_every:g} s / {plan.delete_every:g} s / "
                                            f"{plan.page_every:g} s"),
            ("ASGI workers", record.workers),
            ("samples", f"every {plan.sample_every:g} s"),
        ]),
        "",
        _table(("count", "value"), [
            ("clients opened", f"{record.clients_opened:,}"),
            ("WebSocket connections made", f"{record.connections:,}"),
            ("events delivered to clients", f"{record.deliveries:,}"),
            ("catch-ups by clients", f"{record.catch_ups:,}"),
            ("adds sent / confirmed", f"{len(record.adds):,} / {outcomes['adds']:,}"),
            ("deletes sent / confirmed", f"{len(record.deletes):,} / {outcomes['deletes']:,}"),
            ("HTTP answers", ", ".join(f"{status}: {n:,}" for status, n in sorted(record.statuses.items()))),
            ("requests without an answer", f"{len(record.failures):,}"),
            ("faults injected", f"{len(record.faults)}"),
            ("notification latency, all deliveries", f"p50 {percentile(all_latency, 50) * 1000:.0f} ms, "
                                                     f"p99 {percentile(all_latency, 99) * 1000:.0f} ms "
                                                     f"({len(all_latency):,} deliveries)"),
        ]),
        "",
        "## Faults",
        "",
        _table(("fault", "at", "recovered after", "result"), [
            (f["name"], f"{f['start'] / 60:.1f} min", f"{f['end'] - f['start']:.0f} s", f["error"] or "recovered")
            for f in record.faults]),
        "",
        "## Latency by minute",
        "",
        "From the add's due time to the client applying it, live or by catch-up, for every client "
        "that was there when the add was due.",
        "",
        _table(("minute", "deliveries", "p50 ms", "p99 ms"),
               [(m, f"{n:,}", f"{p50:.0f}", f"{p99:.0f}") for m, n, p50, p99 in latency_by_minute(record)]),
        "",
        "## Over time",
        "",
        *(f"![{name[:-4]}](reliability/{name})\n" for name in figures),
    ]
    return "\n".join(parts) + "\n"


def _raw(record: Record, verdicts: list[Verdict]) -> dict:
    final = {k: v for k, v in record.final.items() if k != "clients"}
    return {
        "plan": record.plan.__dict__, "workers": record.workers, "commit": record.commit,
        "verdicts": [v.__dict__ for v in verdicts], "faults": record.faults, "samples": record.samples,
        "statuses": record.statuses, "server_errors": record.server_errors, "failures": record.failures,
        "counts": {"clients_opened": record.clients_opened, "connections": record.connections,
                   "deliveries": record.deliveries, "catch_ups": record.catch_ups},
        "adds": [a.__dict__ for a in record.adds], "deletes": [a.__dict__ for a in record.deletes],
        "latency_by_minute": latency_by_minute(record), "final": final,
    }


def write(record: Record, verdicts: list[Verdict], out: Path) -> Path:
    """Writes the document, its figures and the raw results under OUT -> the document."""
    folder = out / "reliability"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    figures = plot(record, folder)
    (folder / "soak.json").write_text(json.dumps(_raw(record, verdicts), indent=1, default=str))
    doc = out / "reliability.md"
    doc.write_text(markdown(record, verdicts, figures))
    return doc
