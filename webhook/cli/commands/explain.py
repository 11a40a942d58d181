"""`egress-guard explain`: why a workload would be denied, or what would be injected, and what to
change."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from webhook.cli.commands.check import (
    inject_option,
    mode_option,
    namespace_option,
    paths_or_stdin,
    read_all,
    report_problems,
    review_inputs,
)
from webhook.cli.explanation import explain as explain_review
from webhook.cli.policy_option import config_option, load_policy_or_exit


@click.command()
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    metavar="PATH",
    help="Manifests to explain (a file, a directory, or - for standard input) "
    "[default: standard input].",
)
@config_option
@namespace_option
@mode_option
@inject_option
def explain(
    *,
    paths: tuple[str, ...],
    config: Path | None,
    namespace: str | None,
    mode: str | None,
    inject: str | None,
) -> None:
    """Explain, step by step, how egress-guard would treat each workload: which labels its
    namespace has and what they mean, each check, the verdict, what would be injected, and what
    to change. The verdict is the one `check` and the server give.

    \b
    Examples:
      egress-guard explain -f deploy.yaml --namespace payments
      kubectl get deploy web -o yaml | egress-guard explain --mode enforce

    Exit codes are those of `check`: 1 if anything would be denied, 2 for unreadable input.
    """
    paths = paths_or_stdin(paths)
    policy = load_policy_or_exit(config)
    inputs = read_all(paths)
    report = review_inputs(inputs, policy, namespace, mode, inject)
    report_problems(report.problems)
    for index, review in enumerate(report.reviews):
        if index:
            click.echo()
        click.echo("\n".join(explain_review(review, policy)))
    for index, item in enumerate(report.not_sent, start=len(report.reviews)):
        if index:
            click.echo()
        click.echo(
            f"{item.kind}/{item.name} in namespace {item.namespace} ({item.manifest.source})\n"
            f"  {item.reason}.\n"
            "  The API server admits it unchecked; the Pods it creates are checked as they are."
        )
    if not report.reviews and not report.not_sent and not report.problems:
        kinds = ", ".join(sorted(report.skipped)) or "no objects"
        click.echo(
            f"nothing to explain: no workloads in the input ({kinds}); "
            "egress-guard only checks objects that run pods"
        )
    sys.exit(report.exit_code)


COMMAND = explain
