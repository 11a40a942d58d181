"""Namespace preview: labelling a namespace with a mode answers with warnings naming the existing
workloads the new labels would refuse, as Pod Security Admission does; the change itself is
always allowed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from builders import MODE, PROFILE, pod, policy_with, workload

from webhook.admission.controller import AdmissionController
from webhook.admission.ports import WorkloadListing, WorkloadsUnavailable
from webhook.cluster.static import (
    ReportingNetworkPolicyApplier,
    StaticNamespaceSource,
    StaticWorkloadSource,
)
from webhook.config.policy_file import FixedPolicy
from webhook.core.evaluate import Action
from webhook.core.namespace_preview import NAMED, namespace_change, preview
from webhook.core.policy import Policy
from webhook.core.request import AdmissionRequest
from webhook.core.wording import MAX_WARNING_CHARS, MAX_WARNINGS


def namespace_object(name: str = "payments", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def namespace_request(
    new: Mapping[str, str],
    old: Mapping[str, str] | None = None,
    *,
    name: str = "payments",
    operation: str = "UPDATE",
    dry_run: bool = False,
) -> AdmissionRequest:
    return AdmissionRequest(
        uid="ns-1",
        kind="Namespace",
        version="v1",
        operation=operation,
        name=name,
        namespace=name,
        dry_run=dry_run,
        object=namespace_object(name, **new),
        old_object=namespace_object(name, **old) if old is not None else None,
    )


def owned(obj: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": True}
    ]
    return obj


# --- when is there a preview ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "old", "operation", "expected"),
    [
        pytest.param({MODE: "enforce"}, {}, "UPDATE", True, id="mode-set"),
        pytest.param({MODE: "enforce"}, {MODE: "warn"}, "UPDATE", True, id="mode-changed"),
        pytest.param({MODE: "enforce"}, None, "CREATE", True, id="created-with-mode"),
        pytest.param({MODE: "warn"}, {MODE: "warn"}, "UPDATE", False, id="mode-unchanged"),
        pytest.param({}, {MODE: "warn"}, "UPDATE", False, id="mode-removed"),
        pytest.param({"team": "a"}, {}, "UPDATE", False, id="other-label"),
        pytest.param({MODE: "warn"}, {}, "DELETE", False, id="delete"),
    ],
)
def test_a_preview_is_due_when_the_mode_is_set_or_changed(
    new: dict[str, str], old: dict[str, str] | None, operation: str, expected: bool, policy: Policy
) -> None:
    change = namespace_change(namespace_request(new, old, operation=operation), policy)
    assert (change is not None) is expected


def test_other_kinds_and_subresources_get_no_preview(policy: Policy) -> None:
    request = namespace_request({MODE: "enforce"}, {})
    assert namespace_change(replace(request, kind="ConfigMap"), policy) is None
    assert namespace_change(replace(request, sub_resource="status"), policy) is None


# --- what the preview says ------------------------------------------------------------------


def preview_of(
    workloads: Sequence[Mapping[str, Any]],
    policy: Policy,
    mode: str = "enforce",
    *,
    complete: bool = True,
    name: str = "payments",
) -> tuple[str, ...]:
    change = namespace_change(namespace_request({MODE: mode}, {}, name=name), policy)
    assert change is not None
    decision = preview(change, workloads, complete=complete, policy=policy)
    assert decision.allowed
    assert len(decision.warnings) <= MAX_WARNINGS
    assert all(len(w) <= MAX_WARNING_CHARS for w in decision.warnings)
    return decision.warnings


def test_owned_objects_are_reported_through_their_owner(policy: Policy) -> None:
    deployment = workload("Deployment", {"app": "web"}, name="web")
    replica_set = owned(workload("ReplicaSet", {"app": "web"}, name="web-5d8"), "Deployment", "web")
    pods = [owned(pod({"app": "web"}, name=f"web-5d8-{i}"), "ReplicaSet", "web-5d8") for i in "ab"]
    lone = pod({"app": "debug"}, name="debug")
    fine = workload("StatefulSet", {PROFILE: "none"}, name="db")
    warnings = preview_of([deployment, replica_set, *pods, lone, fine], policy)
    assert warnings[0] == (
        "egress-guard: 2 existing workloads in payments lack a valid egress profile; "
        "enforce refuses them and their new pods"
    )
    assert warnings[1].startswith('egress-guard: Deployment "web" has no egress profile')
    assert warnings[2].startswith('egress-guard: Pod "debug" has no egress profile')
    assert len(warnings) == 3


def test_a_pod_owned_by_an_unlisted_kind_is_reported_itself(policy: Policy) -> None:
    custom = owned(pod({}, name="rollout-pod"), "Rollout", "canary")
    warnings = preview_of([custom], policy)
    assert warnings[0].startswith("egress-guard: 1 existing workload in payments lacks a valid")
    assert 'Pod "rollout-pod"' in warnings[1]


def test_the_first_few_are_named_and_the_rest_counted(policy: Policy) -> None:
    many = [workload("Deployment", {}, name=f"app-{i:02}") for i in range(12)]
    warnings = preview_of(many, policy)
    assert warnings[0].startswith("egress-guard: 12 existing workloads")
    named = [w for w in warnings if 'Deployment "app-' in w]
    assert len(named) == NAMED
    assert warnings[-1] == f"egress-guard: ... and {12 - NAMED} more"


def test_unknown_profiles_are_named_too(policy: Policy) -> None:
    warnings = preview_of([workload("Deployment", {PROFILE: "strpe"}, name="pay")], policy)
    assert 'egress profile "strpe", which is not defined (did you mean "stripe"?)' in warnings[1]


@pytest.mark.parametrize(
    ("mode", "consequence"),
    [("warn", "warn flags them on every change"), ("audit", "audit records them")],
)
def test_preview_modes_say_what_they_will_do(mode: str, consequence: str, policy: Policy) -> None:
    warnings = preview_of([workload("Deployment", {})], policy, mode)
    assert warnings[0].endswith(consequence)


def test_nothing_to_say_when_every_workload_declares_a_profile(policy: Policy) -> None:
    assert preview_of([workload("Deployment", {PROFILE: "stripe"})], policy) == ()


def test_an_incomplete_listing_is_said_so(policy: Policy) -> None:
    warnings = preview_of([workload("Deployment", {})], policy, complete=False)
    assert warnings[-1] == (
        "egress-guard: only part of payments was checked (limit or time budget reached)"
    )


def test_an_exempt_namespace_is_told_the_label_does_nothing(policy: Policy) -> None:
    warnings = preview_of([workload("Deployment", {})], policy, name="kube-system")
    assert warnings == (
        "egress-guard: namespace kube-system is exempt in the policy: egress-guard.io/mode has "
        "no effect there",
    )


def test_a_mistyped_mode_is_pointed_out(policy: Policy) -> None:
    warnings = preview_of([], policy, mode="enforcing")
    assert "'enforcing' is not enforce, warn or audit; treated as enforce" in warnings[0]


# --- through the admission controller -------------------------------------------------------


class RecordingSource:
    def __init__(self, listing: WorkloadListing | Exception) -> None:
        self.listing = listing
        self.calls: list[str] = []

    def workloads(self, namespace: str) -> WorkloadListing:
        self.calls.append(namespace)
        if isinstance(self.listing, Exception):
            raise self.listing
        return self.listing


def controller(policy: Policy, workloads: Any) -> AdmissionController:
    source = FixedPolicy(policy)
    return AdmissionController(
        source, StaticNamespaceSource(source), ReportingNetworkPolicyApplier(), workloads=workloads
    )


def test_the_controller_lists_the_namespace_and_allows_with_warnings(policy: Policy) -> None:
    source = RecordingSource(WorkloadListing((workload("Deployment", {}, name="web"),)))
    outcome = controller(policy, source).review(
        namespace_request({MODE: "enforce"}, {}, dry_run=True), Action.VALIDATE
    )
    assert source.calls == ["payments"]
    assert outcome.decision.allowed
    assert 'Deployment "web"' in outcome.decision.warnings[1]


def test_a_new_namespace_is_not_listed(policy: Policy) -> None:
    source = RecordingSource(WorkloadListing(()))
    outcome = controller(policy, source).review(
        namespace_request({MODE: "enforce"}, None, operation="CREATE"), Action.VALIDATE
    )
    assert source.calls == []
    assert outcome.decision.allowed and outcome.decision.warnings == ()


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        pytest.param(
            WorkloadsUnavailable("the Kubernetes API refused the connection"),
            "refused the connection",
            id="unavailable",
        ),
        pytest.param(RuntimeError("boom"), "see the egress-guard log", id="bug"),
    ],
)
def test_a_failed_listing_never_blocks_the_namespace_change(
    failure: Exception, said: str, policy: Policy
) -> None:
    outcome = controller(policy, RecordingSource(failure)).review(
        namespace_request({MODE: "enforce"}, {}), Action.VALIDATE
    )
    assert outcome.decision.allowed
    assert outcome.decision.warnings[-1].startswith("egress-guard: could not check the workloads")
    assert said in outcome.decision.warnings[-1]


def test_no_preview_on_the_mutating_webhook_or_without_a_mode_change(policy: Policy) -> None:
    source = RecordingSource(WorkloadListing((workload("Deployment", {}),)))
    eg = controller(policy, source)
    assert (
        eg.review(namespace_request({MODE: "enforce"}, {}), Action.MUTATE).decision.warnings == ()
    )
    unchanged = namespace_request({MODE: "enforce"}, {MODE: "enforce"})
    assert eg.review(unchanged, Action.VALIDATE).decision.warnings == ()
    assert source.calls == []


def test_the_static_source_serves_its_table(policy: Policy) -> None:
    static = StaticWorkloadSource({"payments": [workload("Job", {}, name="nightly")]})
    outcome = controller(policy, static).review(
        namespace_request({MODE: "warn"}, {}), Action.VALIDATE
    )
    assert 'Job "nightly"' in outcome.decision.warnings[1]
    assert StaticWorkloadSource().workloads("payments") == WorkloadListing(())


# --- pinned edges ---------------------------------------------------------------------------


def test_a_non_controller_owner_before_the_controller_does_not_hide_it(policy: Policy) -> None:
    """Only the controller reference counts, wherever it stands in the list."""
    replica_set = workload("ReplicaSet", {"app": "web"}, name="web-5d8")
    replica_set["metadata"]["ownerReferences"] = [
        "not a reference",
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "1"},
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "2", "controller": 1},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "3",
            "controller": True,
        },
    ]
    assert preview_of([replica_set], policy) == ()


def test_an_owner_reference_that_is_no_controller_does_not_hide_the_object(
    policy: Policy,
) -> None:
    replica_set = workload("ReplicaSet", {"app": "web"}, name="web-5d8")
    replica_set["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "2"}
    ]
    warnings = preview_of([replica_set], policy)
    assert 'ReplicaSet "web-5d8"' in warnings[1]


def test_objects_without_a_kind_or_a_name_are_passed_over(policy: Policy) -> None:
    nameless = workload("Deployment", {}, name="x")
    del nameless["metadata"]["name"]
    kindless = workload("Deployment", {}, name="y")
    del kindless["kind"]
    counted = workload("Deployment", {}, name="z")
    warnings = preview_of([nameless, kindless, counted], policy)
    assert warnings[0].startswith("egress-guard: 1 existing workload in payments")
    assert 'Deployment "z"' in warnings[1]


def test_host_network_workloads_count_unless_their_profile_allows_it(policy: Policy) -> None:
    host = workload("DaemonSet", {PROFILE: "none"}, name="agent")
    host["spec"]["template"]["spec"]["hostNetwork"] = True
    (summary, named) = preview_of([host], policy)
    assert summary.startswith("egress-guard: 1 existing workload")
    assert 'DaemonSet "agent"' in named
    profiles = {
        **policy.model_dump(by_alias=True)["profiles"],
        "node-agent": {"hostNetwork": True, "namespaces": ["payments"]},
    }
    agents = policy_with(policy, profiles=profiles)
    host["spec"]["template"]["metadata"]["labels"] = {PROFILE: "node-agent"}
    assert preview_of([host], agents) == ()


def test_exactly_the_named_number_has_no_more_line(policy: Policy) -> None:
    warnings = preview_of(
        [workload("Deployment", {}, name=f"app-{i}") for i in range(NAMED)], policy
    )
    assert len(warnings) == 1 + NAMED
    assert not any("more" in w for w in warnings)


def test_the_namespace_name_comes_from_the_object_when_the_request_has_none(
    policy: Policy,
) -> None:
    request = replace(namespace_request({MODE: "enforce"}, {}, name="shop"), name="")
    change = namespace_change(request, policy)
    assert change is not None
    decision = preview(change, [workload("Deployment", {})], complete=True, policy=policy)
    assert " in shop " in decision.warnings[0]


def test_a_creation_ignores_any_old_object_sent_with_it(policy: Policy) -> None:
    request = namespace_request({MODE: "enforce"}, {MODE: "enforce"}, operation="CREATE")
    change = namespace_change(request, policy)
    assert change is not None
    assert change.created


def test_the_note_counts_what_would_fail_of_what_was_listed(policy: Policy) -> None:
    change = namespace_change(namespace_request({MODE: "enforce"}, {}), policy)
    assert change is not None
    listed = [workload("Deployment", {}, name="a"), workload("Deployment", {PROFILE: "none"})]
    decision = preview(change, listed, complete=True, policy=policy)
    (summary,) = [f for f in decision.findings if f.get("violating") is not None]
    assert (summary.get("violating"), summary.get("listed")) == (1, 2)
