"""The soak campaign's verdicts and plan (tests/soak/), on made-up records: each verdict must
be able to fail, and fail for the right reason."""

import pytest

from tests.soak import verdicts as v
from tests.soak.campaign import Attempt, Plan, percentile

ADDED, DELETED = "dam_added", "dam_deleted"


def _events(*rows):
    return [(seq, kind, dam_id, name) for seq, (kind, dam_id, name) in enumerate(rows, 1)]


def test_a_confirmed_add_missing_from_the_outbox_is_lost():
    adds = [Attempt(0, "a", outcome="ok"), Attempt(1, "b", outcome="ok")]
    verdict = v.nothing_lost(adds, [], _events((ADDED, 1, "a")), [(1, "a")])
    assert not verdict.ok and "b in the outbox 0 times" in verdict.detail


def test_a_refused_add_that_was_saved_fails_and_an_unanswered_one_may_be():
    refused = v.nothing_lost([Attempt(0, "a", outcome="refused")], [], _events((ADDED, 1, "a")), [(1, "a")])
    assert not refused.ok and "refused add a" in refused.detail
    unknown = v.nothing_lost([Attempt(0, "a", outcome="unknown")], [], _events((ADDED, 1, "a")), [(1, "a")])
    assert unknown.ok, unknown.detail


def test_duplicates_and_a_table_out_of_step_with_the_outbox_fail():
    adds = [Attempt(0, "a", outcome="ok")]
    twice = v.nothing_lost(adds, [], _events((ADDED, 1, "a"), (ADDED, 2, "a")), [(1, "a"), (2, "a")])
    assert not twice.ok and "2 times" in twice.detail
    gone = v.nothing_lost(adds, [], _events((ADDED, 1, "a")), [])
    assert not gone.ok and "only in the outbox [1]" in gone.detail


def test_deletes_are_judged_by_the_outbox():
    adds = [Attempt(0, "a", outcome="ok")]
    deletes = [Attempt(1, "", dam_id=1, outcome="ok")]
    assert v.nothing_lost(adds, deletes, _events((ADDED, 1, "a"), (DELETED, 1, "a")), []).ok
    lost = v.nothing_lost(adds, deletes, _events((ADDED, 1, "a")), [(1, "a")])
    assert not lost.ok and "delete of dam 1" in lost.detail


def test_a_client_behind_or_missing_a_dam_fails():
    events = _events((ADDED, 1, "a"), (ADDED, 2, "b"), (DELETED, 1, "a"))
    good = {"label": "c", "start_seq": 0, "last_seq": 3, "seen": [1, 2], "deleted": [1], "connections": 2}
    joined_late = {**good, "start_seq": 2, "seen": [], "deleted": [1]}
    assert v.every_client_holds_every_dam([good, joined_late], events, 3, 1.0).ok
    lacking = {**good, "seen": [1]}
    behind = {**good, "last_seq": 2}
    verdict = v.every_client_holds_every_dam([lacking, behind], events, 3, 1.0)
    assert not verdict.ok and "2 of 2 behind" in verdict.detail
    assert not v.every_client_holds_every_dam([], events, 3, 1.0).ok


def test_5xx_are_allowed_only_inside_a_fault_window_and_never_500():
    windows = v.fault_windows([{"name": "web restart", "start": 100, "end": 130}], grace=15)
    assert v.no_server_errors([(140, 502, "GET /")], [], windows).ok
    assert not v.no_server_errors([(150, 502, "GET /")], [], windows).ok
    assert not v.no_server_errors([(110, 500, "POST /")], [], windows).ok
    assert not v.no_server_errors([], [(20, "add: ConnectionError")], windows).ok


def _rss(start, minutes, mib_per_hour, pid="7"):
    return [{"at": start + t, f"rss|web worker 1|{pid}": 200 + mib_per_hour * t / 3600} for t in range(0, minutes * 60, 10)]


def test_growth_beyond_the_bound_fails_and_flat_passes():
    bound = v.GROWTH_BOUNDS["rss"][0]
    rising = {x.name: x for x in v.growth(_rss(0, 20, bound * 2), steady_from=0, must_judge=True)}
    assert not rising[f"rss growth under {bound:g} MiB/h"].ok
    flat = {x.name: x for x in v.growth(_rss(0, 20, 0), steady_from=0, must_judge=True)}
    assert flat[f"rss growth under {bound:g} MiB/h"].ok


def test_only_the_steady_stretch_after_the_last_fault_is_judged():
    """A step when a fault moved clients to this worker, flat after it: not a leak."""
    samples = [{"at": t, "fds|web worker 2|7": 370 + (160 if t >= 600 else 0)} for t in range(0, 1800, 10)]
    name = "fds growth under 100 descriptors/h"
    with_the_fault = {x.name: x for x in v.growth(samples, steady_from=0, must_judge=True)}
    assert not with_the_fault[name].ok
    after_it = {x.name: x for x in v.growth(samples, steady_from=615, must_judge=True)}
    assert after_it[name].ok and "1 series judged" in after_it[name].detail


def test_a_series_too_short_is_not_judged_and_a_long_run_must_judge():
    short = {x.name: x for x in v.growth(_rss(0, 5, 1000), steady_from=0, must_judge=False)}
    assert all(x.ok and "not judged" in x.detail for x in short.values())
    assert not any(x.ok for x in v.growth(_rss(0, 5, 0), steady_from=0, must_judge=True))
    late = v.growth(_rss(0, 20, 1000), steady_from=1000, must_judge=True)
    assert not any(x.ok for x in late), "11 min of steady load after the warm-up were judged"


def test_slope_per_hour():
    assert v.slope_per_hour([(0, 0), (1800, 5), (3600, 10)]) == pytest.approx(10)


def test_the_group_may_hold_a_killed_workers_member_until_it_expires():
    kill = [{"name": "worker SIGKILL", "start": 100, "end": 110}]
    samples = [{"at": 50, "group|redis|x": 3}, {"at": 200, "group|redis|x": 4},
               {"at": 100 + v.MEMBER_LINGERS + 10, "group|redis|x": 4}]
    verdict = v.group_bounded(samples, kill, workers=3)
    assert not verdict.ok and "bound 3" in verdict.detail
    assert v.group_bounded(samples[:2], kill, workers=3).ok
    assert not v.group_bounded([], kill, workers=3).ok


def test_a_dead_member_from_before_the_run_may_linger_until_it_expires():
    samples = [{"at": 0, "group|redis|x": 3}, {"at": 10, "group|redis|x": 4}, {"at": 600, "group|redis|x": 4}]
    assert v.group_bounded(samples, [], workers=3).ok
    late = samples + [{"at": 10 + v.MEMBER_LINGERS + 10, "group|redis|x": 4}]
    assert not v.group_bounded(late, [], workers=3).ok


def test_the_plan_spreads_every_fault_between_a_quiet_start_and_end(monkeypatch):
    monkeypatch.setenv("SOAK_MINUTES", "30")
    monkeypatch.setenv("SOAK_FAULT_ROUNDS", "2")
    plan = Plan.from_env()
    times = [at for at, _ in plan.fault_schedule()]
    assert len(times) == 10 and times == sorted(times)
    assert times[0] >= 120 and times[-1] < plan.seconds * 0.5


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_the_plan_refuses_bad_values_by_name(monkeypatch, value):
    monkeypatch.setenv("SOAK_CLIENTS", value)
    with pytest.raises(ValueError, match="SOAK_CLIENTS"):
        Plan.from_env()


def test_percentile_by_nearest_rank():
    assert percentile(range(1, 101), 99) == 99
    assert percentile([5], 50) == 5


def test_a_pool_filling_up_at_first_is_not_a_leak():
    """Connections rising for 4 minutes to their bound, then flat: the warm-up covers it."""
    samples = [{"at": t, "pg_connections|db|1": min(38, 12 + t / 9)} for t in range(0, 1500, 10)]
    verdict = {x.name: x for x in v.growth(samples, steady_from=0, must_judge=True)}
    assert verdict["pg_connections growth under 10 connections/h"].ok
