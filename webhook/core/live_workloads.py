"""A workload already running, judged as the validating webhook would judge it if it were
applied again now: what `doctor` and `report` say a namespace's next rollout would meet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.decision import Verdict
from webhook.core.evaluate import validate
from webhook.core.policy import Policy
from webhook.core.raw_object import section
from webhook.core.request import AdmissionRequest
from webhook.core.wording import sentence
from webhook.core.workloads import WorkloadKind


def refusal_if_applied(
    kind: WorkloadKind, obj: Mapping[str, Any], labels: Mapping[str, str] | None, policy: Policy
) -> str:
    """Why the webhook would refuse the object's creation under these namespace labels, or ""."""
    metadata = section(obj, "metadata")
    request = AdmissionRequest(
        uid="egress-guard-live-workload",
        kind=kind.kind,
        operation="CREATE",
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        group=kind.group,
        version=kind.version,
        object=obj,
    )
    decision = validate(request, labels, policy)
    if decision.verdict is not Verdict.DENIED:
        return ""
    return "; ".join(sentence(finding) for finding in decision.violations)
