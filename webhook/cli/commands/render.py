"""`egress-guard render`: a namespace's NetworkPolicies as YAML, for GitOps repositories."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from webhook.cli.check_report import to_json, to_yaml
from webhook.cli.commands.check import namespace_flag
from webhook.cli.errors import fail
from webhook.cli.policy_option import config_option, load_policy_or_exit
from webhook.core import cilium_policies, istio_objects
from webhook.core.namespace import namespace_context
from webhook.core.network_policies import network_policy_intents, unexpressible
from webhook.core.policy import Inject, Mode, Policy
from webhook.core.suggestions import closest
from webhook.core.wording import sentence

BACKENDS = ("networkpolicy", "cilium", "istio")
BACKEND_TITLES = {
    "cilium": "CiliumNetworkPolicies",
    "istio": "Istio ServiceEntries and Sidecars",
}


def _unknown_profiles(policy: Policy, asked: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    for name in asked:
        if name not in policy.profiles:
            suggestion = closest(name, policy.profile_names)
            hint = f' (did you mean "{suggestion}"?)' if suggestion else ""
            problems.append(f'profile "{name}" is not defined{hint}')
    return problems


def rendered_policies(
    policy: Policy, namespace: str, profiles: tuple[str, ...], inject: Inject | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The NetworkPolicies admission would ensure in `namespace` for these profiles (the same
    code renders them), and warnings about what they cannot express."""
    labels = dict(policy.static_namespace_labels(namespace) or {})
    if inject is not None:
        labels[policy.inject_label] = inject.value
    labels.setdefault(policy.mode_label, Mode.ENFORCE.value)
    context = namespace_context(namespace, labels, policy)
    if context.exempt:
        fail(f"namespace {namespace} is exempt in the policy file: egress-guard manages nothing")
    notes: list[str] = []
    if not context.inject.network_policies:
        notes.append(
            f"namespace {namespace} injects {context.inject.value}: egress-guard itself would not "
            "create these NetworkPolicies there (use --inject networkpolicy or all to match)"
        )
    injects_all = context.inject is Inject.ALL
    context = replace(context, inject=Inject.ALL if injects_all else Inject.NETWORKPOLICY)
    manifests: dict[str, dict[str, Any]] = {}
    for profile in profiles or (None,):
        for intent in network_policy_intents(namespace, context, policy, profile):
            for manifest in intent.manifests:
                manifests.setdefault(str(manifest["metadata"]["name"]), dict(manifest))
        if profile is not None:
            notes.extend(
                sentence(f)
                for f in unexpressible(profile, policy, namespace_injects_all=injects_all)
            )
    return list(manifests.values()), notes


@click.command()
@config_option
@click.option(
    "-n",
    "--namespace",
    required=True,
    callback=namespace_flag,
    help="The namespace the policies are for.",
)
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    metavar="PROFILE",
    help="A profile to render (repeatable) [default: every profile in the policy file].",
)
@click.option(
    "--inject",
    type=click.Choice([Inject.NETWORKPOLICY.value, Inject.ALL.value]),
    help="The namespace's inject label: `all` also lets every profile reach the proxy "
    "[default: the policy file's namespaces entry, else networkpolicy].",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="networkpolicy",
    show_default=True,
    help="What to render: Kubernetes NetworkPolicies (what admission creates), or Cilium or "
    "Istio objects, which also enforce host names (for applying with your own tooling).",
)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml")
def render(
    *,
    config: Path | None,
    namespace: str,
    profiles: tuple[str, ...],
    inject: str | None,
    backend: str,
    output: str,
) -> None:
    """Print the NetworkPolicies egress-guard ensures in a namespace: its default-deny (DNS
    still allowed) and one allow policy per profile, exactly as admission renders them.

    Without --profile every profile in the policy file is rendered, so that a GitOps repository
    holds the policy of any profile a workload may declare. The output carries the same names,
    labels and content-hash annotation as the policies admission creates.

    \b
    Example:
      egress-guard render --config policy.yaml -n payments --profile stripe > netpol.yaml
    """
    policy = load_policy_or_exit(config, advise=True)
    unknown = _unknown_profiles(policy, profiles)
    if unknown:
        defined = ", ".join(policy.profile_names) or "(none)"
        fail(f"{'; '.join(unknown)}; defined profiles: {defined}")
    chosen = tuple(dict.fromkeys(profiles)) or policy.profile_names
    if backend == "networkpolicy":
        manifests, notes = rendered_policies(
            policy, namespace, chosen, Inject(inject) if inject else None
        )
        title = f"NetworkPolicies egress-guard ensures in namespace {namespace}"
    else:
        manifests, notes = backend_objects(backend, policy, namespace, chosen, inject)
        title = f"{BACKEND_TITLES[backend]} for namespace {namespace}, rendered from the profiles"
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    if output == "json":
        click.echo(to_json({"apiVersion": "v1", "kind": "List", "items": manifests}))
    else:
        source = config or "the embedded example policy"
        click.echo(f"# {title} ({source})")
        click.echo("".join(f"---\n{to_yaml(m)}" for m in manifests), nl=False)


def backend_objects(
    backend: str, policy: Policy, namespace: str, profiles: tuple[str, ...], inject: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Cilium or Istio objects for the profiles, and what they could not say."""
    if namespace in policy.exempt:
        fail(f"namespace {namespace} is exempt in the policy file: egress-guard manages nothing")
    if backend == "cilium":
        injects_all = inject == Inject.ALL.value
        rendered = cilium_policies.render_namespace(
            namespace, profiles, policy, namespace_injects_all=injects_all
        )
        return list(rendered.manifests), list(rendered.unrendered)
    rendered = istio_objects.render_namespace(namespace, profiles, policy)
    notes = [
        "a sidecar alone does not enforce egress (a pod can bypass it): pair Istio with "
        "NetworkPolicies or Cilium",
        *rendered.unrendered,
    ]
    return list(rendered.manifests), notes


COMMAND = render
