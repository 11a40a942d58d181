"""A progress bar on long runs, on a terminal only: pipes and CI logs stay clean."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO, TypeVar

import click

T = TypeVar("T")

MIN_ITEMS = 20
"""Below this many files a run is quick enough that a bar would only flicker."""


def wants_progress(stream: TextIO, count: int) -> bool:
    isatty = getattr(stream, "isatty", None)
    return count >= MIN_ITEMS and callable(isatty) and bool(isatty())


@contextlib.contextmanager
def progress(items: Sequence[T], label: str, stream: TextIO | None = None) -> Iterator[Iterator[T]]:
    """Iterate over `items`, drawing a bar on `stream` (stderr) when it is a terminal."""
    stream = stream or sys.stderr
    if not wants_progress(stream, len(items)):
        yield iter(items)
        return
    with click.progressbar(items, label=label, file=stream, show_pos=True) as bar:
        yield iter(bar)


class ListingProgress:
    """Counts of what a long listing has read so far, on one self-overwriting line of a
    terminal's standard error; nothing in a pipe or CI log."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._shown = False

    def say(self, text: str) -> None:
        if self.enabled:
            click.echo(f"\r\033[Klisting: {text}", nl=False, err=True)
            self._shown = True

    def counted(self, items: Iterator[Any], what: str, every: int = 500) -> Iterator[Any]:
        for count, item in enumerate(items, start=1):
            if count % every == 0:
                self.say(f"{count} {what}")
            yield item

    def done(self) -> None:
        if self._shown:
            click.echo("\r\033[K", nl=False, err=True)
            self._shown = False
