"""Static checks of the repository, each a test that fails with the tool's findings: every
shell file (shellcheck), every Python file (ruff), the Dockerfiles (hadolint), the compose file
(Compose Specification schema, `compose config` of v1 and v2 where present, compose-lint), the
YAML (yamllint) and the env examples (dotenv-linter). The tools come from .venv
(requirements-dev.txt), so every machine runs the same versions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stackctl import images
from stackctl.compose import command as compose_command
from stackctl.settings import ROOT, Stack

BIN = Path(sys.executable).parent
SKIP_DIRS = {".git", ".venv", ".local", "build", "backups", "node_modules", "__pycache__"}


def tracked_files() -> list[Path]:
    """The files of the checkout that are, or will be, committed."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def shell_files() -> list[Path]:
    """*.sh and every file whose first line names bash or sh."""
    found = []
    for path in tracked_files():
        if path.suffix == ".sh":
            found.append(path)
        elif not path.suffix:
            with path.open("rb") as f:
                first = f.readline()
            if first.startswith(b"#!") and (b"bash" in first or first.rstrip().endswith(b"/sh")):
                found.append(path)
    return found


def check(argv, *, env=None) -> None:
    proc = subprocess.run([str(a) for a in argv], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{Path(str(argv[0])).name} found problems:\n{proc.stdout}{proc.stderr}"


def test_every_shell_file_passes_shellcheck():
    files = shell_files()
    assert len(files) >= 5, f"too few shell files found: {files}"
    check([BIN / "shellcheck", "--external-sources", "--source-path=SCRIPTDIR", *files])


def test_every_python_file_passes_ruff():
    check([BIN / "ruff", "check", "--no-cache", "."])


def test_dockerfiles_pass_hadolint():
    dockerfiles = [ROOT / "Dockerfile", *sorted(ROOT.glob("images/*/Dockerfile"))]
    check([BIN / "hadolint", "--no-color", *dockerfiles])


def test_compose_file_matches_the_compose_specification():
    check([BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"])


def test_compose_file_passes_compose_lint():
    check([BIN / "compose-lint", "docker-compose.yml"])


def test_yaml_passes_yamllint():
    check([BIN / "yamllint", "--strict", "."])


def test_env_examples_pass_dotenv_linter():
    check([BIN / "dotenv-linter", *sorted(ROOT.glob("env/*.env.example"))])


def test_compose_config_is_valid(tmp_path):
    """`compose config` resolves the file with the env examples (never anyone's secrets)."""
    env_dir = tmp_path / "env"
    (env_dir / "secrets").mkdir(parents=True)
    for example in ROOT.glob("env/*.env.example"):
        (env_dir / example.name.removesuffix(".example")).write_text(example.read_text())
    variables = Stack(project="lint", env_dir=env_dir).compose_variables()
    env = {**os.environ, **images.compose_variables(), **variables, "COMPOSE_PROFILES": "geoserver"}
    check([*compose_command(), "--project-name", "lint", "--file", "docker-compose.yml", "config", "-q"], env=env)
