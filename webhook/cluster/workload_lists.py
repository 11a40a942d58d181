"""List calls for workload kinds (one namespace, or all at once), made from the kinds table.

Core-group kinds (Pods, ReplicationControllers) go through the typed CoreV1Api; every other group,
built-in (apps, batch) or custom (argoproj.io), through the generic custom-objects calls, which
build the same `/apis/<group>/<version>/...` paths. Either way the caller gets a method that
`call_json` and `list_all` can call with `limit`, `_continue` and a timeout.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from kubernetes import client

from webhook.core.workloads import WorkloadKind

Lister = Callable[..., Any]


def _snake(kind: str) -> str:
    """`ReplicationController` -> `replication_controller`, as the typed client names methods."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def namespaced_lister(api: client.ApiClient, kind: WorkloadKind) -> Lister:
    """A list call over one namespace: `lister(namespace, **params)`."""
    if not kind.group:
        method: Lister = getattr(client.CoreV1Api(api), f"list_namespaced_{_snake(kind.kind)}")
        return method
    objects = client.CustomObjectsApi(api)
    return functools.partial(
        objects.list_namespaced_custom_object, kind.group, kind.version, plural=kind.resource
    )


def cluster_lister(api: client.ApiClient, kind: WorkloadKind) -> Lister:
    """A list call over every namespace at once: `lister(**params)`."""
    if not kind.group:
        method: Lister = getattr(
            client.CoreV1Api(api), f"list_{_snake(kind.kind)}_for_all_namespaces"
        )
        return method
    objects = client.CustomObjectsApi(api)
    return functools.partial(
        objects.list_cluster_custom_object, kind.group, kind.version, kind.resource
    )
