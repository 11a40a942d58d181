"""The workload webhooks' `matchConditions`, evaluated as CEL (cel-python) over the requests the
API server would send.

Every CREATE is sent; an UPDATE only when it changes the pod labels and the object is not being
deleted. The safety property: whatever the conditions keep from egress-guard is a request the
core would have allowed, in every mode, for every kind of the table and a custom one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import celpy
import pytest
from builders import PROFILE, ns_labels, policy_with, request, workload

from webhook.core.evaluate import validate
from webhook.core.policy import Policy
from webhook.core.workloads import BUILTIN_KINDS, group_of
from webhook.deploy.objects import DeployOptions, validating_webhook_configuration

ROLLOUT = {"group": "argoproj.io", "version": "v1alpha1", "kind": "Rollout", "resource": "rollouts"}
DELETED_AT = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def rollout_policy(policy: Policy) -> Policy:
    return policy_with(policy, workloadKinds=[ROLLOUT])


class Conditions:
    """The matchConditions of one rendered webhook, compiled once."""

    def __init__(self, hook: Mapping[str, Any]) -> None:
        env = celpy.Environment()
        self.names = [c["name"] for c in hook["matchConditions"]]
        self.programs = [env.program(env.compile(c["expression"])) for c in hook["matchConditions"]]

    def sent(
        self, operation: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
    ) -> bool:
        """Whether the API server calls the webhook: every condition true (none may fail)."""
        kind = str(obj["kind"])
        group = group_of(obj["apiVersion"]) or ""
        activation = {
            "request": celpy.json_to_cel(
                {
                    "operation": operation,
                    "kind": {"group": group, "version": "v1", "kind": kind},
                }
            ),
            "object": celpy.json_to_cel(dict(obj)),
            "oldObject": celpy.json_to_cel(dict(old) if old is not None else None),
        }
        results = [program.evaluate(activation) for program in self.programs]
        for result in results:
            assert isinstance(result, celpy.celtypes.BoolType), f"not a boolean: {result!r}"
        return all(results)


def conditions_for(policy: Policy) -> Conditions:
    config = validating_webhook_configuration(policy, DeployOptions())
    hooks = {hook["name"]: hook for hook in config["webhooks"]}
    enforce = hooks["workloads.validate.egress-guard.io"]
    assert (
        hooks["workloads-preview.validate.egress-guard.io"]["matchConditions"]
        == (enforce["matchConditions"])
    )
    return Conditions(enforce)


@pytest.fixture(scope="module")
def conditions(rollout_policy: Policy) -> Conditions:
    return conditions_for(rollout_policy)


def deployment(pod_labels: dict[str, str] | None, **changes: Any) -> dict[str, Any]:
    obj = workload("Deployment", pod_labels)
    obj["spec"]["replicas"] = changes.pop("replicas", 1)
    if "own_labels" in changes:
        obj["metadata"]["labels"] = changes.pop("own_labels")
    if changes.pop("deleting", False):
        obj["metadata"]["deletionTimestamp"] = DELETED_AT
    assert not changes
    return obj


def with_pod_spec(obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    obj["spec"]["template"]["spec"].update(fields)
    return obj


def with_networks(obj: dict[str, Any], networks: str, **other: str) -> dict[str, Any]:
    annotations = {"k8s.v1.cni.cncf.io/networks": networks, **other}
    obj["spec"]["template"]["metadata"]["annotations"] = annotations
    return obj


def without_spec(kind: str) -> dict[str, Any]:
    obj = workload(kind, {PROFILE: "none"})
    del obj["spec"]
    return obj


CASES = [
    pytest.param("CREATE", deployment(None), None, True, id="create-without-label"),
    pytest.param("CREATE", deployment({PROFILE: "none"}), None, True, id="create-with-label"),
    pytest.param("CREATE", workload("Pod", {}), None, True, id="create-pod"),
    pytest.param(
        "UPDATE",
        deployment({PROFILE: "none"}, replicas=3),
        deployment({PROFILE: "none"}),
        False,
        id="scale-keeps-labels",
    ),
    pytest.param(
        "UPDATE", deployment(None, replicas=3), deployment(None), False, id="scale-without-labels"
    ),
    pytest.param(
        "UPDATE", deployment({PROFILE: "none"}), deployment(None), True, id="adds-the-profile"
    ),
    pytest.param(
        "UPDATE", deployment({}), deployment({PROFILE: "none"}), True, id="removes-the-profile"
    ),
    pytest.param(
        "UPDATE",
        deployment({PROFILE: "stripe"}),
        deployment({PROFILE: "none"}),
        True,
        id="changes-the-profile",
    ),
    pytest.param(
        "UPDATE",
        deployment({PROFILE: "none", "version": "2"}),
        deployment({PROFILE: "none", "version": "1"}),
        True,
        id="changes-another-pod-label",
    ),
    pytest.param(
        "UPDATE",
        deployment({PROFILE: "none"}, own_labels={"team": "b"}),
        deployment({PROFILE: "none"}, own_labels={"team": "a"}),
        False,
        id="changes-only-the-deployments-own-labels",
    ),
    pytest.param(
        "UPDATE",
        deployment({}, deleting=True),
        deployment({PROFILE: "none"}, deleting=True),
        False,
        id="being-deleted-even-if-the-label-goes",
    ),
    pytest.param(
        "UPDATE",
        workload("CronJob", {PROFILE: "none"}),
        workload("CronJob", {PROFILE: "stripe"}),
        True,
        id="cronjob-job-template-labels-change",
    ),
    pytest.param(
        "UPDATE",
        {**workload("CronJob", {PROFILE: "none"}), "spec": {"schedule": "@daily"}},
        {**workload("CronJob", {PROFILE: "none"}), "spec": {"schedule": "@hourly"}},
        False,
        id="cronjob-without-job-template",
    ),
    pytest.param(
        "UPDATE",
        workload("Pod", {"app": "web"}),
        workload("Pod", {PROFILE: "none", "app": "web"}),
        True,
        id="pod-loses-its-profile",
    ),
    pytest.param(
        "UPDATE",
        {**workload("Pod", {PROFILE: "none"}), "status": {"phase": "Running"}},
        workload("Pod", {PROFILE: "none"}),
        False,
        id="pod-other-change",
    ),
    pytest.param(
        "UPDATE",
        workload("Rollout", {PROFILE: "none"}),
        workload("Rollout", {}),
        True,
        id="custom-kind-template-labels-change",
    ),
    pytest.param(
        "UPDATE",
        without_spec("Deployment"),
        without_spec("Deployment"),
        False,
        id="no-spec-at-all",
    ),
    pytest.param(
        "UPDATE",
        with_pod_spec(deployment({PROFILE: "none"}), hostNetwork=True),
        deployment({PROFILE: "none"}),
        True,
        id="turns-host-network-on",
    ),
    pytest.param(
        "UPDATE",
        with_pod_spec(deployment({PROFILE: "none"}, replicas=2), hostNetwork=True),
        with_pod_spec(deployment({PROFILE: "none"}), hostNetwork=True),
        False,
        id="host-network-unchanged",
    ),
    pytest.param(
        "UPDATE",
        with_networks(deployment({PROFILE: "none"}), "sriov"),
        deployment({PROFILE: "none"}),
        True,
        id="adds-multus-networks",
    ),
    pytest.param(
        "UPDATE",
        with_networks(deployment({PROFILE: "none"}), "sriov", other="x"),
        with_networks(deployment({PROFILE: "none"}), "sriov"),
        False,
        id="other-pod-annotation-changes",
    ),
    pytest.param(
        "UPDATE",
        {**workload("Pod", {PROFILE: "none"}), "spec": {"hostNetwork": True, "containers": []}},
        workload("Pod", {PROFILE: "none"}),
        True,
        id="pod-host-network",
    ),
    pytest.param(
        "UPDATE",
        without_spec("CronJob"),
        workload("CronJob", {PROFILE: "none"}),
        True,
        id="template-gone",
    ),
]


@pytest.mark.parametrize(("operation", "obj", "old", "expected"), CASES)
def test_which_requests_are_sent(
    conditions: Conditions,
    operation: str,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    expected: bool,
) -> None:
    assert conditions.sent(operation, obj, old) is expected


def test_the_conditions_are_named_and_follow_the_kinds_table(rollout_policy: Policy) -> None:
    conditions = conditions_for(rollout_policy)
    assert conditions.names == ["not-being-deleted", "update-changes-pod-labels"]
    config = validating_webhook_configuration(rollout_policy, DeployOptions())
    expression = config["webhooks"][0]["matchConditions"][1]["expression"]
    for kind in BUILTIN_KINDS:
        labels_path = ".".join(("object", *kind.template_path, "metadata", "labels"))
        assert labels_path in expression, kind.kind


POD_LABELS: list[dict[str, str] | None] = [
    None,
    {},
    {"app": "web"},
    {PROFILE: "none"},
    {PROFILE: "stripe"},
    {PROFILE: "no-such-profile"},
]
OWN_LABELS: list[dict[str, str] | None] = [None, {PROFILE: "none"}]
KINDS = [*(kind.kind for kind in BUILTIN_KINDS), "Rollout"]


def _variant(
    kind: str, pod_labels: dict[str, str] | None, own: dict[str, str] | None, deleting: bool
) -> dict[str, Any]:
    obj = workload(kind, pod_labels, own_labels=own if kind != "Pod" else None)
    if deleting:
        obj["metadata"]["deletionTimestamp"] = DELETED_AT
    return obj


@pytest.mark.parametrize("kind", KINDS)
def test_whatever_is_not_sent_the_core_would_have_allowed(
    conditions: Conditions, rollout_policy: Policy, kind: str
) -> None:
    skipped = refused = 0
    variants = list(itertools.product(POD_LABELS, OWN_LABELS))
    for (old_pod, old_own), (new_pod, new_own), deleting in itertools.product(
        variants, variants, (False, True)
    ):
        old = _variant(kind, old_pod, old_own, deleting=False)
        new = _variant(kind, new_pod, new_own, deleting)
        if conditions.sent("UPDATE", new, old):
            continue
        skipped += 1
        for mode in ("enforce", "warn", "audit"):
            update = request(new, operation="UPDATE", old=old)
            decision = validate(update, ns_labels(mode), rollout_policy)
            assert decision.allowed, f"{kind} {old_pod}->{new_pod} in {mode}: {decision.message}"
    for old_pod, new_pod in itertools.product(POD_LABELS, POD_LABELS):
        update = request(
            _variant(kind, new_pod, None, False),
            operation="UPDATE",
            old=_variant(kind, old_pod, None, False),
        )
        if not validate(update, ns_labels("enforce"), rollout_policy).allowed:
            refused += 1
            assert conditions.sent("UPDATE", update.object or {}, update.old_object)
    assert skipped and refused, "both sides of the property were exercised"


def test_creates_are_always_sent_even_without_an_old_object(conditions: Conditions) -> None:
    for kind in KINDS:
        for labels in POD_LABELS:
            assert conditions.sent("CREATE", _variant(kind, labels, None, False))
