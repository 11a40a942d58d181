"""A progress bar on long runs, on a terminal only: pipes and CI logs stay clean."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO, TypeVar

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
