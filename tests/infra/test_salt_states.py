"""The web container's Salt states are idempotent and honest in test mode: on the configured,
running container `state.apply test=True` reports no change at all, and after a change of the
environment it reports exactly the changes the next apply then makes. They create no role or
database and migrate nothing (the setup service's states do), and several applies at once,
as several web containers starting together, all succeed.

salt-call runs inside the web container as its user, through the entrypoint's `salt` command
(which resolves the *_FILE secrets as at start); a changed variable is given to that one
salt-call only (`env NAME=value`), so the running container keeps its own environment.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

MAX_DAMS_STATE = "tethys_portal_|-tethys-app-setting-max-dams_|-max_dams_|-app_setting"


def state_apply(stack, *args: str, env: dict[str, str] | None = None) -> dict[str, dict]:
    """Every state's result of one `salt-call --local state.apply` in the web container."""
    argv = ["env", *[f"{k}={v}" for k, v in (env or {}).items()],
            "tethys-entrypoint", "salt", "--out=json", "--log-level=error", "state.apply", *args]
    out = stack.exec("web", argv, timeout=300, check=False)
    try:
        results = json.loads(out)["local"]
    except (ValueError, KeyError, TypeError):
        pytest.fail(f"salt-call did not answer with state results: {out[-3000:]}")
    assert isinstance(results, dict), f"salt-call failed before running states: {results}"
    return results


def changed(results: dict[str, dict]) -> dict[str, dict]:
    """The states that would change (test mode) or changed, with their changes."""
    return {key: r["changes"] for key, r in results.items() if r["changes"] or r["result"] is not True}


def failed(results: dict[str, dict]) -> dict[str, str]:
    return {key: r["comment"] for key, r in results.items() if r["result"] is False}


@pytest.fixture
def max_dams_restored(stack):
    """max_dams as the container had it, put back after the test applied another value."""
    before = stack.get_max_dams_raw()
    yield before
    stack.set_max_dams_raw(before)


def test_a_configured_container_has_nothing_to_change(stack):
    results = state_apply(stack, "test=True")
    assert not failed(results), failed(results)
    assert not changed(results), f"test=True on a configured container reports changes: {changed(results)}"


def test_a_changed_worker_count_shows_as_the_files_it_rewrites(stack):
    processes = int(stack.env("web")["ASGI_PROCESSES"])
    results = state_apply(stack, "test=True", env={"ASGI_PROCESSES": str(processes + 1)})
    assert not failed(results), failed(results)
    ids = {key.split("_|-")[1] for key in changed(results)}
    # the config check runs because nginx.conf changes (onchanges): the next apply runs it too
    assert ids == {"tethys-nginx-conf", "tethys-nginx-conf-valid", "tethys-supervisord-conf",
                   "tethys-supervisord-health-targets"}, changed(results)
    assert f"asgi-{processes + 1}.sock" in results[next(k for k in results if "health-targets" in k)]["changes"]["diff"]


def test_test_mode_reports_exactly_what_the_next_apply_changes(stack, max_dams_restored):
    current = max_dams_restored
    wanted = str(int(current) + 5 if str(current or "").isdigit() else 4321)
    env = {"DAM_INVENTORY_MAX_DAMS": wanted}

    predicted = state_apply(stack, "test=True", env=env)
    assert not failed(predicted), failed(predicted)
    assert changed(predicted) == {MAX_DAMS_STATE: {
        "dam_inventory:max_dams": {"old": None if current in (None, "") else str(current), "new": wanted}}}
    assert predicted[MAX_DAMS_STATE]["result"] is None
    assert str(stack.get_max_dams_raw() or "") == str(current or ""), "test=True changed max_dams"

    applied = state_apply(stack, env=env)
    assert not failed(applied), failed(applied)
    assert changed(applied) == changed(predicted)
    assert str(stack.get_max_dams_raw()) == wanted

    again = state_apply(stack, "test=True", env=env)
    assert not changed(again), f"changes left after the apply: {changed(again)}"


def test_web_states_create_nothing_in_the_database(stack):
    results = state_apply(stack, "test=True")
    functions = {key.split("_|-")[0] + "." + key.split("_|-")[-1] for key in results}
    # web's own writes are settings rows (the app's, the site's); the rest only look
    assert not {f for f in functions if f.startswith("tethys_portal.")} - {
        "tethys_portal.database_ready", "tethys_portal.app_setting", "tethys_portal.site_settings",
        "tethys_portal.backends_importable"}, sorted(functions)


def test_concurrent_applies_all_succeed(stack, max_dams_restored):
    current = max_dams_restored
    wanted = str(int(current) + 7 if str(current or "").isdigit() else 5432)
    # concurrent=True: one container's Salt otherwise refuses a second run at once; separate web
    # containers each have their own Salt, so only the database is shared, as here.
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda _: state_apply(stack, "concurrent=True", env={"DAM_INVENTORY_MAX_DAMS": wanted}),
                             range(3)))
    for results in runs:
        assert not failed(results), failed(results)
    assert str(stack.get_max_dams_raw()) == wanted
    # one of them changed it (under the apply lock), the others found it done
    changes = [changed(results).get(MAX_DAMS_STATE) for results in runs]
    assert sum(1 for c in changes if c) == 1, changes
