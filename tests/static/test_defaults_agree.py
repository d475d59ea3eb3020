"""Every default of the web container lives in salt/defaults.yaml. The Dockerfile's ENV repeats
a few of them (paths needed outside Salt, and ASGI_PROCESSES / CHANNEL_LAYERS_* as the official
image shows them), and env/web.env.example shows most: both must say what defaults.yaml says,
read the way salt/map.jinja reads the environment (typed like the default)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((ROOT / "salt" / "defaults.yaml").read_text())

# Keys of the example that `python -m stackctl env` rewrites for each stack (from WEB_BIND and
# WEB_PORT), so the example may show another stack's values; none differ today.
STACK_SPECIFIC = {"ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS"}
# The Dockerfile sets these in the image, and they must be there: a running image without them
# would lose the worker count and channel layer the official image documents.
REQUIRED_IN_IMAGE = {"ASGI_PROCESSES", "CHANNEL_LAYERS_BACKEND", "CHANNEL_LAYERS_CONFIG"}


def as_map_reads(raw: str, default):
    """A value from the environment as salt/map.jinja types it after its default."""
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, list):
        raw = raw.strip()
        if raw[:1] in ("'", '"') and raw[-1:] == raw[:1]:
            raw = raw[1:-1].strip()
        if raw.startswith("["):
            return list(yaml.safe_load(raw))
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def dockerfile_env() -> dict[str, str]:
    """The runtime stage's ENV instruction(s) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    values = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line[4:], comments=True):
                key, _, value = word.partition("=")
                values[key] = value
    return values


def example_values() -> dict[str, str]:
    """KEY=VALUE lines of env/web.env.example, including the commented-out optional knobs
    ("# KEY=value"), which show the image's defaults."""
    values = {}
    for line in (ROOT / "env" / "web.env.example").read_text().splitlines():
        line = line.strip()
        if line.startswith("# ") and "=" in line and line[2:].split("=", 1)[0].isupper():
            line = line[2:]
        key, sep, value = line.partition("=")
        if sep and key.isupper() and key.replace("_", "").isalnum():
            values[key] = value
    return values


def test_the_image_sets_what_the_product_requires():
    assert REQUIRED_IN_IMAGE <= dockerfile_env().keys()


def test_the_dockerfile_env_agrees_with_defaults_yaml():
    shared = {key: raw for key, raw in dockerfile_env().items() if key in DEFAULTS}
    assert REQUIRED_IN_IMAGE <= shared.keys()
    differ = {key: (raw, DEFAULTS[key]) for key, raw in shared.items() if as_map_reads(raw, DEFAULTS[key]) != DEFAULTS[key]}
    assert not differ, f"Dockerfile ENV (value, defaults.yaml) differ: {differ}"


def test_the_env_example_agrees_with_defaults_yaml():
    shared = {key: raw for key, raw in example_values().items() if key in DEFAULTS and key not in STACK_SPECIFIC}
    assert len(shared) >= 15, f"the example shows few defaults: {sorted(shared)}"
    differ = {key: (raw, DEFAULTS[key]) for key, raw in shared.items() if as_map_reads(raw, DEFAULTS[key]) != DEFAULTS[key]}
    assert not differ, f"env/web.env.example (value, defaults.yaml) differ: {differ}"


def test_every_variable_of_the_example_is_known_to_salt():
    """A variable the example documents but no default names would be read by nothing."""
    secrets_by_file = {key[: -len("_FILE")] for key in example_values() if key.endswith("_FILE")}
    # read by the app itself, not by the container's configuration
    app_own = {"DAM_INVENTORY_FANOUT"}
    unknown = set(example_values()) - set(DEFAULTS) - {f"{k}_FILE" for k in secrets_by_file} - app_own
    assert not unknown, f"env/web.env.example names variables salt/defaults.yaml does not: {sorted(unknown)}"
    assert secrets_by_file <= DEFAULTS.keys()
