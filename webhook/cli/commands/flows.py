"""`egress-guard flows`: declared versus observed egress, from flow records (Hubble, CSV)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import IO

import click

from webhook.cli.check_report import to_json, to_yaml
from webhook.cli.commands.check import namespaces_flag
from webhook.cli.errors import fail
from webhook.cli.flow_input import (
    FORMATS,
    FlowFileError,
    ReadStats,
    open_sources,
    read_flows,
)
from webhook.cli.flows_report import (
    FlowsReport,
    render_table,
    suggestions,
    suggestions_document,
    suggestions_yaml,
)
from webhook.cli.policy_option import config_option, load_policy_or_exit
from webhook.core.flow_matching import FlowAudit

OUTPUTS = ("table", "json", "yaml")


def stdin_stream() -> IO[bytes]:
    return sys.stdin.buffer


@click.command()
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    metavar="FILE",
    help="Flow records: Hubble JSON lines or CSV (gzipped or not), or - for standard input. "
    "Repeatable.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="auto: CSV for *.csv and for files whose first line is not a JSON object.",
)
@config_option
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    callback=namespaces_flag,
    help="Only flows from pods in this namespace. Repeatable.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUTS),
    default="table",
    show_default=True,
    help="table, or json or yaml (sorted keys: `items`, `inputErrors`, `summary`). With "
    "--suggest: yaml and table print the policy-file YAML, json the same as JSON.",
)
@click.option(
    "--suggest",
    is_flag=True,
    help="Print, per workload without a profile, the smallest profile that allows what it was "
    "seen doing: policy-file YAML to paste under `profiles:`.",
)
def flows(
    *,
    paths: tuple[str, ...],
    fmt: str,
    config: Path | None,
    namespaces: tuple[str, ...],
    output: str,
    suggest: bool,
) -> None:
    """Report, per workload, egress seen in flow records that its profile does not declare.

    Flows are egress flows from pods (ingress, replies, and flows from the host or the world
    are skipped); a pod's workload comes from its owner (Hubble's `workloads`), its controller's
    labels and name (NAME-<replicaset hash>-<pod hash>, NAME-<ordinal>), or its app labels, and
    its profile from the profile label. A destination is declared by a `cidr` entry (outside its
    `except`), a `host` entry (any DNS name the flow carries; `*.example.com` for names under
    example.com), an in-cluster peer entry (namespace and pod labels), the proxy (for profiles
    that use it), or DNS (for every workload). Counts are of flow records.

    Dropped flows (Hubble verdict DROPPED or ERROR) did not leave but show what the workload
    tried to do: they are reported with their own count and count as undeclared; --suggest
    leaves out a destination that was only ever dropped (and says so in a comment).

    A line that cannot be read is reported as FILE:LINE (the first 20 of them) and skipped.
    The input is streamed: memory follows distinct pods and destinations, not its size.

    \b
    Exit codes:
      0  all egress declared
      1  undeclared egress seen (dropped attempts too), even if some lines could not be read
      2  usage error, a file that cannot be read, or lines that could not be read and nothing
         undeclared

    \b
    Examples:
      hubble observe --since 24h -o json > flows.jsonl
      egress-guard flows -f flows.jsonl
      egress-guard flows -f flows.jsonl -n shop --suggest > shop-profiles.yaml
      egress-guard flows -f vpc-flows.csv -o json
    """
    if not paths:
        raise click.UsageError("give flow records with -f FILE (or - for standard input)")
    policy = load_policy_or_exit(config)
    try:
        sources = open_sources(paths)
    except FlowFileError as err:
        fail(str(err))
    audit = FlowAudit(policy)
    stats = ReadStats()
    wanted = frozenset(namespaces)
    add = audit.add
    try:
        for flow in read_flows(
            sources,
            stats,
            profile_label=policy.profile_label,
            fmt=fmt,  # type: ignore[arg-type]
            stdin=stdin_stream(),
        ):
            if wanted and flow.namespace not in wanted:
                stats.skip("other namespace")
                continue
            add(flow)
    except FlowFileError as err:
        fail(str(err))
    report = FlowsReport(audit, stats)
    for problem in stats.problems:
        click.echo(f"error: {problem}", err=True)
    if stats.problem_count > len(stats.problems):
        click.echo(
            f"error: {stats.problem_count - len(stats.problems):,} more lines could not be read",
            err=True,
        )
    if suggest:
        found = suggestions(report)
        if output == "json":
            click.echo(to_json(suggestions_document(found)))
        else:
            click.echo(suggestions_yaml(found, policy.profile_label), nl=False)
    elif output == "json":
        click.echo(to_json(report.document()))
    elif output == "yaml":
        click.echo(to_yaml(report.document()), nl=False)
    else:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        click.echo(render_table(report, width), nl=False)
    sys.exit(report.exit_code)


COMMAND = flows
