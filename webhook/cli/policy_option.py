"""The `--config` option every command shares, and loading the policy with a clear error."""

from __future__ import annotations

from pathlib import Path

import click

from webhook.cli.errors import fail
from webhook.config.policy_file import PolicyFileError, load_policy
from webhook.core.policy import Policy
from webhook.core.policy_advice import policy_advice
from webhook.core.wording import sentence

config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="EGRESS_GUARD_CONFIG",
    help="Policy file [default: $EGRESS_GUARD_CONFIG, else the embedded example].",
)


def load_policy_or_exit(path: Path | None, *, advise: bool = False) -> Policy:
    """The policy, or exit 2 with the loader's message (file, line and field). With `advise`,
    what the file allows that it likely should not is said on standard error."""
    try:
        policy = load_policy(path)
    except PolicyFileError as err:
        fail(str(err))
    if advise:
        for finding in policy_advice(policy):
            click.echo(f"warning: policy: {sentence(finding)}", err=True)
    return policy
