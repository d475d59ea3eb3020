"""Every Salt state of the web image renders, inside the built image (the Salt and Jinja that
really run) with the working tree's salt/ mounted over the image's, and no network: once with
the defaults and once with every optional branch on (GeoServer, max_dams, PubSub layer, a quoted
CHANNEL_LAYERS_CONFIG, a Redis password, CDN assets, map tiles), so no branch goes unrendered.

show_sls renders each sls (Jinja + YAML) without applying it; the file templates
(portal_config.yml, nginx.conf, supervisord.conf) render only when applied, so a test=True apply
of the file states renders them too and writes nothing. The custom state and execution modules
(salt/_states/, salt/_modules/) are synced on the way and must load.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from stackctl.settings import ROOT

SALT_DIR = ROOT / "salt"
FILE_STATES = ["tethys.dirs", "tethys.portal_config", "tethys.nginx", "tethys.supervisord"]
# Dummy values only: rendering needs them present, nothing connects anywhere.
REQUIRED = {"SECRET_KEY": "render-check-only", "TETHYS_DB_PASSWORD": "x", "TETHYS_DB_SUPERUSER_PASS": "x"}
PASSES = {
    "defaults": {},
    "every optional branch": {
        "GEOSERVER_URL": "http://geoserver:8181/geoserver/rest/", "GEOSERVER_PASSWORD": "x",
        "GEOSERVER_APP_SETTING": "primary_geoserver", "DAM_INVENTORY_MAX_DAMS": "25",
        "REDIS_PASSWORD": "x", "ASGI_PROCESSES": "4", "ASGI_SERVER": "uvicorn", "ALLOWED_HOSTS": ".example.org,localhost",
        "SKIP_DB_SETUP": "true",
        "CHANNEL_LAYERS_BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CHANNEL_LAYERS_CONFIG": "\"{'hosts':[{'host': 'redis', 'port': 6379}]}\"",
        # a name (resolved at render time), a CIDR; TLS on (secure cookies, HSTS)
        "TRUSTED_PROXIES": "localhost,10.1.0.0/16", "TLS_MODE": "local",
        "FRONTEND_ASSETS": "cdn", "DAM_INVENTORY_BASE_MAP": "https://tile.example.org/{z}/{x}/{y}.png",
        "EMAIL_HOST": "smtp.example.org", "EMAIL_PORT": "587", "EMAIL_USE_TLS": "true",
        "EMAIL_HOST_USER": "portal", "EMAIL_HOST_PASSWORD": "x",
        "OTHER_SETTINGS": "--set SESSION_CONFIG.SECURITY_EXPIRE_AFTER 1800 --set MY_LIST '[a, b]'",
        "SITE_TITLE": "Dams of the Basin",
        "ADD_BACKENDS": "[social_core.backends.github.GithubOAuth2]",
        "OAUTH_OPTIONS": "\"{SOCIAL_AUTH_GITHUB_KEY: k, SOCIAL_AUTH_GITHUB_SECRET: s}\"",
    },
}


def state_names() -> list[str]:
    """salt/tethys/NAME.sls -> tethys.NAME"""
    return sorted(".".join(p.relative_to(SALT_DIR).with_suffix("").parts)
                  for p in SALT_DIR.rglob("*.sls") if p.name != "top.sls")


def salt_call(web_image: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env_args = [f"--env={key}={value}" for key, value in {**REQUIRED, **env}.items()]
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{SALT_DIR}:/srv/salt:ro", *env_args,
         web_image, "salt", "--retcode-passthrough", "--out=json", "--log-level=error", *args],
        capture_output=True, text=True, timeout=300, check=False)


def render_errors(proc: subprocess.CompletedProcess) -> str:
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or any(s in text for s in ("Rendering SLS", "rendering error", "Traceback")):
        return f"exit {proc.returncode}\n{text[-4000:]}"
    return ""


@pytest.mark.parametrize("env", PASSES.values(), ids=PASSES.keys())
def test_every_sls_renders(web_image, env):
    proc = salt_call(web_image, env, "state.show_sls", ",".join(state_names()))
    assert not render_errors(proc), render_errors(proc)
    ids = json.loads(proc.stdout)["local"]
    assert "tethys-portal-migrated" in ids and "tethys-app-store-primary_db" in ids, sorted(ids)


@pytest.mark.parametrize("env", PASSES.values(), ids=PASSES.keys())
def test_top_file_renders(web_image, env):
    proc = salt_call(web_image, env, "state.show_top")
    assert not render_errors(proc), render_errors(proc)
    # web's states at every start: files, a wait for the database, the app's settings. Roles,
    # databases, migrations and the app's store are setup.sls's (the one-shot setup service).
    assert json.loads(proc.stdout)["local"]["base"] == [f"tethys.{name}" for name in (
        "dirs", "portal_config", "nginx", "supervisord", "database", "app_settings", "site")]


# The state functions only the setup service may run: they create roles and databases,
# migrate, or write the app's store and services.
SETUP_ONLY = {"database_roles", "store_database", "migrated", "portal_admin", "persistent_store_service",
              "persistent_store_linked", "persistent_store_synced", "spatial_dataset_service"}


def _functions(proc) -> dict[str, set[str]]:
    """{state id: its tethys_portal functions} from state.show_sls / show_highstate output."""
    return {sid: {entry for entry in body.get("tethys_portal", []) if isinstance(entry, str)}
            for sid, body in json.loads(proc.stdout)["local"].items() if isinstance(body, dict)}


def test_web_states_create_and_migrate_nothing(web_image):
    proc = salt_call(web_image, {"DAM_INVENTORY_MAX_DAMS": "25"}, "state.show_highstate")
    assert not render_errors(proc), render_errors(proc)
    functions = set().union(*_functions(proc).values())
    assert functions == {"database_ready", "app_setting", "site_settings"}, functions


def test_setup_states_do_the_database_work(web_image):
    proc = salt_call(web_image, {"GEOSERVER_URL": "http://geoserver:8181/geoserver/rest/"}, "state.show_sls", "setup")
    assert not render_errors(proc), render_errors(proc)
    functions = set().union(*_functions(proc).values())
    assert SETUP_ONLY <= functions, SETUP_ONLY - functions


@pytest.mark.parametrize("env", PASSES.values(), ids=PASSES.keys())
def test_file_templates_render(web_image, env):
    proc = salt_call(web_image, env, "state.apply", ",".join(FILE_STATES), "test=True", "sync_mods=states,modules")
    assert not render_errors(proc), render_errors(proc)


def test_custom_modules_load(web_image):
    proc = salt_call(web_image, {}, "saltutil.sync_all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    synced = json.loads(proc.stdout)["local"]
    assert "states.tethys_portal" in synced["states"] and "modules.tethys_net" in synced["modules"], proc.stdout


@pytest.mark.parametrize("assets, use_npm", [("self-hosted", True), ("cdn", False), (None, True)])
def test_frontend_assets_sets_tethys_static_dependency_switch(web_image, assets, use_npm):
    settings = rendered_settings(web_image, {"FRONTEND_ASSETS": assets} if assets else {})
    assert settings["TETHYS_PORTAL_CONFIG"]["STATICFILES_USE_NPM"] is use_npm


@pytest.mark.parametrize("variable, value", [
    ("FRONTEND_ASSETS", "npm"),
    ("DAM_INVENTORY_BASE_MAP", "satellite"),
    ("DAM_INVENTORY_BASE_MAP", "https://tile.example.org/{z}/{x}.png"),
    ("ASGI_LISTEN_BACKLOG", "many"),
    ("ASGI_LISTEN_BACKLOG", "0"),
    ("ASGI_SERVER", "gunicorn"),
])
def test_a_bad_setting_stops_the_start_naming_it(web_image, variable, value):
    proc = salt_call(web_image, {variable: value}, "state.show_sls",
                     "tethys.portal_config,tethys.app_settings,tethys.supervisord")
    assert proc.returncode != 0, proc.stdout
    assert f"{variable} must be" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]


@pytest.mark.parametrize("server, command", [
    (None, "command=tethys-daphne -e unix:/run/tethys/asgi-%(process_num)d.sock:backlog=4096 "),
    ("daphne", "command=tethys-daphne -e unix:/run/tethys/asgi-%(process_num)d.sock:backlog=4096 "),
    (" Uvicorn ", "command=uvicorn --uds /run/tethys/asgi-%(process_num)d.sock --backlog 4096 "),
])
def test_asgi_server_picks_the_workers_command(web_image, server, command):
    proc = salt_call(web_image, {"ASGI_SERVER": server} if server else {}, "slsutil.renderer",
                     "salt://tethys/files/supervisord.conf.jinja", "default_renderer=jinja")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commands = [line for line in json.loads(proc.stdout)["local"].splitlines() if line.startswith("command=")]
    assert sum(line.startswith(command) for line in commands) == 1, commands


def rendered_settings(web_image, env) -> dict:
    proc = salt_call(web_image, env, "slsutil.renderer", "salt://tethys/files/portal_config.yml.jinja",
                     "default_renderer=jinja")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(json.loads(proc.stdout)["local"])["settings"]


def test_other_settings_apply_over_everything_else(web_image):
    settings = rendered_settings(web_image, {"OTHER_SETTINGS": (
        "--set SESSION_CONFIG.SECURITY_EXPIRE_AFTER 1800 --set DEBUG true --set ADMINS '[[Ops, ops@example.org]]'")})
    assert settings["SESSION_CONFIG"] == {"SECURITY_EXPIRE_AFTER": 1800}
    assert settings["DEBUG"] is True  # over the image's own value
    assert settings["ADMINS"] == [["Ops", "ops@example.org"]]


def test_email_settings_render_only_with_a_host(web_image):
    assert "EMAIL_CONFIG" not in rendered_settings(web_image, {})
    settings = rendered_settings(web_image, {"EMAIL_HOST": "smtp.example.org", "EMAIL_PORT": "587",
                                             "EMAIL_USE_TLS": "yes", "DEFAULT_FROM_EMAIL": "dams@example.org"})
    assert settings["EMAIL_CONFIG"]["EMAIL_HOST"] == "smtp.example.org"
    assert settings["EMAIL_CONFIG"]["EMAIL_PORT"] == 587 and settings["EMAIL_CONFIG"]["EMAIL_USE_TLS"] is True
    assert settings["EMAIL_CONFIG"]["DEFAULT_FROM_EMAIL"] == "dams@example.org"


@pytest.mark.parametrize("variable, value, says", [
    ("OTHER_SETTINGS", "SESSION_CONFIG 1800", "OTHER_SETTINGS has 2 words"),
    ("OTHER_SETTINGS", "--set MY_LIST '[a, b' --set X 1", "not YAML"),
    ("OTHER_SETTINGS", "--put DEBUG true", "OTHER_SETTINGS has '--put'"),
    ("OTHER_SETTINGS", "--set 'bad key' 1", "names no setting"),
    ("EMAIL_USE_TLS", "true", "EMAIL_USE_TLS and EMAIL_USE_SSL are both on"),
    ("OAUTH_OPTIONS", "{SOCIAL_AUTH_GITHUB_KEY: [x", "OAUTH_OPTIONS is not YAML"),
    ("OAUTH_OPTIONS", "[a, b]", "OAUTH_OPTIONS must be a mapping"),
])
def test_a_malformed_setting_stops_the_start_naming_it(web_image, variable, value, says):
    env = {variable: value, **({"EMAIL_USE_SSL": "true"} if variable == "EMAIL_USE_TLS" else {})}
    proc = salt_call(web_image, env, "state.show_sls", "tethys.portal_config")
    assert proc.returncode != 0, proc.stdout
    assert says in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
