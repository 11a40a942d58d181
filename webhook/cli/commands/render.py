"""`egress-guard render`: a namespace's egress objects as YAML, for GitOps repositories."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from webhook.cli.check_report import to_json, to_yaml
from webhook.cli.commands.check import namespace_flag
from webhook.cli.errors import fail
from webhook.cli.policy_option import config_option, load_policy_or_exit
from webhook.core.backends import Backend, object_ref
from webhook.core.egress_objects import egress_intents, profile_findings
from webhook.core.namespace import namespace_context
from webhook.core.policy import Inject, Mode, Policy
from webhook.core.suggestions import closest
from webhook.core.wording import sentence

BACKEND_TITLES = {
    Backend.NETWORKPOLICY: "NetworkPolicies",
    Backend.CILIUM: "CiliumNetworkPolicies",
    Backend.ISTIO: "Istio ServiceEntries and Sidecars",
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
    policy: Policy,
    namespace: str,
    profiles: tuple[str, ...],
    inject: Inject | None,
    backends: tuple[Backend, ...] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """The objects admission would ensure in `namespace` for these profiles (the same code
    renders them), and warnings about what they cannot enforce. `backends`: those of the policy
    file when empty."""
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
            "create these objects there (use --inject networkpolicy or all to match)"
        )
    injects_all = context.inject is Inject.ALL
    context = replace(
        context,
        inject=Inject.ALL if injects_all else Inject.NETWORKPOLICY,
        backends=backends or policy.backend_set,
    )
    manifests: dict[str, dict[str, Any]] = {}
    for profile in profiles or (None,):
        for intent in egress_intents(namespace, context, policy, profile):
            for manifest in intent.manifests:
                manifests.setdefault(object_ref(manifest), dict(manifest))
        if profile is not None:
            notes.extend(sentence(f) for f in profile_findings(namespace, profile, context, policy))
    return list(manifests.values()), list(dict.fromkeys(notes))


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
    "backends",
    type=click.Choice([b.value for b in Backend]),
    multiple=True,
    help="What to render (repeatable): Kubernetes NetworkPolicies, Cilium policies or Istio "
    "objects (the last two also enforce host names) [default: the policy file's backends].",
)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml")
def render(
    *,
    config: Path | None,
    namespace: str,
    profiles: tuple[str, ...],
    inject: str | None,
    backends: tuple[str, ...],
    output: str,
) -> None:
    """Print the objects egress-guard ensures in a namespace, exactly as admission renders them:
    per backend its default deny (DNS still allowed) and each profile's allow objects.

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
    chosen_backends = tuple(b for b in Backend if b.value in backends)
    manifests, notes = rendered_policies(
        policy, namespace, chosen, Inject(inject) if inject else None, chosen_backends
    )
    shown = chosen_backends or policy.backend_set
    title = (
        f"{', '.join(BACKEND_TITLES[b] for b in shown)} egress-guard ensures in namespace "
        f"{namespace}"
    )
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    if output == "json":
        click.echo(to_json({"apiVersion": "v1", "kind": "List", "items": manifests}))
    else:
        source = config or "the embedded example policy"
        click.echo(f"# {title} ({source})")
        click.echo("".join(f"---\n{to_yaml(m)}" for m in manifests), nl=False)


COMMAND = render
