"""Execution module: the official image's settings that carry structure (OTHER_SETTINGS, its
catch-all for Django settings, and OAUTH_OPTIONS), read the way it reads them.

The official tethys-core image appends OTHER_SETTINGS to its `tethys settings` command, so its
value is a run of `--set KEY VALUE` options: KEY a setting, dotted for a nested one
(`SESSION_CONFIG.SECURITY_EXPIRE_AFTER`), VALUE read as YAML (`1800`, `true`, `'[a, b]'`).
The same value works here. It is applied over every other setting of portal_config.yml, at
every start. Anything else stops the start with a message that names OTHER_SETTINGS: a
half-understood catch-all must not leave a half-configured portal.
"""

import copy
import shlex

import yaml
from salt.exceptions import CommandExecutionError

OPTION = "--set"


def _fail(problem):
    raise CommandExecutionError(
        f"OTHER_SETTINGS {problem}; write it as the official image takes it: "
        "--set KEY VALUE [--set KEY VALUE ...] (KEY may be dotted, VALUE is YAML)")


def parse(raw):
    """[(dotted key, value)] of OTHER_SETTINGS, in order."""
    try:
        words = shlex.split(raw or "")
    except ValueError as exc:
        _fail(f"cannot be split into words ({exc})")
    if len(words) % 3:
        _fail(f"has {len(words)} words, not a multiple of 3")
    pairs = []
    for option, key, value in zip(words[0::3], words[1::3], words[2::3]):
        if option != OPTION:
            _fail(f"has {option!r} where {OPTION} belongs")
        if not key or not all(part.replace("_", "").isalnum() for part in key.split(".")):
            _fail(f"names no setting in {key!r}")
        try:
            pairs.append((key, yaml.safe_load(value)))
        except yaml.YAMLError as exc:
            _fail(f"gives {key} a value that is not YAML: {value!r} ({exc})")
    return pairs


def merged(settings, raw):
    """A copy of SETTINGS (portal_config.yml's `settings`) with OTHER_SETTINGS applied."""
    result = copy.deepcopy(settings)
    for key, value in parse(raw):
        *parents, last = key.split(".")
        node = result
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                _fail(f"sets {key}, but {part} is not a mapping")
            node = child
        node[last] = value
    return result


def mapping(variable, raw):
    """VARIABLE's value, a YAML mapping ({} when empty); anything else stops the start."""
    raw = (raw or "").strip()
    if raw[:1] in ("'", '"') and raw[-1:] == raw[:1]:  # quoted once more, as the official docs do
        raw = raw[1:-1].strip()
    if not raw:
        return {}
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise CommandExecutionError(f"{variable} is not YAML ({exc})") from exc
    if not isinstance(value, dict):
        raise CommandExecutionError(f"{variable} must be a mapping such as {{KEY: value, ...}}, "
                                    f"not {type(value).__name__}")
    return value
