"""The one "did you mean" of egress-guard: the server's messages, `explain` and `render` all ask
it, so they can never disagree about what is close to a mistyped name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.7
"""difflib's similarity ratio below which a name is not offered: `strpe` gets `stripe`,
`nosuchprofile` gets nothing."""


def closest(value: str, names: Iterable[str]) -> str | None:
    """The defined name closest to `value`, or None when none is close enough to suggest."""
    match = difflib.get_close_matches(value, list(names), cutoff=CUTOFF)  # best first
    return match[0] if match else None
