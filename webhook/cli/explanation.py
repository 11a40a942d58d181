"""`egress-guard explain`: the reasoning behind one workload's verdict, step by step, and what to
change, in the spirit of `istioctl x check-inject`.

Everything shown is the server's own answer, as `check` gets it: the verdict and the findings
behind it (each check's result is read from them, and the fix from their hints and details),
never a second evaluation that could disagree with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.cli.offline_review import WorkloadReview, as_on_a_cluster
from webhook.core.checks import CHECKS
from webhook.core.checks.profile_label import CHECK_ID as PROFILE_LABEL
from webhook.core.findings import DEFINED_PROFILES, NAMESPACE_LABELS, Finding
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.network_policies import DEFAULT_DENY_NAME, NAMESPACE_NAME_LABEL
from webhook.core.policy import Inject, Mode, Policy
from webhook.core.wording import sentence
from webhook.core.workloads import Workload, find_workload

_MODE_MEANING = {
    Mode.ENFORCE: "a workload without a valid egress profile is refused",
    Mode.WARN: "a workload without a valid egress profile is admitted with warnings",
    Mode.AUDIT: "a workload without a valid egress profile is admitted and recorded in the "
    "audit log",
}
_INJECT_MEANING = {
    Inject.NETWORKPOLICY: "a default-deny NetworkPolicy and one per profile are created before "
    "the workload is admitted",
    Inject.PROXY: "pods get HTTP_PROXY/HTTPS_PROXY/NO_PROXY pointing at the egress proxy",
    Inject.ALL: "NetworkPolicies are created and pods get the proxy variables",
    Inject.NONE: "nothing is created or injected",
}


def check_name(check_id: str) -> str:
    """`profile-label` as a person reads it: `profile label`."""
    return check_id.replace("-", " ")


def labels_snippet(workload: Workload, key: str, value: str) -> list[str]:
    """The YAML a person adds to set a pod label, nested along the workload's template path."""
    path = [*workload.template_path, "metadata", "labels"]
    lines = [f"{'  ' * depth}{part}:" for depth, part in enumerate(path)]
    lines.append(f"{'  ' * len(path)}{key}: {value}")
    return lines


def _labels_text(labels: Mapping[str, str] | None, policy: Policy) -> str:
    ours = {k: v for k, v in (labels or {}).items() if k.startswith(f"{policy.label_prefix}/")}
    return ", ".join(f"{k}={v}" for k, v in sorted(ours.items())) or "no egress-guard labels"


def _peer_text(peer: Mapping[str, Any]) -> str:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        excepted = block.get("except")
        return str(block["cidr"]) + (f" except {', '.join(excepted)}" if excepted else "")
    parts = []
    for key, what in (("namespaceSelector", "namespaces"), ("podSelector", "pods")):
        selector = peer.get(key)
        if isinstance(selector, Mapping):
            match = dict(selector.get("matchLabels") or {})
            if key == "namespaceSelector" and list(match) == [NAMESPACE_NAME_LABEL]:
                parts.append(f"namespace {match[NAMESPACE_NAME_LABEL]}")
                continue
            parts.append(f"{what} " + (",".join(f"{k}={v}" for k, v in match.items()) or "(any)"))
    return " / ".join(parts) or "anywhere"


def egress_text(manifest: Mapping[str, Any]) -> str:
    """What a NetworkPolicy lets its pods reach, in one line."""
    rules = manifest.get("spec", {}).get("egress") or []
    if not rules:
        return "no egress at all"
    described = []
    for rule in rules:
        peers = " or ".join(_peer_text(peer) for peer in rule.get("to") or [{}])
        ports = ",".join(f"{p['port']}/{p['protocol']}" for p in rule.get("ports") or [])
        described.append(f"{peers}" + (f" on {ports}" if ports else ""))
    return "; ".join(described)


def _steps_for_namespace(
    review: WorkloadReview, context: NamespaceContext, policy: Policy
) -> list[str]:
    namespace = review.namespace
    lines = [
        f"1. Namespace {namespace}: {_labels_text(review.labels.labels, policy)}",
        f"   (labels from {review.labels.origin})",
    ]
    if context.exempt:
        lines.append(
            "   -> exempt in the policy file: egress-guard never checks or changes anything here"
        )
    elif context.mode is None:
        lines.append(
            f"   -> not managed (no {policy.mode_label} label): everything here is allowed "
            "and nothing is injected"
        )
    else:
        lines.append(f"   -> mode {context.mode.value}: {_MODE_MEANING[context.mode]}")
        lines.append(f"   -> inject {context.inject.value}: {_INJECT_MEANING[context.inject]}")
    notes = [f for f in review.decision.findings if f.check == NAMESPACE_LABELS]
    lines.extend(f"   note: {sentence(note)}" for note in notes)
    return lines


def explain(review: WorkloadReview, policy: Policy) -> list[str]:
    """The explanation of one review, as lines of text."""
    manifest = review.manifest
    decision = review.decision
    lines = [f"{review.kind}/{review.name} in namespace {review.namespace} ({manifest.source})"]
    context = namespace_context(review.namespace, review.labels.labels, policy)
    steps = _steps_for_namespace(review, context, policy)
    workload = find_workload(manifest.obj, manifest.kind, review.name)
    if workload is not None and context.managed:
        key = policy.profile_label
        value = workload.pod_labels.get(key)
        steps.append(
            f"2. Pod labels ({workload.labels_path}): "
            + (f"{key}={value}" if value is not None else f"{key} is not set")
        )
        if isinstance(value, str) and value in policy.profiles:
            description = policy.profiles[value].description
            steps.append(f'   -> profile "{value}"' + (f": {description}" if description else ""))
        steps.append("3. Checks:")
        for check in CHECKS:
            found = [f for f in decision.findings if f.check == check.id]
            failed = any(f.is_violation for f in found)
            status = "FAIL" if failed else ("warn" if found else " ok ")
            steps.append(f"   [{status}] {check_name(check.id)}" + (":" if found else ""))
            steps.extend(f"          {sentence(finding)}" for finding in found)
    number = len([s for s in steps if s[:1].isdigit()]) + 1
    steps.append(f"{number}. Verdict: {decision.verdict.value.upper()}" + _verdict_detail(review))
    steps.append(f"{number + 1}. Injected:" + ("" if _injects(review) else " nothing"))
    steps.extend(_injected_lines(review, policy))
    lines.extend(f"  {step}" for step in steps)
    warnings = as_on_a_cluster(decision).warnings
    if warnings:
        lines.append("  Warnings kubectl would print:")
        lines.extend(f"    Warning: {warning}" for warning in warnings)
    lines.append("  What to change:")
    lines.extend(f"    {line}" for line in _advice(review, workload, context, policy))
    return lines


def _verdict_detail(review: WorkloadReview) -> str:
    decision = review.decision
    if not decision.allowed:
        return f" ({decision.code}): kubectl apply fails with\n       {decision.message}"
    if decision.note:
        return f" ({decision.note.value})"
    if decision.violations:
        return " (the violations above would deny it under enforce)"
    return ""


def _injects(review: WorkloadReview) -> bool:
    return bool(review.network_policies or review.proxy_env)


def _policy_line(manifest: Mapping[str, Any]) -> str:
    name = manifest["metadata"]["name"]
    kind = manifest["kind"]
    if kind != "NetworkPolicy":
        return f"   - {kind} {name}: {_backend_object_text(manifest)}"
    if name == DEFAULT_DENY_NAME:
        return (
            f"   - NetworkPolicy {name}: every pod: no egress but DNS, to {egress_text(manifest)}"
        )
    if not manifest.get("spec", {}).get("egress"):
        return f"   - NetworkPolicy {name}: pods of this profile: nothing beyond DNS"
    return f"   - NetworkPolicy {name}: pods of this profile may also reach {egress_text(manifest)}"


def _backend_object_text(manifest: Mapping[str, Any]) -> str:
    """What a Cilium or Istio object holds, in a few words."""
    spec = manifest.get("spec") or {}
    if manifest["kind"] == "ServiceEntry":
        return f"registers {', '.join(spec.get('hosts') or ())} for the profile's pods"
    if manifest["kind"] == "Sidecar":
        return "pods of this profile reach only registered hosts (REGISTRY_ONLY)"
    if manifest["metadata"]["name"] == DEFAULT_DENY_NAME:
        return "every pod: no egress but DNS (through Cilium's DNS proxy)"
    names = [
        selector.get("matchName") or selector.get("matchPattern")
        for rule in spec.get("egress") or ()
        for selector in rule.get("toFQDNs") or ()
    ]
    hosts = f", host names {', '.join(map(str, names))}" if names else ""
    return f"pods of this profile: the profile's destinations{hosts}"


def _injected_lines(review: WorkloadReview, policy: Policy) -> list[str]:
    lines = [_policy_line(manifest) for manifest in review.network_policies]
    if review.proxy_env:
        where = "the Pod's" if review.is_pod else "each pod's"
        url = policy.proxy.url if policy.proxy else "the proxy"
        for container, names in review.proxy_env.items():
            lines.append(f"   - {where} container {container}: {', '.join(names)} (proxy {url})")
    return lines


def _advice(
    review: WorkloadReview,
    workload: Workload | None,
    context: NamespaceContext,
    policy: Policy,
) -> list[str]:
    if context.exempt:
        return ["nothing: egress-guard leaves exempt namespaces alone"]
    if context.mode is None:
        return [
            f"nothing for this workload. To have egress-guard manage namespace {review.namespace}, "
            "preview first:",
            f"  kubectl label namespace {review.namespace} {policy.mode_label}=warn",
            f"then enforce: kubectl label --overwrite namespace {review.namespace} "
            f"{policy.mode_label}=enforce",
        ]
    findings = as_on_a_cluster(review.decision).findings
    advice: list[str] = []
    label = next((f for f in findings if f.check == PROFILE_LABEL and f.is_violation), None)
    if label is not None and workload is not None:
        advice.extend(_profile_fix(label, workload, context, policy))
    said_elsewhere = (NAMESPACE_LABELS, DEFINED_PROFILES)  # step 1, and the fix above
    for finding in findings:
        if finding is not label and finding.check not in said_elsewhere:
            advice.append(f"{check_name(finding.check)}: {sentence(finding)}")
    if review.decision.allowed and not advice:
        what = "NetworkPolicy" if review.kind == "NetworkPolicy" else "workload"
        advice.append(f"nothing: the {what} is admitted as it is")
    return advice or [review.decision.message]


def _profile_fix(
    finding: Finding, workload: Workload, context: NamespaceContext, policy: Policy
) -> list[str]:
    """The label to set, as YAML in place, with the server's own suggestion when it made one."""
    suggestion = finding.get("suggestion")
    lines = [
        f"set the label {policy.profile_label} on the pods ({workload.labels_path}) to "
        "the profile that says what they may reach:",
        *(
            f"  {line}"
            for line in labels_snippet(
                workload, policy.profile_label, str(suggestion) if suggestion else "<profile>"
            )
        ),
        "defined profiles:",
    ]
    width = max((len(name) for name in policy.profile_names), default=0)
    for name in policy.profile_names:
        profile = policy.profiles[name]
        about = profile.description or ("via the proxy only" if profile.proxy else "")
        lines.append(f"  {name.ljust(width)}  {about}".rstrip())
    if finding.get("problem") == "not-on-pods":
        lines.append(
            f"and remove {policy.profile_label} from metadata.labels: NetworkPolicies "
            "select pods, not the workload object"
        )
    if context.mode is not Mode.ENFORCE:
        assert context.mode is not None
        lines.append(
            f"(under mode {context.mode.value} it is admitted today; enforce would refuse it)"
        )
    return lines
