"""`python -m stackctl COMMAND`: the stack's operations (the Makefile's targets call these).

The stack acted on is named by COMPOSE_PROJECT_NAME, ENV_DIR, WEB_BIND and WEB_PORT
(default: dam-inventory, env/, 127.0.0.1:8080), so a second stack can run beside the first.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from stackctl import console, docker, envfiles, images
from stackctl.compose import Compose
from stackctl.console import StackError, say
from stackctl.lifecycle import clean, up, welcome
from stackctl.settings import Stack

DELEGATED = {
    "bench": "fan-out benchmark: ours against the Tethys docs' setup",
    "measure": "first start, restart and stop times of web",
    "pageweight": "the home page's weight and load time with 1,000 dams, cold and warm cache",
    "dev": "run the portal with the app locally, without Docker",
    "test": "every test suite (one pytest run); arguments go to pytest",
    "swarm": "the stack on Docker Swarm: swarm up | down | clean (WEB_REPLICAS web tasks)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackctl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("up", help="build what is missing, start the stack, wait until it is healthy")
    sub.add_parser("down", help="stop the stack (data volumes are kept)")
    p = sub.add_parser("clean", help="remove the stack AND its data volumes")
    p.add_argument("--confirm", action="store_true", help="really delete (otherwise: only list)")
    sub.add_parser("env", help="write the env files and secrets (make up does it too)")
    sub.add_parser("images", help="build or pull every image")
    p = sub.add_parser("compose", help="run compose for this stack: compose ARGS...")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("backup", help="the databases and the data volumes to an archive in BACKUP_DIR")
    p.add_argument("--keep-daily", default=os.environ.get("KEEP_DAILY"),
                   help="then keep the newest archive of this many days (KEEP_DAILY; default: backup.env's)")
    p.add_argument("--keep-weekly", default=os.environ.get("KEEP_WEEKLY"),
                   help="and of this many ISO weeks (KEEP_WEEKLY; default: backup.env's)")
    p = sub.add_parser("restore", help="load an archive of `backup` into the running stack")
    p.add_argument("file", nargs="?", default=os.environ.get("FILE") or "")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("RESTORE_TIMEOUT", "300")))
    # Commands whose code lives in their own module and parses its own arguments.
    for name, help_text in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compose"]:  # everything after it is compose's, options included
        console.set_tag("compose")
        try:
            docker.require()
            Compose(Stack.from_environment()).exec_interactive(*argv[1:])
        except StackError as exc:
            say(f"ERROR: {exc}")
            return 1
    if argv and argv[0] in DELEGATED:
        console.set_tag(argv[0])
        try:
            return importlib.import_module(f"stackctl.{argv[0]}").main(argv[1:])
        except StackError as exc:
            say(f"ERROR: {exc}")
            return 1
    args = parser.parse_args(argv)
    console.set_tag(args.command)
    stack = Stack.from_environment()
    try:
        if args.command == "env":
            envfiles.write_env_files(stack)
            return 0
        if args.command == "images":
            images.prepare()
            return 0
        docker.require()
        compose = Compose(stack)
        if args.command == "up":
            up(stack)
            welcome(stack)
        elif args.command == "down":
            compose("down", capture=False)
        elif args.command == "clean":
            return clean(compose, args.confirm or os.environ.get("CONFIRM") == "1")
        elif args.command == "backup":
            from stackctl.backup import backup

            print(backup(compose, args.keep_daily, args.keep_weekly))
        elif args.command == "restore":
            from stackctl.backup import restore

            if not args.file:
                raise StackError("which backup? make restore FILE=backups/<name>.tar (ls backups/)")
            restore(compose, Path(args.file), args.timeout)
        return 0
    except StackError as exc:
        say(f"ERROR: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
