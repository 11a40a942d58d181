"""Exit codes and error output shared by every command."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
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


def describe_os_error(err: Exception) -> str:
    """`Permission denied: /etc/egress-guard` rather than `[Errno 13] Permission denied: ...`; a
    file where a directory is wanted (or the reverse) is said so."""
    if isinstance(err, OSError) and err.strerror:
        where = err.filename
        if err.errno in (errno.EEXIST, errno.ENOTDIR) and where is not None:
            path = Path(where)
            file = next((p for p in (path, *path.parents) if p.is_file()), None)
            if file is not None:
                return f"{file} is a file, not a directory"
        return f"{err.strerror}: {where}" if where else err.strerror
    return str(err)


def fail_on_path(err: OSError, todo: str) -> NoReturn:
    """One line naming the path and what went wrong, and what to do; exit 2."""
    fail(f"{describe_os_error(err)}: {todo}")


def check_directory(path: Path, option: str) -> None:
    """Exit 2 when `path` exists but is no directory, or cannot be made into one here."""
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                fail(f"{parent} is a file, not a directory: give {option} a directory")
            return
