"""What `egress-guard doctor` reads from a cluster: read-only, each read on its own.

Every read is a `get` or a paged `list`; nothing is written. A read that fails (no RBAC to read
Secrets, a CRD API not served, the API server slow) is recorded in `unreadable` with its reason
and the rest goes on, so that each check can say `unknown` for what it could not see instead of
the whole diagnosis failing. DaemonSets and workloads are read a page at a time and reduced as
they come: the doctor never holds a large cluster's objects.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes import client

from webhook.cluster.api_calls import (
    PAGE_RETRIES,
    ApiRejected,
    ApiUnreachable,
    call_json,
    pages,
)
from webhook.cluster.list_watch import LIST_TIMEOUT
from webhook.cluster.namespace_list import namespace_labels
from webhook.cluster.workload_lists import cluster_lister
from webhook.core.policy import Policy
from webhook.core.raw_object import JsonObject
from webhook.core.workloads import WorkloadKind, builtin_kind

READ_TIMEOUT = (1.0, 10.0)
T = TypeVar("T")

CNI_CONFIG_MAPS = (("kube-system", "cilium-config"), ("kube-system", "amazon-vpc-cni"))
"""ConfigMaps whose settings say whether a CNI enforces NetworkPolicies."""


@dataclass(frozen=True, slots=True)
class SurveyTargets:
    """Where egress-guard is installed: the names `egress-guard manifests` gave its objects."""

    namespace: str = "egress-guard"
    name: str = "egress-guard"

    @property
    def tls_secret(self) -> str:
        return f"{self.name}-tls"


@dataclass(frozen=True, slots=True)
class DaemonSetSummary:
    """A DaemonSet, reduced to what identifies a CNI and how it is configured."""

    namespace: str
    name: str
    containers: tuple[Mapping[str, Any], ...]
    """Each container's name, image, command, args and env (name/value only)."""
    ready: int
    desired: int


@dataclass(slots=True)
class ClusterSurvey:
    """Everything the doctor's checks look at. None (with a reason in `unreadable`) for a read
    that failed; an absent object is None without a reason."""

    server_version: tuple[int, int] | None = None
    daemon_sets: list[DaemonSetSummary] | None = None
    config_maps: dict[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    """(namespace, name) -> data, for the CNI ConfigMaps that exist."""
    crds: frozenset[str] | None = None
    """Names of the CustomResourceDefinitions installed (`ciliumnetworkpolicies.cilium.io`)."""
    crd_versions: dict[str, frozenset[str]] = field(default_factory=dict)
    """Each installed CRD's served versions (`v2`), read with the names."""
    validating: JsonObject | None = None
    mutating: JsonObject | None = None
    tls_certificate: bytes | None = None
    """The serving certificate (PEM) from the TLS Secret."""
    webhook_service: JsonObject | None = None
    webhook_endpoint_slices: list[JsonObject] | None = None
    dns_pods: list[JsonObject] | None = None
    proxy_pods: list[JsonObject] | None = None
    proxy_service: JsonObject | None = None
    proxy_endpoint_slices: list[JsonObject] | None = None
    namespaces: dict[str, Mapping[str, str]] | None = None
    """name -> labels."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """What could not be read -> why."""


def survey_cluster(
    api: client.ApiClient, policy: Policy, targets: SurveyTargets, *, wanted: frozenset[str]
) -> ClusterSurvey:
    """Read what the checks named in `wanted` need (see `READS_BY_CHECK` in the doctor)."""
    survey = ClusterSurvey()
    reader = _Reader(api, survey)
    core = client.CoreV1Api(api)
    admission = client.AdmissionregistrationV1Api(api)
    if "version" in wanted:
        survey.server_version = reader.read("version", lambda: _version(api))
    if "daemonsets" in wanted:
        survey.daemon_sets = reader.read("daemonsets", lambda: _daemon_sets(api))
    if "configmaps" in wanted:
        for namespace, name in CNI_CONFIG_MAPS:
            found = reader.get(f"configmap {namespace}/{name}", _config_map(core, namespace, name))
            if found is not None:
                survey.config_maps[(namespace, name)] = found.get("data") or {}
    if "crds" in wanted:
        found = reader.read("customresourcedefinitions", lambda: _crds(api))
        if found is not None:
            survey.crd_versions = found
            survey.crds = frozenset(found)
    if "webhooks" in wanted:
        survey.validating = reader.get(
            "validatingwebhookconfiguration",
            lambda: call_json(
                admission.read_validating_webhook_configuration,
                targets.name,
                timeout=READ_TIMEOUT,
            ),
        )
        survey.mutating = reader.get(
            "mutatingwebhookconfiguration",
            lambda: call_json(
                admission.read_mutating_webhook_configuration, targets.name, timeout=READ_TIMEOUT
            ),
        )
        secret = reader.get(
            "tls secret",
            lambda: call_json(
                core.read_namespaced_secret,
                targets.tls_secret,
                targets.namespace,
                timeout=READ_TIMEOUT,
            ),
        )
        if secret is not None:
            encoded = (secret.get("data") or {}).get("tls.crt")
            if isinstance(encoded, str):
                survey.tls_certificate = base64.b64decode(encoded)
        survey.webhook_service, survey.webhook_endpoint_slices = _service_and_slices(
            reader, api, (targets.namespace, targets.name), "webhook"
        )
    if "dns" in wanted:
        survey.dns_pods = reader.read(
            "dns pods",
            lambda: _pods(core, policy.dns.namespace, policy.dns.pod_selector),
        )
    if "proxy" in wanted and policy.proxy is not None:
        proxy = policy.proxy
        survey.proxy_pods = reader.read(
            "proxy pods", lambda: _pods(core, proxy.namespace, proxy.pod_selector)
        )
        service = proxy_service_name(proxy.url, proxy.namespace)
        if service is not None:
            survey.proxy_service, survey.proxy_endpoint_slices = _service_and_slices(
                reader, api, (service[1], service[0]), "proxy"
            )
    if "namespaces" in wanted:
        survey.namespaces = reader.read("namespaces", lambda: namespace_labels(api))
    return survey


def proxy_service_name(url: str, default_namespace: str) -> tuple[str, str] | None:
    """(service, namespace) a proxy URL names in-cluster (`http://squid.egress-proxy.svc:3128`,
    `http://squid:3128`), or None for an address outside the cluster."""
    host = re.sub(r"^[a-z]+://", "", url).split("/", 1)[0].rsplit(":", 1)[0]
    parts = host.split(".")
    if len(parts) == 1 and not host.replace("-", "").isdigit():
        return parts[0], default_namespace
    if len(parts) >= 3 and parts[2] == "svc":
        return parts[0], parts[1]
    if len(parts) == 2 and not parts[1].isdigit():
        return parts[0], parts[1]
    return None


def workloads_in(
    api: client.ApiClient, policy: Policy, namespaces: frozenset[str]
) -> Iterator[tuple[WorkloadKind, JsonObject]]:
    """The workloads of `namespaces`, of every kind the policy reviews, a page at a time (one
    paged cluster-wide list per kind; a custom kind the cluster does not serve has none)."""
    if not namespaces:
        return
    for kind in policy.reviewed_kinds:
        try:
            lister = cluster_lister(api, kind)
            for items, _ in pages(lister, timeout=LIST_TIMEOUT, retries=PAGE_RETRIES):
                for item in items:
                    if (item.get("metadata") or {}).get("namespace") in namespaces:
                        item.setdefault("kind", kind.kind)
                        item.setdefault("apiVersion", kind.api_version)
                        yield kind, item
        except ApiRejected as err:
            if err.not_found and builtin_kind(kind.group, kind.kind) is None:
                continue
            raise


class _Reader:
    """Runs one read, recording a failure instead of raising it."""

    def __init__(self, api: client.ApiClient, survey: ClusterSurvey) -> None:
        self._api = api
        self._survey = survey

    def read(self, what: str, action: Callable[[], T]) -> T | None:
        try:
            return action()
        except ApiRejected as err:
            self._survey.unreadable[what] = _why(err)
        except ApiUnreachable as err:
            self._survey.unreadable[what] = str(err)
        return None

    def get(self, what: str, action: Callable[[], JsonObject]) -> JsonObject | None:
        """A single object: None without a reason when it does not exist."""
        try:
            return action()
        except ApiRejected as err:
            if not err.not_found:
                self._survey.unreadable[what] = _why(err)
        except ApiUnreachable as err:
            self._survey.unreadable[what] = str(err)
        return None


def _config_map(core: client.CoreV1Api, namespace: str, name: str) -> Callable[[], JsonObject]:
    return lambda: call_json(core.read_namespaced_config_map, name, namespace, timeout=READ_TIMEOUT)


def _why(err: ApiRejected) -> str:
    if err.status == 403:
        return f"forbidden: {err.message or err.reason}"
    return str(err)


def _version(api: client.ApiClient) -> tuple[int, int]:
    answer = call_json(client.VersionApi(api).get_code, timeout=READ_TIMEOUT)
    major = re.sub(r"\D", "", str(answer.get("major") or "")) or "0"
    minor = re.sub(r"\D", "", str(answer.get("minor") or "")) or "0"
    return int(major), int(minor)


def _daemon_sets(api: client.ApiClient) -> list[DaemonSetSummary]:
    apps = client.AppsV1Api(api)
    found: list[DaemonSetSummary] = []
    for items, _ in pages(apps.list_daemon_set_for_all_namespaces, timeout=LIST_TIMEOUT):
        for item in items:
            metadata = item.get("metadata") or {}
            pod_spec = ((item.get("spec") or {}).get("template") or {}).get("spec") or {}
            status = item.get("status") or {}
            containers = tuple(
                {
                    "name": container.get("name"),
                    "image": container.get("image"),
                    "command": list(container.get("command") or ()),
                    "args": list(container.get("args") or ()),
                    "env": {
                        str(env.get("name")): str(env.get("value", ""))
                        for env in container.get("env") or ()
                        if isinstance(env, dict)
                    },
                }
                for container in pod_spec.get("containers") or ()
                if isinstance(container, dict)
            )
            found.append(
                DaemonSetSummary(
                    namespace=str(metadata.get("namespace") or ""),
                    name=str(metadata.get("name") or ""),
                    containers=containers,
                    ready=int(status.get("numberReady") or 0),
                    desired=int(status.get("desiredNumberScheduled") or 0),
                )
            )
    return found


def _crds(api: client.ApiClient) -> dict[str, frozenset[str]]:
    """Each CRD's name and the versions it serves."""
    extensions = client.ApiextensionsV1Api(api)
    found: dict[str, frozenset[str]] = {}
    for items, _ in pages(extensions.list_custom_resource_definition, timeout=LIST_TIMEOUT):
        for item in items:
            versions = (item.get("spec") or {}).get("versions") or ()
            found[str((item.get("metadata") or {}).get("name"))] = frozenset(
                str(v.get("name")) for v in versions if isinstance(v, dict) and v.get("served")
            )
    return found


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _pods(core: client.CoreV1Api, namespace: str, labels: Mapping[str, str]) -> list[JsonObject]:
    found: list[JsonObject] = []
    for items, _ in pages(
        core.list_namespaced_pod, namespace, timeout=LIST_TIMEOUT, label_selector=_selector(labels)
    ):
        found.extend(items)
    return found


def _service_and_slices(
    reader: _Reader, api: client.ApiClient, where: tuple[str, str], what: str
) -> tuple[JsonObject | None, list[JsonObject] | None]:
    """A Service and its EndpointSlices; `where` is (namespace, name)."""
    namespace, name = where
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    service = reader.get(
        f"{what} service",
        lambda: call_json(core.read_namespaced_service, name, namespace, timeout=READ_TIMEOUT),
    )
    slices = reader.read(
        f"{what} endpointslices",
        lambda: [
            item
            for items, _ in pages(
                discovery.list_namespaced_endpoint_slice,
                namespace,
                timeout=LIST_TIMEOUT,
                label_selector=f"kubernetes.io/service-name={name}",
            )
            for item in items
        ],
    )
    return service, slices
