"""No secret of the env files is baked into any image the stack runs: not in a layer's files,
not in the build history (ARG/RUN lines), not in the image config (ENV, labels)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from stackctl.docker import inspect as docker_inspect
from stackctl.docker import run
from stackctl.envfiles import read_env_file, resolve
from stackctl.settings import ROOT, TEST_STACK

ENV_DIR = TEST_STACK.env_dir
# Env keys whose values are secrets; shorter values ("postgres", ports) would match anywhere.
SECRET_KEY_RE = re.compile(r"(PASSWORD|_PASS|SECRET|SECRET_KEY|TOKEN|PRIVATE_KEY)$")
MIN_SECRET_LEN = 8

CHUNK = 8 * 1024 * 1024


def secret_values(dirs: list[Path]) -> dict[str, str]:
    """{value: where} for every secret of the env files and secret files in `dirs`."""
    found: dict[str, str] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.env")):
            values = read_env_file(path)
            for key in values:
                name = key.removesuffix("_FILE")
                value = resolve(values, name) if SECRET_KEY_RE.search(name) else None
                if value and len(value) >= MIN_SECRET_LEN:
                    found[value] = f"{path.relative_to(ROOT)}:{name}"
        for path in sorted((directory / "secrets").glob("*")):
            if path.is_file() and not path.name.startswith("."):
                value = path.read_text().strip()
                if len(value) >= MIN_SECRET_LEN:
                    found.setdefault(value, str(path.relative_to(ROOT)))
    return found


@pytest.fixture(scope="module")
def secrets_to_find():
    # the test stack's secrets, and the default stack's if it was generated on this machine
    # (an image built for `make up` would have been built while those existed)
    found = secret_values([ENV_DIR, ROOT / "env"])
    assert found, f"no secret values found in {ENV_DIR}/*.env: were the env files generated?"
    return found


@pytest.fixture(scope="module")
def stack_images(stack):
    images = {}
    for service, cid in stack.containers().items():
        info = docker_inspect(cid)[0]
        images[info["Image"]] = f"{service} ({info['Config']['Image']})"
    assert images
    return images


def _leaks(text, secrets):
    return [where for value, where in secrets.items() if value in text]


def test_no_secret_in_image_config(stack_images, secrets_to_find):
    for image, label in stack_images.items():
        config = json.dumps(docker_inspect(image)[0])
        assert not _leaks(config, secrets_to_find), f"image of {label}: config holds {_leaks(config, secrets_to_find)}"


def test_no_secret_in_build_history(stack_images, secrets_to_find):
    for image, label in stack_images.items():
        history = run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image]).stdout
        assert not _leaks(history, secrets_to_find), f"image of {label}: history holds {_leaks(history, secrets_to_find)}"


def _scan_stream(argv, needles):
    """Searches a command's stdout for byte strings, chunk by chunk, without keeping it."""
    needles = {n.encode(): where for n, where in needles.items()}
    overlap = max(len(n) for n in needles)
    hits = set()
    total = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        tail = b""
        while True:
            chunk = proc.stdout.read(CHUNK)
            if not chunk:
                break
            total += len(chunk)
            window = tail + chunk
            for needle, where in needles.items():
                if needle in window:
                    hits.add(where)
            tail = window[-overlap:]
        rc = proc.wait(timeout=600)
    assert rc == 0, f"{' '.join(argv)} exited {rc}"
    return hits, total


def test_no_secret_in_any_image_layer(stack_images, secrets_to_find):
    # `docker save` writes the layers as plain (uncompressed) tars inside a tar, so a file that
    # holds a secret in any layer, even one deleted by a later layer, shows it verbatim.
    for image, label in stack_images.items():
        hits, total = _scan_stream(["docker", "save", image], secrets_to_find)
        assert total > 1_000_000, f"docker save {label} gave only {total} bytes"
        assert not hits, f"image of {label}: a layer holds {sorted(hits)}"


def test_no_secret_in_any_container_environment(stack, secrets_to_find):
    # secrets reach the containers as files (Docker secrets, NAME_FILE), so `docker inspect`
    # of a running container shows none of them either
    for service, cid in stack.containers().items():
        env = "\n".join(docker_inspect(cid)[0]["Config"]["Env"] or [])
        assert not _leaks(env, secrets_to_find), f"{service}'s environment holds {_leaks(env, secrets_to_find)}"


# Every process's environment, as the container's own user reads it (a process of another uid
# is unreadable once capabilities are dropped: the pids actually read are checked below).
ENVIRON_DUMP = r"""
for d in /proc/[0-9]*; do
  if env=$(tr '\0' '\n' <"$d/environ" 2>/dev/null); then printf '@@@ %s\n%s\n' "${d#/proc/}" "$env"; fi
done
"""


@pytest.mark.parametrize("service", ["edge", "web", "db", "redis"])
def test_no_secret_in_any_running_process_environment(stack, secrets_to_find, service):
    out = stack.exec(service, ["sh", "-c", ENVIRON_DUMP])
    read = {int(line.split()[1]) for line in out.splitlines() if line.startswith("@@@ ")}
    main_pids = {int(p) for p in stack.exec(service, ["sh", "-c", "cat /proc/1/task/1/children; echo 1"]).split()}
    assert main_pids <= read, f"{service}: the environments of pids {sorted(main_pids - read)} could not be read"
    assert not _leaks(out, secrets_to_find), f"{service}: a process environment holds {_leaks(out, secrets_to_find)}"
