"""The benchmark's verdicts and its storm client's rules (tests/bench/), on made-up results:
each target must be able to fail."""

import importlib
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # the bench scripts import their neighbours by name
report = importlib.import_module("report")
fanout = importlib.import_module("fanout")
storm = importlib.import_module("storm")


def _run(clients, p99, delivery=1.0):
    return {"clients": clients, "connected": clients, "delivery_ratio": delivery, "p99_ms": p99}


def test_a_size_is_met_only_when_every_run_of_it_is():
    target = [("1,000 clients", 1000, lambda r: r["delivery_ratio"] >= 1.0 and (r["p99_ms"] or 1e9) < 50)]
    (label, verdict, measured), = report.fanout_verdicts({"fanout": [_run(1000, 40), _run(1000, 60)]}, target)
    assert verdict == "MISSED" and measured.startswith("1 of 2 runs")
    assert report.fanout_verdicts({"fanout": [_run(1000, 40), _run(1000, 45)]}, target)[0][1] == "met"
    assert report.fanout_verdicts({"fanout": [_run(1000, None, 0.98)]}, target)[0][1] == "MISSED"
    assert report.fanout_verdicts({"fanout": []}, target)[0][1] == "NOT MEASURED"


def test_missing_deliveries_are_infinitely_late():
    pairs = [0.01] * 98 + [math.inf] * 2
    assert fanout.ms(fanout.percentile(pairs, 99)) is None
    assert fanout.ms(fanout.percentile(pairs, 50)) == 10.0


def test_ours_against_the_limit():
    ours = {"fanout": [_run(1000, 90)]}
    assert report.limit_verdict(ours, {"fanout": [_run(1000, 30)]})[0][1] == "met"
    assert report.limit_verdict(ours, {"fanout": [_run(1000, 20)]})[0][1] == "MISSED"
    assert report.limit_verdict(ours, None) == []


@pytest.mark.parametrize("change, verdict", [({}, "met"), ({"ok": False}, "MISSED")])
def test_the_storm_row(change, verdict):
    result = {"clients": 5000, "connected": 5000, "target_seconds": 15, "holding_every_dam_within_target": 5000,
              "caught_up_p50_s": 3.0, "caught_up_p99_s": 9.0, "caught_up_max_s": 11.0, "redis_started_after_s": 1.0,
              "redis_healthy_after_s": 2.0, "caught_up_p99_from_stop_s": 10.0,
              "catch_up_requests_before_stop": 5000, "catch_up_requests": 200,
              "catch_up_statuses": {"200": 5200}, "catch_up_peak_per_second": 900,
              "reconnections": 5000, "handshakes_refused": 40, "ok": True, **change}
    assert report.storm_verdict(result)[0][1] == verdict


def test_the_storm_client_applies_in_order_and_catches_up_on_a_gap_or_a_sync_ahead():
    client = storm.StormClient(storm.Shared("http://web", "ws://web", "", None), last_seq=5)
    asked = []
    client.catch_up = lambda: asked.append(client.last_seq)
    client.on_text(b'{"event": "dam_added", "seq": 6}', 0)
    assert client.last_seq == 6 and not asked
    client.on_text(b'{"event": "dam_added", "seq": 8}', 0)
    assert client.last_seq == 6 and asked == [6]
    client.on_text(b'{"event": "sync", "seq": 9}', 0)
    assert asked == [6, 6]
    client.on_text(b'{"event": "sync", "seq": 6}', 0)
    assert asked == [6, 6]


def test_peak_per_second():
    assert storm.peak_per_second([0.1, 0.5, 1.2, 1.3, 1.9, 5.0]) == 3


def test_the_raw_results_keep_every_file_and_the_commit(tmp_path):
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "fanout.json").write_text('{"runs": []}')
    (tmp_path / "run.json").write_text('{"commit": "abc1234"}')
    raw = report.raw_results(tmp_path, "2026-12-04 20:00 UTC")
    assert raw["commit"] == "abc1234"
    assert raw["files"] == {"ours/fanout.json": {"runs": []}, "run.json": {"commit": "abc1234"}}
