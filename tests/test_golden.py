"""Golden answers, as Pod Security Admission keeps golden fixtures: for each kind of request
egress-guard can be asked, the whole answer (verdict, findings with their ids, subjects, details
and hints, the AdmissionResponse with its message, warnings, audit annotations and patch) and the
rendered NetworkPolicies, compared with `tests/golden/*.json`.

These are what a change of wording, of a finding's detail or of a rendered object shows up in:
review the diff, then accept it with

    EGRESS_GUARD_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

Names and content hashes of generated NetworkPolicies are kept here too: a change to either makes
every cluster's policies look drifted (or orphaned) after an upgrade, so it must be deliberate.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from builders import (
    INJECT,
    MODE,
    PROFILE,
    container,
    pod,
    pod_spec,
    policy_with,
    request,
    workload,
)

from webhook.admission.controller import AdmissionController, ReviewResult
from webhook.admission.ports import (
    EnsureResult,
    NamespaceUnavailable,
    NetworkPoliciesNotEnsured,
    WorkloadListing,
    WorkloadsUnavailable,
)
from webhook.admission.review import response_document
from webhook.cluster.static import (
    ReportingNetworkPolicyApplier,
    StaticNamespaceSource,
    StaticWorkloadSource,
)
from webhook.config.policy_file import FixedPolicy, load_policy
from webhook.core.decision import EnsureNetworkPolicies
from webhook.core.evaluate import Action
from webhook.core.network_policies import profile_policy_name, render_default_deny, render_profile
from webhook.core.policy import Policy
from webhook.core.request import AdmissionRequest

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("EGRESS_GUARD_UPDATE_GOLDEN") == "1"

LABELS = {
    "enforce": {MODE: "enforce"},
    "warn": {MODE: "warn"},
    "audit": {MODE: "audit", INJECT: "networkpolicy"},
    "proxy": {MODE: "enforce", INJECT: "proxy"},
    "all": {MODE: "enforce", INJECT: "all"},
    "typos": {MODE: "enforcing", INJECT: "sometimes"},
}
"""Namespaces of the same names, with these labels."""


class InPlace:
    """NetworkPolicies found in place: what a cluster answers once they were made."""

    def ensure(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        return EnsureResult(unchanged=intent.names)


class ApiDown:
    def ensure(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        raise NetworkPoliciesNotEnsured("the Kubernetes API did not answer in time (within 2 s)")

    def labels(self, namespace: str) -> Mapping[str, str] | None:
        raise NamespaceUnavailable("the Kubernetes API refused the connection")


class Unlisted:
    def workloads(self, namespace: str) -> WorkloadListing:
        raise WorkloadsUnavailable("the Kubernetes API refused the connection")


class Partly:
    def workloads(self, namespace: str) -> WorkloadListing:
        return WorkloadListing((workload("Deployment", {}, name="first"),), complete=False)


class Broken:
    def labels(self, namespace: str) -> Mapping[str, str] | None:
        raise RuntimeError("a bug")


def controller(
    policy: Policy, network_policies: Any = None, namespaces: Any = None, workloads: Any = None
) -> Any:
    source = FixedPolicy(policy)
    listing = {
        "enforce": (
            workload("Deployment", {"app": "a"}, name="api"),
            workload("CronJob", {PROFILE: "strpe"}, name="report"),
            pod({"app": "debug"}, name="debug"),
            *(workload("Job", {}, name=f"job-{i}") for i in range(3)),
            workload("StatefulSet", {PROFILE: "none"}, name="db"),
        )
    }
    return AdmissionController(
        source,
        namespaces or StaticNamespaceSource(source, overrides=LABELS),
        network_policies or InPlace(),
        workloads=workloads or StaticWorkloadSource(listing),
    )


def host_network(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    return obj


def annotated(obj: dict[str, Any]) -> dict[str, Any]:
    obj["spec"]["template"]["metadata"]["annotations"] = {PROFILE: "stripe"}
    return obj


def updated(new: dict[str, Any], old: dict[str, Any], namespace: str) -> AdmissionRequest:
    return request(new, operation="UPDATE", old=old, namespace=namespace)


def namespace_review(name: str, new: Mapping[str, str], old: Mapping[str, str]) -> Any:
    def obj(labels: Mapping[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels)},
        }

    return AdmissionRequest(
        uid="ns", kind="Namespace", version="v1", operation="UPDATE", name=name, namespace=name,
        object=obj(new), old_object=obj(old),
    )  # fmt: skip


def deleting(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return obj


Scenario = Callable[[Policy], ReviewResult]


def validate(req: AdmissionRequest, **parts: Any) -> Scenario:
    return lambda policy: controller(policy, **parts).review(req, Action.VALIDATE)


def mutate(req: AdmissionRequest, **parts: Any) -> Scenario:
    return lambda policy: controller(policy, **parts).review(req, Action.MUTATE)


def bare(scenario: Scenario) -> Scenario:
    """The scenario under a policy file with no profiles and no proxy section."""
    return lambda policy: scenario(policy_with(policy, profiles={}, proxy=None))


def own_env(*names: str) -> list[dict[str, str]]:
    return [{"name": name, "value": "http://own-proxy:8080"} for name in names]


SCENARIOS: dict[str, Scenario] = {
    # the profile label
    "enforce/missing/deployment": validate(request(workload("Deployment"), namespace="enforce")),
    "enforce/missing/cronjob": validate(request(workload("CronJob"), namespace="enforce")),
    "enforce/missing/pod": validate(request(workload("Pod"), namespace="enforce")),
    "enforce/undefined/close": validate(
        request(workload("Deployment", {PROFILE: "strpe"}), namespace="enforce")
    ),
    "enforce/undefined/far": validate(
        request(workload("Deployment", {PROFILE: "nosuchprofile"}), namespace="enforce")
    ),
    "enforce/on-own-metadata": validate(
        request(
            workload("StatefulSet", {"app": "db"}, own_labels={PROFILE: "none"}),
            namespace="enforce",
        )
    ),
    "enforce/annotation": validate(
        request(annotated(workload("Deployment", {"app": "web"})), namespace="enforce")
    ),
    "enforce/missing-and-host-network": validate(
        request(host_network(workload("DaemonSet", {"app": "agent"})), namespace="enforce")
    ),
    "enforce/allowed/stripe": validate(
        request(workload("Deployment", {PROFILE: "stripe"}), namespace="enforce")
    ),
    "enforce/allowed/host-network": validate(
        request(host_network(workload("DaemonSet", {PROFILE: "none"})), namespace="enforce")
    ),
    "all/allowed/stripe-reaches-the-proxy": validate(
        request(workload("Deployment", {PROFILE: "stripe"}), namespace="all")
    ),
    "unmanaged": validate(request(workload("Deployment"), namespace="nowhere")),
    "exempt": validate(request(workload("Deployment"), namespace="kube-system")),
    "delete": validate(request(workload("Deployment"), operation="DELETE", namespace="enforce")),
    "subresource": validate(request(workload("Pod"), sub_resource="status", namespace="enforce")),
    "not-a-workload": validate(
        request(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
            namespace="enforce",
        )
    ),
    "typos/namespace-labels": validate(
        request(workload("Deployment", {PROFILE: "none"}), namespace="typos")
    ),
    # the preview modes
    "warn/missing": validate(request(workload("Deployment"), namespace="warn")),
    "warn/misplaced-and-host-network": validate(
        request(
            host_network(workload("Deployment", {"app": "x"}, own_labels={PROFILE: "stripe"})),
            namespace="warn",
        )
    ),
    "audit/missing": validate(request(workload("Job"), namespace="audit")),
    # updates
    "enforce/update/takes-the-profile-away": validate(
        updated(workload("Deployment"), workload("Deployment", {PROFILE: "none"}), "enforce")
    ),
    "enforce/update/preexisting": validate(
        updated(workload("Deployment"), workload("Deployment"), "enforce")
    ),
    "warn/update/takes-the-profile-away": validate(
        updated(workload("Deployment"), workload("Deployment", {PROFILE: "none"}), "warn")
    ),
    "warn/update/preexisting": validate(
        updated(workload("Deployment"), workload("Deployment"), "warn")
    ),
    "audit/update/preexisting": validate(
        updated(workload("Deployment"), workload("Deployment"), "audit")
    ),
    "enforce/update/host-network-before-and-after": validate(
        updated(
            host_network(workload("Deployment")), host_network(workload("Deployment")), "enforce"
        )
    ),
    "enforce/update/profile-changed": validate(
        updated(
            workload("Deployment", {PROFILE: "stripe"}),
            workload("Deployment", {PROFILE: "none"}),
            "enforce",
        )
    ),
    "enforce/update/profile-unchanged": validate(
        updated(
            workload("Deployment", {PROFILE: "none"}),
            workload("Deployment", {PROFILE: "none"}),
            "enforce",
        )
    ),
    "enforce/update/being-deleted": validate(
        updated(deleting(workload("Deployment")), workload("Deployment"), "typos")
    ),
    # the controller: dry run, no cluster, a cluster that does not answer, a bug
    "enforce/dry-run": validate(
        request(workload("Deployment", {PROFILE: "none"}), namespace="enforce", dry_run=True)
    ),
    "enforce/no-cluster": validate(
        request(workload("Deployment", {PROFILE: "none"}), namespace="enforce"),
        network_policies=ReportingNetworkPolicyApplier(),
    ),
    "enforce/network-policies-not-ensured": validate(
        request(host_network(workload("Deployment", {PROFILE: "stripe"})), namespace="enforce"),
        network_policies=ApiDown(),
    ),
    "audit/network-policies-not-ensured": validate(
        request(workload("Deployment", {PROFILE: "none"}), namespace="audit"),
        network_policies=ApiDown(),
    ),
    "namespace-unavailable/validate": validate(
        request(workload("Deployment"), namespace="enforce"), namespaces=ApiDown()
    ),
    "namespace-unavailable/mutate": mutate(request(pod(), namespace="proxy"), namespaces=ApiDown()),
    "internal-error/validate": validate(request(pod(), namespace="enforce"), namespaces=Broken()),
    "internal-error/mutate": mutate(request(pod(), namespace="enforce"), namespaces=Broken()),
    # proxy injection
    "proxy/inject": mutate(
        request(
            pod({PROFILE: "none"}, pod_spec(container("app"), initContainers=[container("init")])),
            namespace="proxy",
        )
    ),
    "proxy/conflicts-malformed-and-unnamed": mutate(
        request(
            pod(
                {PROFILE: "none"},
                pod_spec(
                    container("own", env=own_env("HTTP_PROXY", "http_proxy")),
                    container("broken", env="not a list"),
                    {"image": "x", "env": own_env("NO_PROXY")},
                ),
            ),
            namespace="proxy",
        )
    ),
    "proxy/profile-asks-for-it": mutate(
        request(pod({PROFILE: "web-via-proxy"}), namespace="enforce")
    ),
    "proxy/not-asked": mutate(request(pod({PROFILE: "none"}), namespace="enforce")),
    "proxy/already-injected": mutate(
        request(
            pod(
                {PROFILE: "none"},
                pod_spec(
                    container(
                        "app",
                        env=[
                            {"name": name, "value": value}
                            for name, value in (
                                (
                                    "HTTP_PROXY",
                                    "http://egress-proxy.egress-system.svc.cluster.local:3128",
                                ),
                                (
                                    "http_proxy",
                                    "http://egress-proxy.egress-system.svc.cluster.local:3128",
                                ),
                                (
                                    "HTTPS_PROXY",
                                    "http://egress-proxy.egress-system.svc.cluster.local:3128",
                                ),
                                (
                                    "https_proxy",
                                    "http://egress-proxy.egress-system.svc.cluster.local:3128",
                                ),
                                (
                                    "NO_PROXY",
                                    "localhost,127.0.0.1,.svc,.cluster.local,10.96.0.0/12",
                                ),
                                (
                                    "no_proxy",
                                    "localhost,127.0.0.1,.svc,.cluster.local,10.96.0.0/12",
                                ),
                            )
                        ],
                    )
                ),
            ),
            namespace="proxy",
        )
    ),
    "proxy/not-a-pod": mutate(request(workload("Deployment"), namespace="proxy")),
    "proxy/unmanaged": mutate(request(pod(), namespace="nowhere")),
    "proxy/ephemeral": mutate(
        request(
            pod(
                {PROFILE: "none"},
                pod_spec(ephemeralContainers=[container("old"), container("new")]),
            ),
            operation="UPDATE",
            old=pod({PROFILE: "none"}, pod_spec(ephemeralContainers=[container("old")])),
            sub_resource="ephemeralcontainers",
            namespace="proxy",
        )
    ),
    # the namespace preview
    "preview/enforce": validate(namespace_review("enforce", LABELS["enforce"], {})),
    "preview/exempt": validate(namespace_review("kube-system", {MODE: "warn"}, {})),
    "preview/listing-failed": validate(
        namespace_review("enforce", LABELS["enforce"], {}), workloads=Unlisted()
    ),
    "preview/partly-listed": validate(
        namespace_review("enforce", LABELS["enforce"], {}), workloads=Partly()
    ),
    # a policy file with no profiles and no proxy section
    "bare/missing": bare(validate(request(workload("Deployment"), namespace="enforce"))),
    "bare/warn": bare(validate(request(workload("Deployment"), namespace="warn"))),
    "bare/proxy-asked": bare(mutate(request(pod(), namespace="proxy"))),
    "preview/typo": validate(namespace_review("quiet", {MODE: "warn-ish"}, {})),
}


def _answer(result: ReviewResult) -> dict[str, Any]:
    decision = result.decision
    wire = dict(response_document("admission.k8s.io/v1", "golden", decision)["response"])
    if "patch" in wire:
        wire["patch"] = json.loads(base64.b64decode(wire["patch"]))
    return {
        "verdict": decision.verdict.value,
        "mode": decision.mode.value if decision.mode else None,
        "note": decision.note.value if decision.note else None,
        "preexisting": decision.preexisting,
        "findings": [
            {
                "check": f.check,
                "severity": f.severity.value,
                "subject": str(f.subject) if f.subject else None,
                "reason": f.reason,
                "hint": f.hint,
                "detail": f.details(),
            }
            for f in decision.findings
        ],
        "intents": [
            {"namespace": i.namespace, "names": list(i.names), "required": i.required}
            for i in decision.intents
        ],
        "ensured": [
            {
                field: list(getattr(a, field))
                for field in ("created", "updated", "unchanged", "reported")
            }
            for a in result.applied
        ],
        "response": wire,
    }


ODD_PROFILE_NAMES = [
    "stripe",
    "Web.API",
    "web_api",
    "a" * 42,
    "a" * 43,
    "b" * 30 + "." + "c" * 30,
    "payments-0123abcd",
    "a" * 32 + "." + "b" * 20,
]


def _rendered(policy: Policy) -> dict[str, Any]:
    return {
        "default-deny": render_default_deny("payments", policy),
        "profiles": {
            name: render_profile("payments", name, policy) for name in policy.profile_names
        },
        "stripe-with-inject-all": render_profile(
            "payments", "stripe", policy, namespace_injects_all=True
        ),
        "names": {name: profile_policy_name(name) for name in ODD_PROFILE_NAMES},
    }


def _compare(name: str, actual: Any) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no {path}: create it with EGRESS_GUARD_UPDATE_GOLDEN=1"
    expected = json.loads(path.read_text())
    assert json.loads(text) == expected, f"{name} differs from {path}: review, then update"


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(None)


def test_answers_are_the_golden_ones(example: Policy) -> None:
    _compare("answers", {name: _answer(scenario(example)) for name, scenario in SCENARIOS.items()})


def test_rendered_network_policies_and_names_are_the_golden_ones(example: Policy) -> None:
    _compare("network_policies", _rendered(example))


def test_every_check_id_appears_in_some_golden_answer(example: Policy) -> None:
    """The golden answers show every kind of finding there is, in context."""
    from webhook.core.findings import registered

    seen = {f.check for scenario in SCENARIOS.values() for f in scenario(example).decision.findings}
    assert seen == set(registered())
