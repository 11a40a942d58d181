"""The reconciler's namespace reports (PolicyReport or OpenReports Report) through the API.

Only reports named `egress-guard` and labelled managed-by egress-guard are listed, replaced or
deleted; a replace names the resourceVersion read and a delete the uid, so a report changed
meanwhile is left for the next pass rather than overwritten.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from webhook.cluster.api_calls import (
    PAGE_RETRIES,
    ApiRejected,
    CallCounter,
    Deadline,
    call_json,
    pages,
)
from webhook.cluster.list_watch import LIST_TIMEOUT
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL
from webhook.core.raw_object import JsonObject, section
from webhook.core.workload_reports import REPORT_NAME, ReportKind


class ReportWriter:
    def __init__(
        self, api: client.ApiClient, kind: ReportKind, counter: CallCounter | None = None
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._kind = kind
        self._counter = counter

    def live(self) -> dict[str, JsonObject]:
        """egress-guard's reports, by namespace. ApiRejected 404: the kind's CRD is missing."""
        kind = self._kind
        found: dict[str, JsonObject] = {}
        for items, _ in pages(
            self._objects.list_cluster_custom_object,
            kind.group,
            kind.version,
            kind.plural,
            timeout=LIST_TIMEOUT,
            counter=self._counter,
            retries=PAGE_RETRIES,
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
        ):
            for item in items:
                metadata = section(item, "metadata")
                if metadata.get("name") == REPORT_NAME:
                    found[str(metadata.get("namespace"))] = item
        return found

    def create(self, desired: Mapping[str, Any], deadline: Deadline) -> None:
        """Create the report; one already there under egress-guard's name (its managed-by label
        removed, so the list did not show it) is taken back and replaced."""
        kind, namespace = self._kind, str(desired["metadata"]["namespace"])
        try:
            call_json(
                self._objects.create_namespaced_custom_object,
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                copy.deepcopy(dict(desired)),
                timeout=deadline.timeout(),
                counter=self._counter,
            )
        except ApiRejected as err:
            if not err.already_exists:
                raise
            current = call_json(
                self._objects.get_namespaced_custom_object,
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                REPORT_NAME,
                timeout=deadline.timeout(),
                counter=self._counter,
            )
            self.replace(current, desired, deadline)

    def replace(
        self, live: Mapping[str, Any], desired: Mapping[str, Any], deadline: Deadline
    ) -> None:
        kind, namespace = self._kind, str(desired["metadata"]["namespace"])
        body = copy.deepcopy(dict(desired))
        body["metadata"]["resourceVersion"] = section(live, "metadata").get("resourceVersion")
        call_json(
            self._objects.replace_namespaced_custom_object,
            kind.group,
            kind.version,
            namespace,
            kind.plural,
            REPORT_NAME,
            body,
            timeout=deadline.timeout(),
            counter=self._counter,
        )

    def delete(self, live: Mapping[str, Any], deadline: Deadline) -> None:
        kind, metadata = self._kind, section(live, "metadata")
        call_json(
            self._objects.delete_namespaced_custom_object,
            kind.group,
            kind.version,
            str(metadata.get("namespace")),
            kind.plural,
            REPORT_NAME,
            body={
                "preconditions": {
                    "uid": metadata.get("uid"),
                    "resourceVersion": metadata.get("resourceVersion"),
                }
            },
            timeout=deadline.timeout(),
            counter=self._counter,
        )
