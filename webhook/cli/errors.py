"""Exit codes and error output shared by every command."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

EXIT_OK = 0
EXIT_DENIED = 1
"""Something was denied (or failed a check): CI should fail the build."""
EXIT_USAGE = 2
"""Usage or input error, as click itself uses: told apart from a denial."""


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
