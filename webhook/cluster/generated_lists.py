"""Listing what egress-guard generated, of every kind its backends are made of, cluster-wide.

One paged list per kind, selected by egress-guard's managed-by label; each item is given its
kind and apiVersion, which list items do not carry, so that it can be told apart from a
same-named object of another kind (`object_ref`). A CRD kind the cluster does not serve has no
objects, and is named in `not_served`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kubernetes import client

from webhook.cluster.api_calls import PAGE_RETRIES, ApiRejected, CallCounter, list_all
from webhook.cluster.egress_object_writer import KindCalls
from webhook.cluster.list_watch import LIST_TIMEOUT
from webhook.core.backends import GeneratedKind
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL
from webhook.core.raw_object import JsonObject


@dataclass(slots=True)
class GeneratedListing:
    objects: list[JsonObject] = field(default_factory=list)
    not_served: list[GeneratedKind] = field(default_factory=list)
    """Kinds whose CRD is not installed (or, for `optional` kinds, that RBAC keeps from us)."""


def list_generated(
    api: client.ApiClient,
    kinds: Iterable[GeneratedKind],
    *,
    counter: CallCounter | None = None,
    optional: frozenset[GeneratedKind] = frozenset(),
) -> GeneratedListing:
    """Every generated object of `kinds`. A refusal fails the listing (ApiRejected), but a CRD
    kind not served, and any refusal of an `optional` kind (one of a backend the policy file no
    longer uses, which RBAC may no longer grant), which count as none."""
    listing = GeneratedListing()
    for kind in kinds:
        try:
            items, _ = list_all(
                KindCalls(api, kind).list_all_namespaces(),
                timeout=LIST_TIMEOUT,
                counter=counter,
                retries=PAGE_RETRIES,
                label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
            )
        except ApiRejected as err:
            if not (kind in optional or (kind.custom and err.unknown_resource)):
                raise
            listing.not_served.append(kind)
            continue
        for item in items:
            item["apiVersion"], item["kind"] = kind.api_version, kind.kind
        listing.objects += items
    return listing
