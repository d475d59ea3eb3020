"""Salt states for the Tethys portal's database objects: roles, the app's store database,
migrations, the portal admin, the app's persistent store and settings, GeoServer.

Salt runs in its own venv without Django, so the work happens in the portal's venv: each state
hands its step to portal_setup.py (images/web/), which can inspect a step (report the changes it
would make) or apply it. Secrets never pass through here: portal_setup reads them from the
environment this salt-call inherited.

Every state inspects first and changes nothing when nothing differs. To keep a restart quick,
the first state of a run inspects all tethys_portal states of the run at once (one Django start)
and the later ones read that answer; applying a step re-inspects the others in the same process,
since a step can depend on another (a link on its service). With test=True no step is applied:
each state returns result None and the changes the next apply would make.
"""

import json
import logging
import os
import subprocess

log = logging.getLogger(__name__)

__virtualname__ = "tethys_portal"


# Salt's loader injects these into the module while a state runs.
def _opts():
    return __opts__  # noqa: F821


def _context():
    return __context__  # noqa: F821


def _low():
    return __low__  # noqa: F821


def _lowstate():
    return __lowstate__  # noqa: F821

_RESULTS = "tethys_portal.results"
_PENDING = "tethys_portal.pending"


def __virtual__():
    return __virtualname__


# state function -> (portal_setup step, its parameters from the state's arguments)
_STEPS = {
    "database_ready": ("wait_db", lambda a: {
        "host": a["name"], "port": int(a["port"]), "username": a["username"], "dbname": a["dbname"],
        "timeout": a["timeout"]}),
    "database_roles": ("db_roles", lambda a: {
        "name": a["name"], "host": a["host"], "port": int(a["port"]), "username": a["username"],
        "superuser": a["superuser"], "admin_user": a["admin_user"]}),
    "backup_role": ("backup_role", lambda a: {
        "host": a["host"], "port": int(a["port"]), "username": a["name"], "admin_user": a["admin_user"]}),
    "store_database": ("store_database", lambda a: {
        "name": a["name"], "host": a["host"], "port": int(a["port"]), "owner": a["owner"],
        "admin_user": a["admin_user"]}),
    "migrated": ("migrate", lambda a: {}),
    "portal_admin": ("portal_admin", lambda a: {"name": a["name"], "email": a.get("email") or ""}),
    "persistent_store_service": ("persistent_store_service", lambda a: {
        "name": a["name"], "host": a["host"], "port": int(a["port"]), "username": a["username"]}),
    "persistent_store_linked": ("persistent_store_link", lambda a: {
        "app": a["app"], "setting": a["name"], "service": a["service"]}),
    "persistent_store_synced": ("persistent_store_synced", lambda a: {"app": a["app"], "setting": a["name"]}),
    "app_setting": ("app_setting", lambda a: {"app": a["app"], "name": a["name"], "value": str(a["value"])}),
    "site_settings": ("site_settings", lambda a: {}),
    "backends_importable": ("backends_importable", lambda a: {"variable": a["name"], "backends": list(a["backends"])}),
    "spatial_dataset_service": ("spatial_dataset_service", lambda a: {
        "name": a["name"], "endpoint": a["endpoint"], "public_endpoint": a.get("public_endpoint") or "",
        "username": a["username"], "app": a.get("app") or "", "setting": a.get("setting") or ""}),
}


def _entry(fun, args):
    step, params = _STEPS[fun]
    return {"id": args["__id__"], "step": step, "params": params(args)}


def _run_steps():
    """Every tethys_portal state of this run, in the run's order (this state's alone when Salt
    gives no list, as when it is called on its own)."""
    entries = []
    for chunk in _lowstate() or []:
        if chunk.get("state") == __virtualname__ and chunk.get("fun") in _STEPS:
            try:
                entries.append(_entry(chunk["fun"], chunk))
            except (KeyError, TypeError, ValueError):
                # a chunk with bad arguments fails as its own state; it is not inspected here
                continue
    return entries


def _portal_setup(command, steps, step_id=""):
    """Runs portal_setup.py in the portal's venv; its results by state id."""
    argv = [_opts().get("tethys_portal_setup", "tethys-portal-setup"), command, *([step_id] if step_id else []),
            "--json"]
    proc = subprocess.run(argv, input=json.dumps({"steps": steps}), capture_output=True, text=True,
                          env=os.environ.copy(), check=False)
    if proc.stderr.strip():
        log.debug("portal_setup %s %s: %s", command, step_id, proc.stderr.strip())
    try:
        return json.loads(proc.stdout)["results"]
    except (ValueError, KeyError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {entry["id"]: {"error": f"portal_setup {command} failed (exit {proc.returncode}): {tail}"}
                for entry in steps}


def _steps_with(own):
    steps = _run_steps()
    if own["id"] not in [entry["id"] for entry in steps]:
        steps.append(own)
    return steps


def _inspected(own, fresh=False):
    results = _context().setdefault(_RESULTS, {})
    if fresh or own["id"] not in results:
        results.update(_portal_setup("inspect", _steps_with(own)))
    return results.get(own["id"]) or {"error": "portal_setup returned no result for this state"}


def _state(fun, args):
    ret = {"name": args["name"], "result": False, "changes": {}, "comment": ""}
    own = _entry(fun, args)
    found = _inspected(own)
    if "error" in found and not _opts()["test"]:
        # inspected before a step this one depends on was applied: look again
        found = _inspected(own, fresh=True)
    if "error" in found:
        if _opts()["test"] and _context().get(_PENDING):
            ret.update(result=None, comment=f"not inspectable before the changes above are made: {found['error']}")
        else:
            ret["comment"] = found["error"]
        return ret
    if not found["changes"]:
        ret.update(result=True, comment=found["comment"])
        return ret
    if _opts()["test"]:
        _context()[_PENDING] = True
        ret.update(result=None, changes=found["changes"], comment=found["comment"])
        return ret
    results = _portal_setup("apply", _steps_with(own), own["id"])
    _context().setdefault(_RESULTS, {}).update(results)
    done = results.get(own["id"]) or {"error": "portal_setup returned no result for this state"}
    if "error" in done:
        ret["comment"] = done["error"]
        return ret
    ret.update(result=True, changes=done["changes"], comment=done["comment"])
    return ret


def database_ready(name, port, username, dbname, timeout):
    """The database server NAME:PORT answers (waits up to TIMEOUT seconds)."""
    return _state("database_ready", dict(locals(), __id__=_low()["__id__"]))


def database_roles(name, host, port, username, superuser, admin_user):
    """The portal database NAME owned by USERNAME, and the role SUPERUSER with a database of
    its name, set up as ADMIN_USER when a login with their passwords fails."""
    return _state("database_roles", dict(locals(), __id__=_low()["__id__"]))


def backup_role(name, host, port, admin_user):
    """The backup role NAME: logs in, reads every table, changes nothing (made as ADMIN_USER)."""
    return _state("backup_role", dict(locals(), __id__=_low()["__id__"]))


def store_database(name, host, port, owner, admin_user):
    """An app's persistent store database NAME owned by the role OWNER, with PostGIS, made as
    ADMIN_USER (the store role may create no database)."""
    return _state("store_database", dict(locals(), __id__=_low()["__id__"]))


def migrated(name):
    """The portal database has every migration applied."""
    return _state("migrated", dict(locals(), __id__=_low()["__id__"]))


def portal_admin(name, email=""):
    """The portal superuser NAME exists (created once; its password is then its owner's)."""
    return _state("portal_admin", dict(locals(), __id__=_low()["__id__"]))


def persistent_store_service(name, host, port, username):
    """A PostgreSQL persistent store service NAME logging in as USERNAME."""
    return _state("persistent_store_service", dict(locals(), __id__=_low()["__id__"]))


def persistent_store_linked(name, app, service):
    """The persistent store setting NAME of APP is linked to the service SERVICE."""
    return _state("persistent_store_linked", dict(locals(), __id__=_low()["__id__"]))


def persistent_store_synced(name, app):
    """The database of APP's persistent store setting NAME exists and is initialized."""
    return _state("persistent_store_synced", dict(locals(), __id__=_low()["__id__"]))


def app_setting(name, app, value):
    """APP's custom setting NAME has VALUE."""
    return _state("app_setting", dict(locals(), __id__=_low()["__id__"]))


def site_settings(name):
    """The portal's site and branding settings are those of the environment's SITE_VARIABLES
    (portal_setup.py names them: the official image's SITE_TITLE, PRIMARY_COLOR...)."""
    return _state("site_settings", dict(locals(), __id__=_low()["__id__"]))


def backends_importable(name, backends):
    """Every authentication backend of BACKENDS (from the variable NAME) can be imported."""
    return _state("backends_importable", dict(locals(), __id__=_low()["__id__"]))


def spatial_dataset_service(name, endpoint, username, public_endpoint="", app="", setting=""):
    """GeoServer at ENDPOINT registered as the spatial dataset service NAME, and linked to APP's
    spatial dataset service SETTING when both are given."""
    return _state("spatial_dataset_service", dict(locals(), __id__=_low()["__id__"]))
