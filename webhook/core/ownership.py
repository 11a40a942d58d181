"""Which objects speak for themselves, and which through their controller.

A Deployment's ReplicaSet and a ReplicaSet's Pods carry the Deployment's pod template: reviews,
previews and reports name the Deployment once, as Pod Security Admission does. Only a controller
of a kind the policy reviews counts: an ownerReference is the object's own word, and a tenant
could point one at a ConfigMap of theirs to hide a workload from every report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.policy import Policy
from webhook.core.raw_object import section
from webhook.core.workloads import group_of


def controlled_by_a_reviewed_kind(obj: Mapping[str, Any], policy: Policy) -> bool:
    """The object's controller is of a kind the policy reviews (`Policy.reviewed_kinds`)."""
    owners = section(obj, "metadata").get("ownerReferences")
    if not isinstance(owners, list):
        return False
    for owner in owners:
        if not isinstance(owner, Mapping) or owner.get("controller") is not True:
            continue
        group, kind = group_of(owner.get("apiVersion")), owner.get("kind")
        if group is not None and isinstance(kind, str) and policy.reviewed_kind(group, kind):
            return True
    return False
