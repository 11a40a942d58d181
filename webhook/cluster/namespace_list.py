"""Every namespace's labels, read with one paged list: what a pass, a report or doctor starts from
(the webhook keeps its own watched cache in namespaces.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kubernetes import client

from webhook.cluster.api_calls import PAGE_RETRIES, CallCounter, pages
from webhook.cluster.list_watch import LIST_TIMEOUT


def namespace_labels(
    api: client.ApiClient,
    *,
    counter: CallCounter | None = None,
    on_page: Callable[[int], None] = lambda _count: None,
) -> dict[str, Mapping[str, str]]:
    """Name -> labels of every namespace; `on_page` is told how many were read so far."""
    found: dict[str, Mapping[str, str]] = {}
    core = client.CoreV1Api(api)
    for items, _ in pages(
        core.list_namespace, timeout=LIST_TIMEOUT, counter=counter, retries=PAGE_RETRIES
    ):
        for item in items:
            metadata = item.get("metadata") or {}
            if isinstance(metadata.get("name"), str):
                found[metadata["name"]] = metadata.get("labels") or {}
        on_page(len(found))
    return found
