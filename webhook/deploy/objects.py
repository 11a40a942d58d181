"""Every object that deploys egress-guard, as data: built from the policy and a few options.

The choices that keep a cluster safe live here, once, with their reasons:

- The webhooks see only namespaces that opted in (the `mode` label exists) and never the system
  namespaces, egress-guard's own namespace, or any namespace the policy exempts: a broken
  egress-guard can then never stop the control plane or itself from starting.
- Validation in enforcing namespaces fails closed (`failurePolicy: Fail`): a workload is admitted
  only once egress-guard has checked its profile and ensured its NetworkPolicies. Any mode value
  other than warn or audit counts as enforcing, as the core reads it, so a typo fails closed.
- Validation in warn and audit namespaces fails open (`failurePolicy: Ignore`): those modes
  preview, and must not block deploys while egress-guard is down.
- Workload UPDATEs are sent only when they change what the checks read of the pods (labels,
  hostNetwork, Multus networks) and the object is not being deleted (`matchConditions`, see
  match_conditions.py): no other UPDATE can be refused. `pods/status` is sent too: the API
  server keeps the labels a status update carries.
- NetworkPolicies in managed namespaces are sent (CREATE, UPDATE, DELETE), failing closed where
  the namespace enforces, except egress-guard's own writes, which a `matchCondition` leaves out:
  its repairs never wait on itself.
- Namespace UPDATEs that loosen an enforcing namespace fail closed when the policy file governs
  who may loosen (`governance.loosenNamespaces`); the namespace preview fails open.
- Mutation fails open (`failurePolicy: Ignore`). The proxy variables are a convenience, not the
  enforcement: any program may ignore HTTP_PROXY. What enforces egress is the validating webhook
  (the profile label, and the NetworkPolicies ensured before admission), so a pod that escapes
  proxy injection is still caught by validation. Failing open also keeps `kubectl debug`
  (pods/ephemeralcontainers) usable while egress-guard itself is the incident.
- `sideEffects: NoneOnDryRun`: NetworkPolicies are created only when the request is not a dry run.
- Short timeouts: the API server waits at most that long before the failure policy applies.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from webhook import __version__
from webhook.admission.budgets import (
    MUTATION_TIMEOUT_S,
    NAMESPACE_PREVIEW_TIMEOUT_S,
    VALIDATION_TIMEOUT_S,
)
from webhook.config.settings import RECONCILER_HEALTH_PORT, ServeSettings
from webhook.core.backends import CILIUM_NETWORK_POLICY, NETWORK_POLICY, by_group, kinds_of
from webhook.core.kube_names import SYSTEM_NAMESPACES, own_users, service_dns_names
from webhook.core.namespace_governance import GOVERNED_SUBRESOURCES
from webhook.core.network_policies import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAMESPACE_NAME_LABEL,
    render_default_deny,
)
from webhook.core.network_policy_review import NAMESPACE_CLEANUP
from webhook.core.policy import Mode, Policy
from webhook.core.raw_object import JsonObject
from webhook.core.workloads import WorkloadKind
from webhook.deploy.match_conditions import (
    LOOSENS_AN_ENFORCING_NAMESPACE,
    MAY_WIDEN_OR_IS_GENERATED,
    NOT_EGRESS_GUARD,
    NOT_NAMESPACE_CLEANUP,
    loosens_an_enforcing_namespace,
    may_widen_or_is_generated,
    not_deleted_by,
    not_from,
    workload_match_conditions,
)

VALIDATE_PATH, MUTATE_PATH = "/validate", "/mutate"
CONTAINER_PORT: int = ServeSettings.model_fields["port"].default
SERVICE_PORT = 443

PREVIEW_MODES = (Mode.WARN.value, Mode.AUDIT.value)
"""Modes that only preview: their webhook fails open. Every other value enforces."""

CERT_MANAGER_INJECT = "cert-manager.io/inject-ca-from"

CONFIG_DIR = "/etc/egress-guard"
POLICY_DIR = f"{CONFIG_DIR}/policy"
CERT_DIR = f"{CONFIG_DIR}/tls"
POLICY_KEY = "policy.yaml"
TMP_DIR = "/tmp"
"""An emptyDir of the pod's own (the root filesystem is read-only)."""
METRICS_DIR = f"{TMP_DIR}/metrics"
RUN_AS = 65532
"""The non-root user and group the image runs as (the Dockerfile creates it)."""

PRE_STOP_SLEEP_S = 5
"""Time for the endpoint removal to reach every API server before the server stops accepting."""
GRACEFUL_TIMEOUT_S: int = ServeSettings.model_fields["graceful_timeout_s"].default


@dataclass(frozen=True, slots=True)
class DeployOptions:
    namespace: str = "egress-guard"
    image: str = f"egress-guard:{__version__}"
    name: str = "egress-guard"
    """Name of the Deployment, Service, ServiceAccount and webhook configurations."""
    replicas: int = 2
    api_server_cidrs: tuple[str, ...] = ()
    """Where the API server's endpoints are (`kubectl get endpoints kubernetes`): the only
    addresses egress-guard's pods may reach besides DNS. Empty: any address, on the API
    server's ports only."""
    api_server_ports: tuple[int, ...] = (443, 6443)

    @property
    def tls_secret(self) -> str:
        return f"{self.name}-tls"

    @property
    def policy_config_map(self) -> str:
        return f"{self.name}-policy"

    @property
    def serving_certificate(self) -> str:
        return f"{self.name}-serving"


def labels(options: DeployOptions, component: str = "webhook") -> dict[str, str]:
    return {**selector_labels(options, component), "app.kubernetes.io/part-of": "egress-guard"}


def selector_labels(options: DeployOptions, component: str = "webhook") -> dict[str, str]:
    return {"app.kubernetes.io/name": options.name, "app.kubernetes.io/component": component}


def _metadata(options: DeployOptions, name: str, *, namespaced: bool = True) -> JsonObject:
    metadata: JsonObject = {"name": name}
    if namespaced:
        metadata["namespace"] = options.namespace
    metadata["labels"] = labels(options)
    return metadata


def excluded_namespaces(policy: Policy, options: DeployOptions) -> list[str]:
    """Namespaces the webhooks never see: the system ones, egress-guard's own, the exempt."""
    return sorted({*SYSTEM_NAMESPACES, options.namespace, *policy.exempt_namespaces})


def _not_excluded(policy: Policy, options: DeployOptions) -> JsonObject:
    return {
        "key": NAMESPACE_NAME_LABEL,
        "operator": "NotIn",
        "values": excluded_namespaces(policy, options),
    }


def namespace_selector(policy: Policy, options: DeployOptions) -> JsonObject:
    """Opted-in namespaces (the mode label exists), minus the excluded ones by name."""
    return {
        "matchExpressions": [
            {"key": policy.mode_label, "operator": "Exists"},
            _not_excluded(policy, options),
        ]
    }


def enforce_namespace_selector(policy: Policy, options: DeployOptions) -> JsonObject:
    """Opted-in namespaces whose mode is not a preview one: `enforce`, and any value the core
    does not know (which it treats as enforce), minus the excluded ones."""
    return {
        "matchExpressions": [
            {"key": policy.mode_label, "operator": "Exists"},
            {"key": policy.mode_label, "operator": "NotIn", "values": list(PREVIEW_MODES)},
            _not_excluded(policy, options),
        ]
    }


def preview_namespace_selector(policy: Policy, options: DeployOptions) -> JsonObject:
    """Namespaces in warn or audit mode, minus the excluded ones."""
    return {
        "matchExpressions": [
            {"key": policy.mode_label, "operator": "In", "values": list(PREVIEW_MODES)},
            _not_excluded(policy, options),
        ]
    }


def webhook_name(policy: Policy, purpose: str) -> str:
    """A fully qualified webhook name under the policy's label prefix (at least three parts)."""
    name = f"{purpose}.{policy.label_prefix}"
    if len(name) > 253:
        raise ValueError(f"labelPrefix {policy.label_prefix!r} is too long for a webhook name")
    return name


def _client_config(options: DeployOptions, path: str) -> JsonObject:
    return {
        "service": {
            "namespace": options.namespace,
            "name": options.name,
            "path": path,
            "port": SERVICE_PORT,
        }
    }


def by_group_version(kinds: Sequence[WorkloadKind]) -> dict[tuple[str, str], list[str]]:
    """(API group, version) -> the resources of those kinds, sorted, the core group first."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for kind in sorted(kinds, key=lambda k: (k.group, k.version, k.resource)):
        grouped.setdefault((kind.group, kind.version), []).append(kind.resource)
    return grouped


def workload_rules(policy: Policy) -> list[JsonObject]:
    """Every kind the core reviews as a workload under this policy (`Policy.reviewed_kinds`),
    and `pods/status`: the API server keeps the label changes a status update carries, so a
    Pod's profile could otherwise change where no rule looks."""
    rules: list[JsonObject] = [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "operations": ["CREATE", "UPDATE"],
            "resources": resources,
            "scope": "Namespaced",
        }
        for (group, version), resources in by_group_version(policy.reviewed_kinds).items()
    ]
    rules.append(
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["UPDATE"],
            "resources": ["pods/status"],
            "scope": "Namespaced",
        }
    )
    return rules


def _validating_webhook(
    policy: Policy,
    options: DeployOptions,
    purpose: str,
    failure_policy: str,
    selector: JsonObject,
    **fields: object,
) -> JsonObject:
    """What every validating webhook of egress-guard's shares, and the fields of this one."""
    return {
        "name": webhook_name(policy, purpose),
        "admissionReviewVersions": ["v1"],
        "clientConfig": _client_config(options, VALIDATE_PATH),
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "namespaceSelector": selector,
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": VALIDATION_TIMEOUT_S,
        **fields,
    }


def reviewed_egress_kinds(policy: Policy) -> list[tuple[str, str, tuple[str, ...]]]:
    """(group, version, resources) the egress-objects webhooks are sent: NetworkPolicies and
    CiliumNetworkPolicies always (a tenant's widens egress under any backend: on a Cilium
    cluster Cilium adds both kinds up; a rule for a kind the cluster does not serve is
    harmless), and the Istio kinds where the policy file uses them."""
    always = (NETWORK_POLICY, CILIUM_NETWORK_POLICY)
    return by_group(
        (*always, *(kind for kind in kinds_of(policy.backend_set) if kind not in always))
    )


def _network_policies_webhook(
    policy: Policy, options: DeployOptions, purpose: str, failure_policy: str, selector: JsonObject
) -> JsonObject:
    """NetworkPolicies (and the kinds of the other backends) in managed namespaces: tenants' own
    (which may widen egress) and changes to egress-guard's. egress-guard's own writes are left
    out by the API server itself."""
    return _validating_webhook(
        policy,
        options,
        purpose,
        failure_policy,
        selector,
        rules=[
            {
                "apiGroups": [group],
                "apiVersions": [version],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": list(resources),
                "scope": "Namespaced",
            }
            for group, version, resources in reviewed_egress_kinds(policy)
        ],
        matchConditions=[
            {
                "name": NOT_EGRESS_GUARD,
                "expression": not_from(sorted(own_users(options.namespace, options.name))),
            },
            {
                "name": NOT_NAMESPACE_CLEANUP,
                "expression": not_deleted_by(sorted(NAMESPACE_CLEANUP)),
            },
            {
                "name": MAY_WIDEN_OR_IS_GENERATED,
                "expression": may_widen_or_is_generated(MANAGED_BY_LABEL, MANAGED_BY),
            },
        ],
        sideEffects="None",
    )


def _namespaces_webhook(
    policy: Policy, options: DeployOptions, purpose: str, failure_policy: str
) -> JsonObject:
    """Namespaces being opted in or out carry the mode label before or after the change: the
    objectSelector matches either (a namespaceSelector sees only the labels after it)."""
    mode_present = {"matchExpressions": [{"key": policy.mode_label, "operator": "Exists"}]}
    return _validating_webhook(
        policy,
        options,
        purpose,
        failure_policy,
        {"matchExpressions": [_not_excluded(policy, options)]},
        objectSelector=mode_present,
        rules=[
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["namespaces"],
                "scope": "Cluster",
            }
        ],
        timeoutSeconds=NAMESPACE_PREVIEW_TIMEOUT_S,
    )


def _workloads_webhook(
    policy: Policy, options: DeployOptions, purpose: str, failure_policy: str, selector: JsonObject
) -> JsonObject:
    return _validating_webhook(
        policy,
        options,
        purpose,
        failure_policy,
        selector,
        rules=workload_rules(policy),
        matchConditions=workload_match_conditions(policy.reviewed_kinds),
    )


def validating_webhook_configuration(policy: Policy, options: DeployOptions) -> JsonObject:
    # Enforcing namespaces fail closed; warn and audit ones preview and fail open. The two
    # selectors split the opted-in namespaces between them, with no gap and no overlap.
    enforce = _workloads_webhook(
        policy,
        options,
        "workloads.validate",
        "Fail",
        enforce_namespace_selector(policy, options),
    )
    preview = _workloads_webhook(
        policy,
        options,
        "workloads-preview.validate",
        "Ignore",
        preview_namespace_selector(policy, options),
    )
    # The namespace preview is advisory, hence Ignore: a namespace label change must never
    # depend on egress-guard being up, except where the policy file governs who may loosen an
    # enforcing namespace: those UPDATEs (and only those) fail closed.
    hooks = [
        enforce,
        preview,
        _namespaces_webhook(policy, options, "namespaces.validate", "Ignore"),
        _network_policies_webhook(
            policy,
            options,
            "networkpolicies.validate",
            "Fail",
            enforce_namespace_selector(policy, options),
        ),
        _network_policies_webhook(
            policy,
            options,
            "networkpolicies-preview.validate",
            "Ignore",
            preview_namespace_selector(policy, options),
        ),
    ]
    if policy.governance.loosen_namespaces is not None:
        governed = _namespaces_webhook(policy, options, "namespaces-loosening.validate", "Fail")
        governed["rules"][0]["operations"] = ["UPDATE"]
        governed["rules"][0]["resources"] = [
            "/".join(filter(None, ("namespaces", sub))) for sub in GOVERNED_SUBRESOURCES
        ]
        governed["matchConditions"] = [
            {
                "name": LOOSENS_AN_ENFORCING_NAMESPACE,
                "expression": loosens_an_enforcing_namespace(
                    policy.mode_label, policy.inject_label, PREVIEW_MODES
                ),
            }
        ]
        governed["timeoutSeconds"] = VALIDATION_TIMEOUT_S
        hooks.append(governed)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": _metadata(options, options.name, namespaced=False),
        "webhooks": hooks,
    }


def mutating_webhook_configuration(policy: Policy, options: DeployOptions) -> JsonObject:
    pods = {
        "name": webhook_name(policy, "pods.mutate"),
        "admissionReviewVersions": ["v1"],
        "clientConfig": _client_config(options, MUTATE_PATH),
        "failurePolicy": "Ignore",
        "matchPolicy": "Equivalent",
        "namespaceSelector": namespace_selector(policy, options),
        # Only pods are mutated: their containers are what runs. Templates stay as written, so
        # controllers and GitOps tools never see drift they did not cause.
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            },
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["UPDATE"],
                "resources": ["pods/ephemeralcontainers"],
                "scope": "Namespaced",
            },
        ],
        # Containers added by a later mutating webhook (a sidecar injector) get the variables too.
        "reinvocationPolicy": "IfNeeded",
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": MUTATION_TIMEOUT_S,
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": _metadata(options, options.name, namespaced=False),
        "webhooks": [pods],
    }


def namespace(options: DeployOptions) -> JsonObject:
    """egress-guard's own namespace: no mode label (never managed, and excluded by name in
    every webhook), and Pod Security `restricted`, which the Deployment below meets."""
    metadata = _metadata(options, options.namespace, namespaced=False)
    metadata["labels"] |= {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def service_account(options: DeployOptions) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(options, options.name),
    }


def policy_config_map(policy_text: str, options: DeployOptions) -> JsonObject:
    """The policy file as written (comments included): mounted, and reloaded on change."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(options, options.policy_config_map),
        "data": {POLICY_KEY: policy_text},
    }


def anti_affinity(selector: Mapping[str, str]) -> JsonObject:
    """Replicas on different nodes when the cluster allows it (preferred, not required: a
    required rule would stall a rolling update with maxSurge on a two-node cluster; the
    PodDisruptionBudget guards voluntary evictions)."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": dict(selector)},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


def pod_security_context() -> JsonObject:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(path: str, period_s: int, failures: int) -> JsonObject:
    return {
        "httpGet": {"path": path, "port": "https", "scheme": "HTTPS"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def container_security_context() -> JsonObject:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env(name: str, value: str) -> JsonObject:
    return {"name": name, "value": value}


def deployment(options: DeployOptions) -> JsonObject:
    selector = selector_labels(options)
    container = {
        "name": "webhook",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve"],
        "env": [
            _env("EGRESS_GUARD_HOST", "0.0.0.0"),  # the pod's own interfaces: kubelet and Service
            _env("EGRESS_GUARD_PORT", str(CONTAINER_PORT)),
            _env("EGRESS_GUARD_CONFIG", f"{POLICY_DIR}/{POLICY_KEY}"),
            _env("EGRESS_GUARD_CERT_DIR", CERT_DIR),
            _env("EGRESS_GUARD_CLUSTER", "in-cluster"),
            _env("EGRESS_GUARD_WORKERS", "2"),
            _env("EGRESS_GUARD_GRACEFUL_TIMEOUT_S", str(GRACEFUL_TIMEOUT_S)),
            _env("EGRESS_GUARD_WORKER_TMP_DIR", "/dev/shm"),  # a tmpfs in every container
            _env("EGRESS_GUARD_SERVICE", options.name),
            {
                "name": "EGRESS_GUARD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            _env("PROMETHEUS_MULTIPROC_DIR", METRICS_DIR),
        ],
        "ports": [{"name": "https", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "readinessProbe": _probe("/readyz", period_s=5, failures=2),
        "livenessProbe": _probe("/healthz", period_s=10, failures=3),
        "startupProbe": _probe("/healthz", period_s=2, failures=30),
        # The endpoint leaves the Service while the server still answers; only then SIGTERM.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_S}}},
        "resources": {
            "requests": {"cpu": "200m", "memory": "192Mi"},
            "limits": {"memory": "384Mi"},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "policy", "mountPath": POLICY_DIR, "readOnly": True},
            {"name": "tls", "mountPath": CERT_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }
    pod_spec = {
        "serviceAccountName": options.name,
        "priorityClassName": "system-cluster-critical",
        "terminationGracePeriodSeconds": PRE_STOP_SLEEP_S + GRACEFUL_TIMEOUT_S + 10,
        "securityContext": pod_security_context(),
        "affinity": anti_affinity(selector),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector},
            }
        ],
        "containers": [container],
        "volumes": [
            {"name": "policy", "configMap": {"name": options.policy_config_map}},
            {"name": "tls", "secret": {"secretName": options.tls_secret, "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options, options.name),
        "spec": {
            "replicas": options.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            # Never below the replica count during a rollout: every review has a ready server.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": labels(options),
                    "annotations": {"kubectl.kubernetes.io/default-container": "webhook"},
                },
                "spec": pod_spec,
            },
        },
    }


def pod_disruption_budget(options: DeployOptions) -> JsonObject:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(options, options.name),
        "spec": {
            "minAvailable": 1,
            "selector": {"matchLabels": selector_labels(options)},
            # A pod that is not ready serves nobody: draining its node must not wait for it.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def own_network_policy(policy: Policy, options: DeployOptions) -> JsonObject:
    """egress-guard under a default-deny of its own: its pods are reached only on the webhook's
    HTTPS port (reviews, probes, /metrics) and the reconciler's health port, and reach only DNS
    and the API server's ports.

    Egress to the API server is matched after its Service address is translated, so the rule
    names the endpoints' addresses (`api_server_cidrs`) on the ports they listen on; without
    them it allows those ports on any address, a boundary that is not the API server alone.
    """
    dns_rules = render_default_deny(options.namespace, policy)["spec"]["egress"]
    cidrs = options.api_server_cidrs or ("0.0.0.0/0", "::/0")
    api_server = {
        "to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs],
        "ports": [{"protocol": "TCP", "port": port} for port in options.api_server_ports],
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(options, options.name),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "ports": [
                        {"protocol": "TCP", "port": CONTAINER_PORT},
                        {"protocol": "TCP", "port": RECONCILER_HEALTH_PORT},
                    ]
                }
            ],
            "egress": [*copy.deepcopy(dns_rules), api_server],
        },
    }


def service(options: DeployOptions) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options, options.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(options),
            "ports": [
                {"name": "https", "port": SERVICE_PORT, "targetPort": "https", "protocol": "TCP"}
            ],
        },
    }


def cert_manager_objects(options: DeployOptions) -> list[JsonObject]:
    """A self-signed root, a CA issuer, and the serving certificate in the Secret the pods mount.

    The CA keeps its key across renewals (`rotationPolicy: Never`), so serving certificates it
    signed before stay valid under the renewed CA the injector puts in caBundle.
    """
    selfsigned, ca = f"{options.name}-selfsigned", f"{options.name}-ca"
    ecdsa = {"algorithm": "ECDSA", "size": 256}
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": _metadata(options, selfsigned),
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _metadata(options, ca),
            "spec": {
                "isCA": True,
                "commonName": f"{options.name} CA",
                "secretName": ca,
                "duration": "87600h",
                "renewBefore": "8760h",
                "privateKey": {**ecdsa, "rotationPolicy": "Never"},
                "issuerRef": {"name": selfsigned, "kind": "Issuer"},
            },
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": _metadata(options, ca),
            "spec": {"ca": {"secretName": ca}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _metadata(options, options.serving_certificate),
            "spec": {
                "secretName": options.tls_secret,
                "dnsNames": service_dns_names(options.name, options.namespace),
                "duration": "8760h",
                "renewBefore": "720h",
                "privateKey": {**ecdsa, "rotationPolicy": "Always"},
                "usages": ["digital signature", "server auth"],
                "issuerRef": {"name": ca, "kind": "Issuer"},
            },
        },
    ]


def ca_injection_patches(options: DeployOptions) -> list[JsonObject]:
    """Strategic merge patches: cert-manager's injector fills caBundle on both configurations."""
    annotation = {CERT_MANAGER_INJECT: f"{options.namespace}/{options.serving_certificate}"}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": options.name, "annotations": annotation},
        }
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    ]


@dataclass(frozen=True, slots=True)
class DeployFile:
    """One file of the rendered tree: its documents and a comment saying what it is."""

    path: str
    documents: Sequence[JsonObject]
    comment: str


def base_files(policy: Policy, policy_text: str, options: DeployOptions) -> list[DeployFile]:
    return [
        DeployFile("namespace.yaml", [namespace(options)], "egress-guard's own namespace"),
        DeployFile("serviceaccount.yaml", [service_account(options)], "the webhook's identity"),
        DeployFile(
            "configmap.yaml",
            [policy_config_map(policy_text, options)],
            "the policy file, reloaded by the server when it changes",
        ),
        DeployFile("deployment.yaml", [deployment(options)], "the webhook server"),
        DeployFile(
            "pdb.yaml", [pod_disruption_budget(options)], "one replica always up through drains"
        ),
        DeployFile("service.yaml", [service(options)], "what the API server calls"),
        DeployFile(
            "networkpolicy.yaml",
            [own_network_policy(policy, options)],
            "egress-guard's own pods: in on their ports, out to DNS and the API server only",
        ),
        DeployFile(
            "webhooks.yaml",
            [
                validating_webhook_configuration(policy, options),
                mutating_webhook_configuration(policy, options),
            ],
            "which requests the API server sends, and what happens when egress-guard is down",
        ),
    ]


def with_cert_manager(objects: Sequence[JsonObject], options: DeployOptions) -> list[JsonObject]:
    """The base objects as the cert-manager overlay builds them: annotated, plus certificates."""
    annotation = ca_injection_patches(options)[0]["metadata"]["annotations"]
    result: list[JsonObject] = []
    for obj in objects:
        if obj["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            metadata = {**obj["metadata"], "annotations": {**annotation}}
            result.append({**obj, "metadata": metadata})
        else:
            result.append(obj)
    return [*result, *cert_manager_objects(options)]
