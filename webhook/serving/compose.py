"""The composition root: the controller and app from settings, with real or static parts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask

from webhook.admission.controller import AdmissionController, ReviewResult
from webhook.admission.ports import NamespaceSource, NetworkPolicyApplier, WorkloadSource
from webhook.cluster.static import (
    ReportingNetworkPolicyApplier,
    StaticNamespaceSource,
    StaticWorkloadSource,
)
from webhook.config.policy_file import PolicyStore
from webhook.config.settings import ClusterMode, ServeSettings, resolve_cluster_mode
from webhook.core.evaluate import Action
from webhook.core.kube_names import own_users
from webhook.core.request import AdmissionRequest
from webhook.http.app import create_app
from webhook.http.metrics import WebhookMetrics

log = logging.getLogger(__name__)

EVENT_FLUSH_ON_EXIT_S = 2.0
"""How long an exiting worker waits for its queued denial Events: well inside the graceful
timeout, which the reviews in flight have used first."""


@dataclass(frozen=True, slots=True)
class Components:
    policies: PolicyStore
    namespaces: NamespaceSource
    network_policies: NetworkPolicyApplier
    cluster: ClusterMode
    workloads: WorkloadSource | None = None
    """For the namespace preview: a namespace's workloads (none without a cluster)."""
    on_review: Callable[[AdmissionRequest, Action, ReviewResult], None] | None = None
    """Told of every answered review: records enforce-mode denials as Events in a cluster."""
    ready: Callable[[], str | None] = lambda: None
    """None when reviews can be answered as they should, else why not (for /readyz)."""
    warnings: Callable[[], tuple[str, ...]] = lambda: ()
    """What /readyz says while ready (a backend's kind the cluster does not serve)."""
    metrics: WebhookMetrics | None = None
    close: Callable[[], None] = lambda: None
    """Writes the denial Events still queued, stops the watches and closes the connection to
    the cluster (a worker's exit)."""


def build_components(settings: ServeSettings) -> Components:
    """Without a cluster everything is static and ready at once; with one, readiness waits for
    the namespace cache and follows its watch (see ClusterConnection.not_ready)."""
    policies = PolicyStore(settings.config, snapshot=settings.policy_snapshot)
    mode = resolve_cluster_mode(
        settings.cluster, kubeconfig=settings.kubeconfig, context=settings.context
    )
    metrics = WebhookMetrics()
    if mode == "none":
        return Components(
            policies,
            StaticNamespaceSource(policies),
            ReportingNetworkPolicyApplier(),
            mode,
            workloads=StaticWorkloadSource(),
            metrics=metrics,
        )
    from webhook.cluster.kube import ClusterConfigError, connect  # loads the Kubernetes client

    try:
        connection = connect(
            mode,
            policies,
            kubeconfig=str(settings.kubeconfig) if settings.kubeconfig else None,
            context=settings.context,
        )
    except ClusterConfigError as err:
        raise SystemExit(f"{err}; or run with --cluster none") from None
    from webhook.cluster.events import DenialEvents
    from webhook.cluster.kube_workloads import KubeWorkloadSource

    events = DenialEvents(connection.api, count=metrics.denial_event)

    def close() -> None:
        events.flush(timeout_s=EVENT_FLUSH_ON_EXIT_S)
        connection.close()

    return Components(
        policies,
        connection.namespaces,
        connection.network_policies,
        mode,
        workloads=KubeWorkloadSource(connection.api, policies=policies),
        on_review=events.observe,
        ready=connection.not_ready,
        warnings=connection.warnings,
        metrics=metrics,
        close=close,
    )


def build_app(settings: ServeSettings) -> Flask:
    return compose_app(settings, build_components(settings))


def compose_app(settings: ServeSettings, components: Components) -> Flask:
    """The Flask app around the components: readiness, metrics and observers wired in."""
    controller = AdmissionController(
        policies=components.policies,
        namespaces=components.namespaces,
        network_policies=components.network_policies,
        workloads=components.workloads,
        own_users=own_users(settings.namespace, settings.service),
    )
    log.info(
        "egress-guard ready: policy %s, cluster %s",
        settings.config or "<embedded example>",
        components.cluster,
    )
    return create_app(
        controller,
        max_body_bytes=settings.max_body_bytes,
        ready=components.ready,
        metrics=components.metrics,
        on_review=components.on_review,
        close=components.close,
        client_certificates=settings.client_ca_file is not None,
        warnings=components.warnings,
    )
