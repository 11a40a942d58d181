"""The `--config` option every command shares, and loading the policy with a clear error."""

from __future__ import annotations

from pathlib import Path

import click

from webhook.cli.errors import fail
from webhook.config.policy_file import PolicyFileError, load_policy
from webhook.core.policy import Policy

config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="EGRESS_GUARD_CONFIG",
    help="Policy file [default: $EGRESS_GUARD_CONFIG, else the embedded example].",
)


def load_policy_or_exit(path: Path | None) -> Policy:
    """The policy, or exit 2 with the loader's message (file, line and field)."""
    try:
        return load_policy(path)
    except PolicyFileError as err:
        fail(str(err))
