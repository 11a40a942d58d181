"""The reconciler's Deployment: `egress-guard reconcile` under its own service account.

It converges namespaces that existed before egress-guard, or changed while it was away, to what
admission would have made. Two replicas share one Lease, so one acts and the other takes over
within a lease duration when it goes. It serves no traffic (no Service); its probes read a plain
HTTP health port that fails once the loop stops making progress (reconcile/health.py), so a
replica stuck in a pass is restarted rather than kept as a living corpse.
"""

from __future__ import annotations

from webhook.config.settings import RECONCILER_HEALTH_PORT
from webhook.core.raw_object import JsonObject
from webhook.deploy.objects import (
    POLICY_DIR,
    POLICY_KEY,
    TMP_DIR,
    DeployOptions,
    anti_affinity,
    container_security_context,
    labels,
    pod_security_context,
    selector_labels,
)
from webhook.deploy.rbac import lease_name, reconciler_account

COMPONENT = "reconciler"


def reconciler_deployment(options: DeployOptions) -> JsonObject:
    selector = selector_labels(options, COMPONENT)
    container = {
        "name": COMPONENT,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["reconcile", "--lease-name", lease_name(options)],
        "env": [
            {"name": "EGRESS_GUARD_CONFIG", "value": f"{POLICY_DIR}/{POLICY_KEY}"},
            {"name": "EGRESS_GUARD_CLUSTER", "value": "in-cluster"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [{"name": "health", "containerPort": RECONCILER_HEALTH_PORT, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 30,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "policy", "mountPath": POLICY_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{options.name}-{COMPONENT}",
            "namespace": options.namespace,
            "labels": labels(options, COMPONENT),
        },
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels(options, COMPONENT)},
                "spec": {
                    "serviceAccountName": reconciler_account(options),
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security_context(),
                    "affinity": anti_affinity(selector),
                    "containers": [container],
                    "volumes": [
                        {"name": "policy", "configMap": {"name": options.policy_config_map}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }
