"""Calls of the docker CLI: the one way stackctl and the tests reach the engine."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from stackctl.console import StackError

DOCKER_MISSING = (
    "Docker is not usable here (`docker info` fails): install and start Docker Engine, or check "
    "that you may use it (group docker)"
)


def run(argv, *, check: bool = True, timeout: float = 300, input: str | bytes | None = None,
        env: dict[str, str] | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    """Runs a command; with check, a failure raises StackError with its output's tail."""
    text = not isinstance(input, bytes)
    try:
        proc = subprocess.run(
            [str(a) for a in argv], input=input, text=text, timeout=timeout, env=env,
            capture_output=capture, stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"`{shlex.join(map(str, argv))}` did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        tail = ""
        if capture:
            tail = f"\n{(proc.stderr or '')[-2000:]}{(proc.stdout or '')[-1000:]}"
        raise StackError(f"`{shlex.join(map(str, argv))}` failed (exit {proc.returncode}){tail}")
    return proc


def docker(*args, **kw) -> subprocess.CompletedProcess:
    return run(["docker", *args], **kw)


def usable() -> bool:
    if not shutil.which("docker"):
        return False
    return run(["docker", "info"], check=False, timeout=60).returncode == 0


def require() -> None:
    if not usable():
        raise StackError(DOCKER_MISSING)


def inspect(*ids: str) -> list[dict]:
    return json.loads(docker("inspect", *ids).stdout) if ids else []


def image_exists(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def image_label(image: str, label: str) -> str | None:
    proc = docker("image", "inspect", "-f", f'{{{{ index .Config.Labels "{label}" }}}}', image, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_id(image: str) -> str:
    proc = docker("image", "inspect", "-f", "{{.Id}}", image, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def image_size_mb(image: str) -> float:
    return int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout) / 1e6


def container_state(cid: str) -> str:
    """healthy, starting, unhealthy, running (no healthcheck), exited, restarting, created,
    dead, or missing."""
    proc = docker("inspect", "-f", "{{json .State}}", cid, check=False)
    if proc.returncode != 0:
        return "missing"
    state = json.loads(proc.stdout)
    if state["Status"] != "running":
        return state["Status"]
    return (state.get("Health") or {}).get("Status", "running")


def exit_code(cid: str) -> int | None:
    """The exit code of a container that has exited (None while it runs or when missing)."""
    proc = docker("inspect", "-f", "{{json .State}}", cid, check=False)
    if proc.returncode != 0:
        return None
    state = json.loads(proc.stdout)
    return None if state["Status"] in ("running", "restarting", "created") else int(state["ExitCode"])


def restart_count(cid: str) -> int:
    proc = docker("inspect", "-f", "{{.RestartCount}}", cid, check=False)
    return int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0


def logs_tail(cid: str, lines: int = 25) -> str:
    proc = docker("logs", "--tail", str(lines), cid, check=False)
    return (proc.stdout or "") + (proc.stderr or "")


def processes(cid: str) -> list[tuple[int, str]]:
    """(host pid, command line) of every process in the container."""
    procs = []
    for line in docker("top", cid, "-eo", "pid,args").stdout.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            procs.append((int(pid), args.strip()))
    return procs


def asgi_workers(cid: str, procs: list[tuple[int, str]] | None = None) -> dict[int, int]:
    """Worker number (1-based, as in the X-Asgi-Worker header) -> host pid of that ASGI server
    (daphne or uvicorn) in container `cid`. `procs`: its processes when the caller has just
    read them."""
    return workers_among(processes(cid) if procs is None else procs)


def workers_among(procs: list[tuple[int, str]]) -> dict[int, int]:
    """Worker number -> pid among (pid, command line) pairs, read from each worker's own socket
    path (asgi-<N>.sock)."""
    workers = {}
    for pid, args in procs:
        endpoint = worker_endpoint(args)
        match = endpoint and re.search(r"asgi-(\d+)\.sock$", endpoint[0])
        if match and not args.startswith(("sh ", "/bin/sh ", "bash ")):
            workers[int(match.group(1))] = pid
    return workers


# How a worker's command line names its socket and listen backlog: daphne takes a Twisted
# endpoint (unix:PATH:backlog=N), uvicorn two options (--uds PATH, --backlog N).
DAPHNE_ENDPOINT = re.compile(r"\bdaphne\b.*\bunix:([^:\s]+):backlog=(\d+)")
UVICORN_SOCKET, UVICORN_BACKLOG = re.compile(r"\buvicorn\b.*--uds[ =](\S+)"), re.compile(r"--backlog[ =](\d+)")


def worker_endpoint(args: str) -> tuple[str, int] | None:
    """(socket path, listen backlog) of an ASGI worker's command line; None if it is none."""
    if match := DAPHNE_ENDPOINT.search(args):
        return match.group(1), int(match.group(2))
    socket, backlog = UVICORN_SOCKET.search(args), UVICORN_BACKLOG.search(args)
    if socket and backlog:
        return socket.group(1), int(backlog.group(1))
    return None


def rss_kib(pid: int) -> int:
    """Resident memory of a host pid (a container's processes are host processes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
