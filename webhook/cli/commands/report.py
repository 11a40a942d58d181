"""`egress-guard report`: every workload of the managed namespaces, what it may reach, whether
its NetworkPolicies are in place, and what enforcing would refuse. Read-only."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import click

from webhook.cli.check_report import to_json, to_yaml
from webhook.cli.cluster_options import api_client_or_exit, cluster_options
from webhook.cli.commands.check import namespaces_flag
from webhook.cli.errors import fail
from webhook.cli.policy_option import config_option, load_policy_or_exit
from webhook.cli.progress import ListingProgress

OUTPUTS = ("table", "json", "yaml", "markdown", "html")


@click.command()
@config_option
@cluster_options
@click.option(
    "-A",
    "--all-namespaces",
    is_flag=True,
    help="Also the namespaces egress-guard does not manage (shown as not managed or exempt).",
)
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    callback=namespaces_flag,
    help="Only this namespace (repeatable).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUTS),
    default="table",
    show_default=True,
    help="html: one self-contained page (no network fetches).",
)
def report(**flags: Any) -> None:
    """Inventory the workloads of the managed namespaces: mode and inject, profile, what the
    profile lets them reach, whether the objects generated for them (NetworkPolicies, and the
    Cilium or Istio objects of the policy's backends) are in place and current,
    and what the webhook would refuse if their namespace enforced."""
    from webhook.cluster.api_calls import ApiRejected, ApiUnreachable
    from webhook.cluster.cluster_survey import workloads_in
    from webhook.cluster.generated_lists import list_generated
    from webhook.cluster.namespace_list import namespace_labels
    from webhook.core.backends import kinds_of, object_ref
    from webhook.core.namespace import namespace_context
    from webhook.inventory.build import EXEMPT, NOT_MANAGED, Inventory, add_workloads
    from webhook.inventory.html_page import page
    from webhook.inventory.text_outputs import markdown, table

    policy = load_policy_or_exit(flags["config"])
    api = api_client_or_exit(flags)
    progress = ListingProgress(enabled=sys.stderr.isatty())
    try:
        labels = namespace_labels(api, on_page=lambda count: progress.say(f"{count} namespaces"))
        chosen = {
            name
            for name, namespace_labels in labels.items()
            if (not flags["namespaces"] or name in flags["namespaces"])
            and (
                flags["all_namespaces"]
                or namespace_context(name, namespace_labels, policy).mode is not None
            )
        }
        live: dict[str, dict[str, Mapping[str, Any]]] = {}
        for item in list_generated(api, kinds_of(policy.backend_set)).objects:
            namespace = str(item["metadata"].get("namespace"))
            if namespace in chosen:
                live.setdefault(namespace, {})[object_ref(item)] = item
        inventory = Inventory()
        workloads = progress.counted(workloads_in(api, policy, frozenset(chosen)), "workloads")
        add_workloads(inventory, workloads, labels, live, policy)
        for name in chosen:
            context = namespace_context(name, labels[name], policy)
            mode = context.mode.value if context.mode is not None else NOT_MANAGED
            inventory.namespaces.setdefault(
                name, (EXEMPT if context.exempt else mode, context.inject.value)
            )
    except (ApiRejected, ApiUnreachable) as err:
        progress.done()
        fail(f"reading the cluster failed: {err}")
    progress.done()
    inventory.in_order()
    output = flags["output"]
    if output == "json":
        click.echo(to_json(inventory.as_dict(policy)))
    elif output == "yaml":
        click.echo(to_yaml(inventory.as_dict(policy)), nl=False)
    elif output == "markdown":
        click.echo(markdown(inventory, policy), nl=False)
    elif output == "html":
        click.echo(page(inventory, policy), nl=False)
    else:
        click.echo(table(inventory, policy))


COMMAND = report
