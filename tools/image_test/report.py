"""Progress lines, commands run with their output shown on failure, and the checks' tally."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

STARTED = time.monotonic()


class Failed(Exception):
    """A step that the rest cannot go on without failed; the message says which and why."""


def _clock() -> str:
    seconds = int(time.monotonic() - STARTED)
    return f"{seconds // 60:2d}:{seconds % 60:02d}"


def step(title: str) -> None:
    print(f"\n[{_clock()}] == {title}", flush=True)


def note(text: str) -> None:
    print(f"[{_clock()}]    {text}", flush=True)


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
    check: bool = True,
    timeout: float = 1800,
) -> str:
    """Run a command; its output streams (or, when quiet, is shown only if it fails)."""
    shown = " ".join(command)
    output = ""
    if not quiet:
        note(f"$ {shown}")
        returncode = subprocess.run(command, env=env, check=False, timeout=timeout).returncode
    else:
        captured = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
        returncode, output = captured.returncode, captured.stdout
        if returncode != 0 and check:
            sys.stdout.write(captured.stdout + captured.stderr)
    if check and returncode != 0:
        raise Failed(f"`{shown}` exited {returncode}")
    return output


@dataclass
class Tally:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed.append(what)
            note(f"ok    {what}{f' ({detail})' if detail else ''}")
        else:
            self.failed.append(f"{what}{f': {detail}' if detail else ''}")
            note(f"FAIL  {what}{f': {detail}' if detail else ''}")
        return ok

    def figure(self, name: str, value: str) -> None:
        self.figures[name] = value
        note(f"      {name}: {value}")
