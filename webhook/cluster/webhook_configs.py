"""The webhook configurations' `caBundle`, set through the Kubernetes API (`certs inject-ca`).

Each configuration is read, and every webhook whose caBundle differs is patched with a JSON Patch
that names the resourceVersion read: a concurrent change makes the API server answer 409, and
the read-patch round starts again. Only `clientConfig.caBundle` is touched, so fields this client
does not know survive.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.cluster.api_calls import (
    ApiRejected,
    ApiUnreachable,
    Deadline,
    call_json,
)
from webhook.core.raw_object import JsonObject

KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
CA_BUNDLE_CONFLICT_RETRIES = 5
INJECT_CA_BUDGET_S = 30.0
"""For the whole run: a few reads and patches, from a laptop or a CI job over a real network."""
INJECT_CA_CONNECT_TIMEOUT_S = 5.0
INJECT_CA_READ_TIMEOUT_S = 10.0


class WebhookConfigError(Exception):
    """The caBundle could not be set; the message says why and what to check."""


@dataclass(frozen=True, slots=True)
class InjectResult:
    kind: str
    name: str
    webhooks: tuple[str, ...]
    changed: bool


def _client(kubeconfig: Path | None, context: str | None) -> Any:
    """The pod's service account inside a pod (unless a kubeconfig is named), else a kubeconfig."""
    from webhook.cluster.client import ClusterConfigError, api_client
    from webhook.config.settings import resolve_cluster_mode

    mode = resolve_cluster_mode("auto", kubeconfig=kubeconfig, context=context)
    try:
        return api_client(
            "in-cluster" if mode == "in-cluster" else "kubeconfig",
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            context=context,
        )
    except ClusterConfigError as err:
        raise WebhookConfigError(str(err)) from None


def ca_bundle_patch(
    document: dict[str, Any], ca_bundle: str
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """JSON Patch operations setting caBundle on every webhook that lacks it, and all names."""
    metadata = document.get("metadata") or {}
    webhooks = document.get("webhooks") or []
    names = tuple(str(w.get("name", "")) for w in webhooks)
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(webhooks):
        client_config = webhook.get("clientConfig") or {}
        if client_config.get("caBundle") == ca_bundle:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]})
        if "clientConfig" not in webhook:
            ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig", "value": {}})
        ops.append(
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": ca_bundle}
        )
    if ops:
        # The resourceVersion read, as a precondition: a change since then is a 409 Conflict.
        ops.insert(
            0,
            {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": metadata.get("resourceVersion", ""),
            },
        )
    return ops, names


class _Api:
    """Raw JSON reads and JSON Patch writes of one configuration kind, within one Deadline."""

    def __init__(self, client: Any, kind: str, deadline: Deadline) -> None:
        from kubernetes.client import AdmissionregistrationV1Api

        api = AdmissionregistrationV1Api(client)
        if kind == "ValidatingWebhookConfiguration":
            self._read: Callable[..., Any] = api.read_validating_webhook_configuration
            self._patch: Callable[..., Any] = api.patch_validating_webhook_configuration
        else:
            self._read = api.read_mutating_webhook_configuration
            self._patch = api.patch_mutating_webhook_configuration
        self._deadline = deadline

    def _timeout(self) -> tuple[float, float]:
        return self._deadline.timeout(
            connect_s=INJECT_CA_CONNECT_TIMEOUT_S, read_s=INJECT_CA_READ_TIMEOUT_S
        )

    def read(self, name: str) -> JsonObject | None:
        try:
            return call_json(self._read, name, timeout=self._timeout())
        except ApiRejected as err:
            if err.not_found:
                return None
            raise

    def patch(self, name: str, ops: list[dict[str, Any]], dry_run: bool) -> None:
        call_json(
            self._patch,
            name,
            ops,
            dry_run="All" if dry_run else None,
            field_manager="egress-guard",
            _content_type="application/json-patch+json",
            timeout=self._timeout(),
        )


def _inject_one(
    api: _Api, kind: str, name: str, ca_bundle: str, dry_run: bool
) -> InjectResult | None:
    for _ in range(CA_BUNDLE_CONFLICT_RETRIES):
        document = api.read(name)
        if document is None:
            return None
        ops, webhooks = ca_bundle_patch(document, ca_bundle)
        if not ops:
            return InjectResult(kind, name, webhooks, changed=False)
        try:
            api.patch(name, ops, dry_run)
        except ApiRejected as err:
            if err.status in (409, 422):  # changed meanwhile (a failed `test` is a 422): re-read
                continue
            raise
        return InjectResult(kind, name, webhooks, changed=True)
    raise WebhookConfigError(f"{kind}/{name} kept changing while caBundle was being set; try again")


def inject_ca_bundle(
    pem: bytes,
    names: Iterable[str],
    *,
    client: Any = None,
    kubeconfig: Path | None = None,
    context: str | None = None,
    dry_run: bool = False,
    budget_s: float = INJECT_CA_BUDGET_S,
) -> Sequence[InjectResult]:
    """Set caBundle (base64 of `pem`) on the webhook configurations of these names, both kinds.

    A name may exist as one kind only; a name that exists as neither is an error, since a
    misspelt name would otherwise leave the API server distrusting the webhook. Every call is
    bounded by what is left of `budget_s`.
    """
    ca_bundle = base64.b64encode(pem).decode()
    client = client if client is not None else _client(kubeconfig, context)
    deadline = Deadline(budget_s)
    results: list[InjectResult] = []
    for name in names:
        found = False
        for kind in KINDS:
            try:
                result = _inject_one(_Api(client, kind, deadline), kind, name, ca_bundle, dry_run)
            except ApiRejected as err:
                raise WebhookConfigError(
                    f"{kind}/{name}: the API server answered {err}"
                    + (": allowed to get and patch it?" if err.status in (401, 403) else "")
                ) from None
            except ApiUnreachable as err:
                raise WebhookConfigError(f"the API server is not reachable: {err}") from None
            if result is not None:
                found = True
                results.append(result)
        if not found:
            raise WebhookConfigError(
                f"no Validating- or MutatingWebhookConfiguration named {name!r}: "
                "apply deploy/ first, or pass --name"
            )
    return results
