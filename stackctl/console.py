"""Progress and errors of stackctl: progress goes to stderr (stdout stays usable by callers),
and every failure is a StackError whose message says what to do next."""

import sys
import time


class StackError(Exception):
    """A failure the operator can act on; the message says how."""


_tag = "stackctl"


def set_tag(tag: str) -> None:
    """Name the command in front of every progress line."""
    global _tag
    _tag = tag


def say(message: str) -> None:
    print(f"[{_tag}] {message}", file=sys.stderr, flush=True)


class Ticker:
    """Prints a line when a long wait's state changes, and every `every` seconds anyway, so a
    slow step still shows it is alive."""

    def __init__(self, every: float = 15.0):
        self.every = every
        self.started = time.monotonic()
        self._last_line = None
        self._last_time = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, line: str) -> None:
        now = self.elapsed
        if line != self._last_line or now - self._last_time >= self.every:
            say(f"{now:.0f}s: {line}")
            self._last_line, self._last_time = line, now
